//! Slow-header and idle-connection attacks on the edge's device listeners (issue 10 part 3):
//! HTTP, FTP and SFTP connections that send nothing, or headers too slowly, are closed by
//! their timeouts, and a client arriving meanwhile is served; FTP and SFTP connections that
//! keep themselves busy without ever logging in are cut off by their login grace while
//! logged-in ones stay. Real edge process; raw TCP clients and paramiko play the attacker,
//! curl, raw FTP and paramiko the honest clients.

mod common;

use std::io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// The longest a timed-out connection may stay open in these tests (the timeouts are 1 s).
const CUT_WITHIN: Duration = Duration::from_secs(20);

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(CUT_WITHIN)).unwrap();
    s
}

/// Read until the server closes the connection; fail if it is still open after CUT_WITHIN.
fn wait_closed(mut s: TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("{what}: still open after {CUT_WITHIN:?}")
            }
            Err(_) => return, // reset: closed too
        }
    }
}

/// The first bytes the server sends on a fresh connection (a banner).
fn banner(addr: SocketAddr) -> String {
    let mut s = connect(addr);
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn slow_and_idle_connections_are_cut_off_without_starving_other_clients() {
    let env = TestEnv::new("timeouts", Duration::from_secs(120));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    let cfg = env.path("edge.toml");
    std::fs::write(
        &cfg,
        "# edge.toml\n[http]\nheader_timeout = \"1s\"\n[ftp]\nidle_timeout = \"1s\"\n[sftp]\nidle_timeout = \"1s\"\n",
    )
    .unwrap();
    let edge = Edge::start(
        &env,
        origin.quic,
        Some(&token),
        &env.path("edge"),
        &["--config", cfg.to_str().unwrap()],
    );
    let (ftp, sftp) = (edge.ftp.unwrap(), edge.sftp.unwrap());

    // HTTP: 100 connections that never finish their headers, one that drips a header byte
    // every 100 ms (it would take 20 s), and one idle after a complete keep-alive request.
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = connect(edge.http);
            s.write_all(b"GET /x HTTP/1.1\r\nHost: edge\r\n").unwrap();
            s
        })
        .collect();
    let mut kept = connect(edge.http);
    kept.write_all(b"GET /x HTTP/1.1\r\nHost: edge\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 "), "{head:?}");
    let drip_addr = edge.http;
    let dripper = std::thread::spawn(move || {
        let mut s = connect(drip_addr);
        let header = format!("GET /x HTTP/1.1\r\nX-Slow: {}\r\n\r\n", "a".repeat(200));
        let start = Instant::now();
        for b in header.bytes() {
            if s.write_all(&[b]).is_err() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });

    // FTP and SFTP: 20 connections each (under the 32-per-address cap) that say nothing.
    let ftp_idle: Vec<TcpStream> = (0..20).map(|_| connect(ftp)).collect();
    let sftp_idle: Vec<TcpStream> = (0..20).map(|_| connect(sftp)).collect();

    // Meanwhile an honest client of each protocol is served at once.
    let r = curl(&env, &[&edge.url("/x")]);
    assert!(r.status == 401 || r.status == 404, "{}", r.status);
    assert!(
        banner(ftp).starts_with("220"),
        "FTP banner while idle connections are held"
    );
    assert!(
        banner(sftp).starts_with("SSH-2.0-"),
        "SSH banner while idle connections are held"
    );

    for (i, s) in slow.into_iter().enumerate() {
        wait_closed(s, &format!("HTTP slow-header connection {i}"));
    }
    wait_closed(kept, "HTTP idle keep-alive connection");
    let cut = dripper.join().unwrap();
    assert!(
        cut.is_some(),
        "a client dripping its headers was never cut off"
    );
    for (i, s) in ftp_idle.into_iter().enumerate() {
        wait_closed(s, &format!("FTP idle connection {i}"));
    }
    for (i, s) in sftp_idle.into_iter().enumerate() {
        wait_closed(s, &format!("SFTP idle connection {i}"));
    }
    // And the listeners still serve afterwards.
    let r = curl(&env, &[&edge.url("/x")]);
    assert!(r.status == 401 || r.status == 404, "{}", r.status);
}

/// One FTP control connection speaking line by line.
struct Ftp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Ftp {
    fn connect(addr: SocketAddr) -> Self {
        let s = connect(addr);
        let mut f = Self {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let banner = f.reply();
        assert!(banner.starts_with("220"), "{banner}");
        f
    }

    /// The next reply line ("" once the server has closed the connection).
    fn reply(&mut self) -> String {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(_) => line,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("FTP: no reply within {CUT_WITHIN:?}")
            }
            Err(_) => String::new(),
        }
    }

    /// Send `cmd`; the reply, or "" if the connection is gone.
    fn cmd(&mut self, cmd: &str) -> String {
        if self.w.write_all(format!("{cmd}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        self.reply()
    }
}

/// `NOOP` every 300 ms for `secs`; the replies, stopping at the first that is not a 200.
fn noop_for(f: &mut Ftp, secs: f64) -> Vec<String> {
    let start = Instant::now();
    let mut replies = Vec::new();
    while start.elapsed().as_secs_f64() < secs {
        let r = f.cmd("NOOP");
        let ok = r.starts_with("200");
        replies.push(r);
        if !ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    replies
}

/// paramiko: key exchange, then (authenticating anonymously or not at all) an SSH_MSG_IGNORE
/// every 300 ms; prints how long the transport stayed up (capped at 6 s).
const SSH_BUSY: &str = r#"
import sys, time, socket, paramiko
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
t = paramiko.Transport(sock)
t.start_client(timeout=20)
if sys.argv[2] == "anonymous":
    t.auth_none("anonymous")
start = time.monotonic()
while t.is_active() and time.monotonic() - start < 6:
    try:
        t.send_ignore(16)
    except Exception:
        break
    time.sleep(0.3)
print(round(time.monotonic() - start, 1))
"#;

fn ssh_busy_seconds(env: &TestEnv, port: u16, how: &str) -> f64 {
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", SSH_BUSY, &port.to_string(), how]);
    let o = run_cmd(env, cmd, Duration::from_secs(60));
    assert!(o.ok(), "paramiko ({how}): {o:?}");
    o.stdout.trim().parse().unwrap_or_else(|_| panic!("{o:?}"))
}

#[test]
fn busy_connections_that_never_log_in_are_cut_off_by_the_login_grace() {
    let env = TestEnv::new("login_grace", Duration::from_secs(120));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    origin.ctl_ok(&env, &["grant", "create", "--anonymous", "--path", "/pub"]);
    let cfg = env.path("edge.toml");
    std::fs::write(
        &cfg,
        "# edge.toml\n[ftp]\nidle_timeout = \"1s\"\nlogin_grace = \"2s\"\n[sftp]\nidle_timeout = \"1s\"\nlogin_grace = \"2s\"\n",
    )
    .unwrap();
    let mut edge = Edge::start(
        &env,
        origin.quic,
        Some(&token),
        &env.path("edge"),
        &["--config", cfg.to_str().unwrap()],
    );
    let (ftp, sftp) = (edge.ftp.unwrap(), edge.sftp.unwrap());

    // The edge learns the anonymous grant with its site config: log in once it has.
    let start = Instant::now();
    let mut honest = loop {
        let mut f = Ftp::connect(ftp);
        assert!(f.cmd("USER anonymous").starts_with("331"));
        let r = f.cmd("PASS device@");
        if r.starts_with("230") {
            break f;
        }
        assert!(start.elapsed() < CUT_WITHIN, "anonymous FTP login: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };

    // A client that answers every idle timer with a NOOP but never logs in is told 421 and
    // closed at the grace (2 s); the logged-in one, just as busy, is answered throughout.
    let squatter = std::thread::spawn(move || {
        let mut f = Ftp::connect(ftp);
        let start = Instant::now();
        let replies = noop_for(&mut f, 20.0);
        (start.elapsed(), replies)
    });
    let honest_replies = noop_for(&mut honest, 4.0);
    assert!(
        honest_replies.iter().all(|r| r.starts_with("200")) && honest_replies.len() >= 10,
        "a logged-in FTP client was cut off: {honest_replies:?}"
    );
    let (took, replies) = squatter.join().unwrap();
    let last = replies.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("421 Login timeout"),
        "not-logged-in FTP client after {took:?}: {replies:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "cut off only after {took:?}"
    );

    // SSH: after key exchange, ignore messages keep the connection active but never log in;
    // cut off at the grace. Authenticated (anonymous), the same client stays for its 6 s.
    let port = sftp.port();
    let unauthenticated = ssh_busy_seconds(&env, port, "none");
    assert!(
        (1.0..5.0).contains(&unauthenticated),
        "an unauthenticated SSH connection stayed {unauthenticated} s (grace 2 s)"
    );
    let anonymous = ssh_busy_seconds(&env, port, "anonymous");
    assert!(
        anonymous >= 5.9,
        "an authenticated SSH connection was cut off after {anonymous} s"
    );

    // On shutdown, open FTP control connections are told why they close.
    let mut open = Ftp::connect(ftp);
    assert!(edge.stop(&env).success(), "edge exit after SIGTERM");
    let r = open.reply();
    assert!(
        r.starts_with("421 Server shutting down"),
        "on shutdown: {r:?}"
    );
}
