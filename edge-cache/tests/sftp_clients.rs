//! The SFTP server against OpenSSH's `sftp`/`ssh` (by key and by password through `sshpass`)
//! and the russh client for exact status codes. Needs the clients from
//! scripts/install-test-deps.sh.
#![allow(clippy::missing_panics_doc)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{content, pw, run, sha, start, start_in, Edge, T};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{OpenFlags, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::process::Command;

const SSH_OPTS: &[&str] = &[
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=20",
];

/// `sftp -b BATCH` as `user`, by key (`key` given) or password (through sshpass).
async fn sftp_batch(
    edge: &Edge,
    user: &str,
    key: Option<&Path>,
    password: Option<&str>,
    batch: &str,
) -> std::process::Output {
    let file = edge.path(&format!("batch-{}", rand_name()));
    std::fs::write(&file, batch).unwrap();
    let mut c = match password {
        Some(p) => {
            let mut c = Command::new("sshpass");
            c.args([
                "-p",
                p,
                "sftp",
                "-o",
                "BatchMode=no",
                "-o",
                "PubkeyAuthentication=no",
            ]);
            c
        }
        None => Command::new("sftp"),
    };
    c.args(SSH_OPTS).args(["-P", &edge.sftp.port().to_string()]);
    if let Some(k) = key {
        c.args(["-o", "IdentitiesOnly=yes", "-i", k.to_str().unwrap()]);
    }
    c.args(["-b", file.to_str().unwrap(), &format!("{user}@127.0.0.1")]);
    c.current_dir(edge.path(""));
    run(&mut c).await
}

fn rand_name() -> String {
    format!("{:x}", rand::random::<u64>())
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_by_key_get_reget_ls() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let want = content("/fw/a.bin");
        let partial = edge.path("partial.bin");
        std::fs::write(&partial, &want[..200_001]).unwrap();
        let o = sftp_batch(
            &edge,
            "alice",
            Some(&edge.alice_key),
            None,
            "ls -l /fw\nget /fw/a.bin full.bin\nreget /fw/a.bin partial.bin\ncd /fw/ap\nget x.bin\nls\n",
        )
        .await;
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert_eq!(sha(&std::fs::read(edge.path("full.bin")).unwrap()), sha(&want));
        assert_eq!(sha(&std::fs::read(&partial).unwrap()), sha(&want), "reget");
        assert_eq!(std::fs::read(edge.path("x.bin")).unwrap(), content("/fw/ap/x.bin"));
        for name in ["a.bin", "ap", "other", "empty.bin"] {
            assert!(out.contains(name), "{out}");
        }
        assert!(out.lines().any(|l| l.starts_with("-r--r--r--") && l.contains("700000")), "{out}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_by_password_and_wrong_password() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let o = sftp_batch(
            &edge,
            "alice",
            None,
            Some(pw("alice")),
            "get /fw/ap/x.bin pw.bin\nls /\n",
        )
        .await;
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            std::fs::read(edge.path("pw.bin")).unwrap(),
            content("/fw/ap/x.bin")
        );
        // alice sees /fw (her grant) and /pub (anonymous's), not /top.bin.
        let out = text(&o);
        assert!(
            out.contains("fw") && out.contains("pub") && !out.contains("top.bin"),
            "{out}"
        );
        let o = sftp_batch(&edge, "alice", None, Some("wrong"), "ls /\n").await;
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("Permission denied"),
            "not an auth refusal: {}",
            text(&o)
        );
        // A key that is not alice's is refused (batch mode: no password fallback).
        let other = edge.path("other_key");
        let k = run(Command::new("ssh-keygen").args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            other.to_str().unwrap(),
        ]))
        .await;
        assert!(k.status.success());
        let o = sftp_batch(&edge, "alice", Some(&other), None, "ls /\n").await;
        assert!(!o.status.success(), "{}", text(&o));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_writes_shell_and_traversal_refused() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let src = edge.path("up.bin");
        std::fs::write(&src, b"upload").unwrap();
        // Each refusal is the server's answer to that request (a logged-in session: a failed
        // login would print "Permission denied (publickey…)" instead).
        for (cmd, refusal) in [
            ("put up.bin /fw/up.bin", "Permission denied"),
            ("rm /fw/a.bin", "Permission denied"),
            ("mkdir /fw/new", "Permission denied"),
            ("rmdir /fw/ap", "Permission denied"),
            ("rename /fw/a.bin /fw/b.bin", "Permission denied"),
            ("ln -s /fw/a.bin /fw/link", "Permission denied"),
            ("chmod 777 /fw/a.bin", "Permission denied"),
            ("get /../../../../etc/passwd passwd", "not found"),
            ("get ../../etc/hostname hostname", "not found"),
        ] {
            let o = sftp_batch(
                &edge,
                "alice",
                Some(&edge.alice_key),
                None,
                &format!("{cmd}\n"),
            )
            .await;
            let out = text(&o);
            assert!(!o.status.success(), "{cmd} succeeded: {out}");
            assert!(
                out.contains(refusal) && !out.contains("Permission denied ("),
                "{cmd}: expected {refusal:?}, got: {out}"
            );
        }
        assert!(!edge.path("passwd").exists() && !edge.path("hostname").exists());
        assert!(edge
            .core
            .catalog
            .lookup(&"/fw/up.bin".parse().unwrap())
            .is_none());
        // `..` above the root stays at the root.
        let o = sftp_batch(
            &edge,
            "alice",
            Some(&edge.alice_key),
            None,
            "cd ../../..\npwd\nls\n",
        )
        .await;
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains("Remote working directory: /\n"), "{out}");
        // No shell, no exec.
        let mut ssh = Command::new("ssh");
        ssh.args(SSH_OPTS)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
            .arg(&edge.alice_key)
            .args([
                "-p",
                &edge.sftp.port().to_string(),
                "alice@127.0.0.1",
                "cat /etc/passwd",
            ]);
        let o = run(&mut ssh).await;
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            !text(&o).contains("Permission denied ("),
            "login failed instead: {}",
            text(&o)
        );
        assert!(!String::from_utf8_lossy(&o.stdout).contains("root:"));
        // No port forwarding: the tunnel cannot be opened.
        let mut ssh = Command::new("ssh");
        ssh.args(SSH_OPTS)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                "-i",
            ])
            .arg(&edge.alice_key)
            .args([
                "-W",
                &edge.http.to_string(),
                "-p",
                &edge.sftp.port().to_string(),
                "alice@127.0.0.1",
            ]);
        let o = run(&mut ssh).await;
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("forwarding failed") || text(&o).contains("open failed"),
            "{}",
            text(&o)
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_logs_in_without_credentials() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let o = sftp_batch(
            &edge,
            "anonymous",
            None,
            None,
            "get /pub/readme.txt\nls /\n",
        )
        .await;
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert_eq!(
            std::fs::read(edge.path("readme.txt")).unwrap(),
            content("/pub/readme.txt")
        );
        assert!(!out.contains("fw"), "{out}");
        let o = sftp_batch(&edge, "anonymous", None, None, "get /fw/a.bin\n").await;
        assert!(!o.status.success());
    })
    .await
    .unwrap();
}

struct Client {
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key {
            *self.seen.lock().unwrap() = Some(key.clone());
        }
        Ok(true)
    }
}

/// Log in with russh as alice by key; returns the SFTP session and the server's host key.
async fn russh_sftp(edge: &Edge) -> (SftpSession, PublicKey, russh::client::Handle<Client>) {
    let seen = Arc::new(Mutex::new(None));
    let mut h = russh::client::connect(
        Arc::new(russh::client::Config::default()),
        edge.sftp,
        Client { seen: seen.clone() },
    )
    .await
    .unwrap();
    let key = russh::keys::load_secret_key(&edge.alice_key, None).unwrap();
    let r = h
        .authenticate_publickey("alice", PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .unwrap();
    assert!(r.success());
    let ch = h.channel_open_session().await.unwrap();
    ch.request_subsystem(true, "sftp").await.unwrap();
    let s = SftpSession::new(ch.into_stream()).await.unwrap();
    let key = seen.lock().unwrap().clone().unwrap();
    (s, key, h)
}

fn code<T>(r: Result<T, russh_sftp::client::error::Error>) -> StatusCode {
    match r {
        Err(russh_sftp::client::error::Error::Status(s)) => s.status_code,
        Err(e) => panic!("expected a status, got {e:?}"),
        Ok(_) => panic!("expected a status, got success"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_offsets_and_a_stable_host_key() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let (s, host_key, _h) = russh_sftp(&edge).await;
        assert_eq!(s.canonicalize("/fw/../fw/./ap").await.unwrap(), "/fw/ap");
        assert_eq!(s.canonicalize("../..").await.unwrap(), "/");
        let m = s.metadata("/fw/a.bin").await.unwrap();
        assert_eq!(m.size, Some(700_000));
        assert_eq!(m.mtime, Some(1_700_000_000));
        assert!(s.metadata("/fw/ap").await.unwrap().is_dir());
        assert!(s.symlink_metadata("/fw/a.bin").await.unwrap().is_regular());
        assert_eq!(
            code(s.metadata("/fw/missing.bin").await),
            StatusCode::NoSuchFile
        );
        assert_eq!(
            code(s.metadata("/top.bin").await),
            StatusCode::PermissionDenied
        );
        // Read at any offset (crossing a chunk boundary) through the file handle.
        let want = content("/fw/a.bin");
        let mut f = s.open("/fw/a.bin").await.unwrap();
        assert_eq!(f.metadata().await.unwrap().size, Some(700_000));
        f.seek(std::io::SeekFrom::Start(250_000)).await.unwrap();
        let mut buf = vec![0u8; 200_000];
        f.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, want[250_000..450_000]);
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, want[450_000..]);
        // Writes of every kind are refused with "permission denied".
        assert_eq!(
            code(s.create("/fw/new.bin").await),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(
                s.open_with_flags("/fw/a.bin", OpenFlags::READ | OpenFlags::WRITE)
                    .await
            ),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(s.write("/fw/a.bin", b"x").await),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(s.remove_file("/fw/a.bin").await),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(s.create_dir("/fw/d").await),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(s.remove_dir("/fw/ap").await),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(s.rename("/fw/a.bin", "/fw/b.bin").await),
            StatusCode::PermissionDenied
        );
        assert_eq!(
            code(s.symlink("/fw/l", "/fw/a.bin").await),
            StatusCode::PermissionDenied
        );
        assert_eq!(code(s.open("/fw").await), StatusCode::Failure);
        assert_eq!(code(s.read_dir("/fw/a.bin").await), StatusCode::Failure);
        assert_eq!(
            code(s.open("/fw/..\\..\\etc\\passwd").await),
            StatusCode::NoSuchFile
        );
        let names: Vec<String> = s
            .read_dir("/fw")
            .await
            .unwrap()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["a.bin", "ap", "empty.bin", "other"]);
        drop(s);
        // Same host key after a restart over the same data directory.
        let path = sitecast_edge::host_key_path(&edge.core.cfg.data_dir);
        assert!(path.exists());
        let mut edge = edge;
        let dir = std::mem::replace(&mut edge.dir, tempfile::tempdir().unwrap());
        drop(edge);
        let edge2 = start_in(dir, |_| {}).await;
        let (_s2, host_key2, _h2) = russh_sftp(&edge2).await;
        assert_eq!(host_key.key_data(), host_key2.key_data());
    })
    .await
    .unwrap();
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another client address (Linux routes all of 127.0.0.0/8 to the loopback interface).
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn tcp_from(edge: &Edge, from: IpAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    sock.connect(edge.sftp).await.unwrap()
}

/// An SSH connection (not yet authenticated) from client address `from`; `Err` when the
/// server closes it before the handshake completes.
async fn ssh_from(
    edge: &Edge,
    from: IpAddr,
) -> Result<russh::client::Handle<Client>, russh::Error> {
    let client = Client {
        seen: Arc::default(),
    };
    let config = Arc::new(russh::client::Config::default());
    russh::client::connect_stream(config, tcp_from(edge, from).await, client).await
}

/// What the server sends on a new connection from `from` before the client says anything:
/// its SSH identification line, or nothing when it closes the connection at once.
async fn server_hello(edge: &Edge, from: IpAddr) -> String {
    let mut s = tcp_from(edge, from).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.contains(&b'\n') {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn password_ok(h: &mut russh::client::Handle<Client>, user: &str, password: &str) -> bool {
    h.authenticate_password(user, password)
        .await
        .unwrap()
        .success()
}

async fn alice_key_ok(edge: &Edge, h: &mut russh::client::Handle<Client>) -> bool {
    let key = russh::keys::load_secret_key(&edge.alice_key, None).unwrap();
    h.authenticate_publickey("alice", PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .unwrap()
        .success()
}

async fn open_sftp(h: &russh::client::Handle<Client>) -> SftpSession {
    let ch = h.channel_open_session().await.unwrap();
    ch.request_subsystem(true, "sftp").await.unwrap();
    SftpSession::new(ch.into_stream()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_limited() {
    tokio::time::timeout(T, async {
        let edge = start(|c| c.sftp.max_connections_per_ip = 2).await;
        let mut a = ssh_from(&edge, LOCAL).await.unwrap();
        assert!(alice_key_ok(&edge, &mut a).await);
        let mut b = ssh_from(&edge, LOCAL).await.unwrap();
        assert!(password_ok(&mut b, "alice", pw("alice")).await);
        // A third from the same address is closed before the server's SSH banner, and the
        // russh client fails to connect.
        assert_eq!(server_hello(&edge, LOCAL).await, "");
        assert!(ssh_from(&edge, LOCAL).await.is_err());
        // Another address is served; the two open sessions keep working.
        let hello = server_hello(&edge, OTHER).await;
        assert!(hello.starts_with("SSH-2.0-sitecast_"), "{hello:?}");
        let s = open_sftp(&b).await;
        assert_eq!(s.metadata("/fw/a.bin").await.unwrap().size, Some(700_000));
        // a disconnects: its slot is freed and a new connection from the address succeeds.
        a.disconnect(russh::Disconnect::ByApplication, "bye", "en")
            .await
            .unwrap();
        // (The client's session ends with `Err(Disconnect)` when it disconnects itself.)
        let _ = a.await;
        // The server frees the slot just after its side of the connection ends, so a
        // reconnect may race the release: retry while refused (each refusal is awaited).
        let mut refused = 0;
        let mut c = loop {
            match ssh_from(&edge, LOCAL).await {
                Ok(c) => break c,
                Err(e) => {
                    refused += 1;
                    assert!(refused < 100, "still refused after a disconnected: {e}");
                }
            }
        };
        assert!(password_ok(&mut c, "alice", pw("alice")).await);
        let s2 = open_sftp(&c).await;
        assert_eq!(
            s2.metadata("/fw/ap/x.bin").await.unwrap().size,
            Some(300_000)
        );
        // Still at the limit: the next one is refused again.
        assert_eq!(server_hello(&edge, LOCAL).await, "");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_address_out() {
    tokio::time::timeout(T, async {
        let edge = start(|c| c.sftp.login_failures_before_lockout = 3).await;
        let mut h = ssh_from(&edge, LOCAL).await.unwrap();
        for _ in 0..2 {
            assert!(!password_ok(&mut h, "alice", "wrong").await);
        }
        // Two failures: the right password still works (on a new connection).
        let mut ok = ssh_from(&edge, LOCAL).await.unwrap();
        assert!(password_ok(&mut ok, "alice", pw("alice")).await);
        // The third locks the address out: the right password and alice's key are refused
        // too, on a new connection as well.
        assert!(!password_ok(&mut h, "alice", "wrong").await);
        assert!(!password_ok(&mut h, "alice", pw("alice")).await);
        let mut locked = ssh_from(&edge, LOCAL).await.unwrap();
        assert!(!password_ok(&mut locked, "alice", pw("alice")).await);
        assert!(!alice_key_ok(&edge, &mut locked).await);
        // Only that address: another logs in.
        let mut other = ssh_from(&edge, OTHER).await.unwrap();
        assert!(password_ok(&mut other, "alice", pw("alice")).await);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_closed() {
    tokio::time::timeout(T, async {
        let edge = start(|c| c.sftp.idle_timeout = Duration::from_secs(1)).await;
        let (s, _, mut h) = russh_sftp(&edge).await;
        assert_eq!(s.metadata("/fw/a.bin").await.unwrap().size, Some(700_000));
        // Send nothing more: the server closes the connection (the default would wait 5 min),
        // without an SSH disconnect message, so the client's session ends at EOF.
        let idle_since = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(10), &mut h)
            .await
            .expect("the server closes an idle session (idle_timeout = 1s)");
        let idle = idle_since.elapsed();
        assert!(
            matches!(&ended, Err(russh::Error::IO(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{ended:?}"
        );
        assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");
        assert!(h.is_closed());
    })
    .await
    .unwrap();
}

/// The password cache is the edge's, not a protocol's: alice logging in over HTTP, FTP and
/// SFTP costs one argon2 verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_password_verification_serves_http_ftp_and_sftp() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        assert_eq!(edge.core.auth.verifications(), 0);
        let http = reqwest::Client::new()
            .get(format!("http://{}/fw/a.bin", edge.http))
            .basic_auth("alice", Some(pw("alice")))
            .send()
            .await
            .unwrap();
        assert_eq!(http.status(), 200);
        assert_eq!(http.bytes().await.unwrap(), content("/fw/a.bin"));
        assert_eq!(edge.core.auth.verifications(), 1, "HTTP login");
        let ftp = run(Command::new("curl").args([
            "-sS",
            "-u",
            &format!("alice:{}", pw("alice")),
            &format!("ftp://{}/fw/a.bin", edge.ftp),
        ]))
        .await;
        assert!(ftp.status.success(), "{}", text(&ftp));
        assert_eq!(ftp.stdout, content("/fw/a.bin"));
        let o = sftp_batch(
            &edge,
            "alice",
            None,
            Some(pw("alice")),
            "get /fw/a.bin cache.bin\n",
        )
        .await;
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            std::fs::read(edge.path("cache.bin")).unwrap(),
            content("/fw/a.bin")
        );
        assert_eq!(
            edge.core.auth.verifications(),
            1,
            "FTP and SFTP logins answered from the cache HTTP filled"
        );
    })
    .await
    .unwrap();
}
