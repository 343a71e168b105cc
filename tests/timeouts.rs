//! Slow-header and idle-connection attacks on the edge's device listeners (issue 10 part 3):
//! HTTP, FTP and SFTP connections that send nothing, or headers too slowly, are closed by
//! their timeouts, and a client arriving meanwhile is served. Real edge process; raw TCP
//! clients play the attacker, curl the honest client.

mod common;

use std::io::{ErrorKind, Read as _, Write as _};
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
