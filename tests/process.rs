//! Process hygiene, as an operator meets it (issue 10): a data dir is held by one process; a
//! closed log pipe neither kills the edge nor makes it deaf to SIGTERM; the reconnect backoff
//! honours `reconnect_max` and every failed connect is logged with its reason; databases,
//! keys and tokens are private; the systemd units pass `systemd-analyze verify`.

mod common;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::clients::{wait_session_failures, wait_session_state};
use common::*;

/// `sitecast ARGS` with every port chosen by the kernel; exits within the timeout or fails.
fn run_sitecast(env: &TestEnv, args: &[&str]) -> CmdOutput {
    let mut c = sitecast_command();
    c.args(args);
    run_cmd(env, c, Duration::from_secs(20))
}

const EDGE_PORTS: [&str; 10] = [
    "--http-listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--ftp-listen",
    "127.0.0.1:0",
    "--sftp-listen",
    "127.0.0.1:0",
    "--oci-listen",
    "127.0.0.1:0",
];

#[test]
fn a_second_process_on_a_data_dir_exits_at_once_naming_the_holder() {
    let env = TestEnv::new("process-lock", Duration::from_secs(90));
    let origin = Origin::start(&env);
    let dir = origin.dir.to_str().unwrap().to_owned();
    let any = "127.0.0.1:0";
    let o = run_sitecast(
        &env,
        &[
            "origin",
            "--data-dir",
            &dir,
            "--api-listen",
            any,
            "--quic-listen",
            any,
            "--registry-listen",
            any,
        ],
    );
    assert_eq!(o.code, Some(1), "{o:?}");
    let holder = format!("pid {}, sitecast origin", origin.pid());
    assert!(
        o.stderr.contains("is in use by another process") && o.stderr.contains(&holder),
        "{o:?}"
    );

    let edge_dir = env.path("edge");
    let edge = Edge::start(&env, origin.quic, None, &edge_dir, &[]);
    let mut args = vec!["edge", "--data-dir", edge_dir.to_str().unwrap()];
    args.extend(EDGE_PORTS);
    let o = run_sitecast(&env, &args);
    assert_eq!(o.code, Some(1), "{o:?}");
    let holder = format!("pid {}, sitecast edge", edge.pid());
    assert!(o.stderr.contains(&holder), "{o:?}");
    // The first ones kept serving.
    let health = format!("http://{}/healthz", edge.metrics);
    assert_eq!(curl(&env, &[&health]).status, 200);
    assert!(origin.ctl(&env, &["site", "list"]).ok());
}

/// An edge whose stdout and stderr are a pipe that its reader closed (`sitecast edge 2>&1 |
/// head -n 3`): it keeps serving while it logs, and SIGTERM still stops it, cleanly.
#[test]
fn a_closed_log_pipe_neither_kills_the_edge_nor_stops_its_shutdown() {
    let env = TestEnv::new("process-pipe", Duration::from_secs(90));
    let dir = env.path("edge");
    // Not enrolled and no join token: the session logs an error every 100 ms.
    let cfg = env.path("edge.toml");
    std::fs::write(
        &cfg,
        "[quic]\nreconnect_min = \"50ms\"\nreconnect_max = \"100ms\"\n",
    )
    .unwrap();
    let mut c = sitecast_command();
    c.args(["edge", "--data-dir", dir.to_str().unwrap(), "--node", "e1"])
        .args(["--origin", "127.0.0.1:9", "--config", cfg.to_str().unwrap()])
        .args(EDGE_PORTS)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawning sitecast edge");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut ready = String::new();
    BufReader::new(stdout).read_line(&mut ready).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("ready line");
    let http = ready["http"].as_str().unwrap().to_owned();
    // Both readers go away, as `head` does once it has its lines (the BufReader took stdout).
    drop(stderr);

    // Serving continues through many log lines written into the closed pipe (nobody is
    // granted anything here, so every request is a 401).
    let health = format!("http://{}/healthz", ready["metrics"].as_str().unwrap());
    for i in 0..20 {
        let r = curl(&env, &[&format!("http://{http}/no/such/file-{i}")]);
        assert_eq!(r.status, 401, "request {i} after the log pipe closed");
        assert_eq!(curl(&env, &[&health]).status, 200);
    }
    wait_for_log_attempts(&env, &ready);

    let pid = child.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(env.cap(Duration::from_secs(15)))
        .unwrap_or_else(|_| {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the edge ignored SIGTERM after its log pipe closed")
        })
        .unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
}

/// The edge's metrics count failed sessions: wait until a few more were logged (into the
/// closed pipe) since the pipe closed.
fn wait_for_log_attempts(env: &TestEnv, ready: &serde_json::Value) {
    let metrics = format!("http://{}/metrics", ready["metrics"].as_str().unwrap());
    let until = Instant::now() + env.cap(Duration::from_secs(20));
    loop {
        let text = curl(env, &[&metrics]).text();
        let n = prom_sum(&text, "sitecast_edge_origin_session_failures_total", &[]);
        if n.is_some_and(|n| n >= 10.0) {
            return;
        }
        assert!(
            Instant::now() < until,
            "no failed sessions counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The origin goes away and comes back: the edge logs each failed attempt with its reason
/// while it is gone, and is back within `reconnect_max` (plus a handshake) once it returns.
#[test]
fn reconnect_honours_its_maximum_and_failed_connects_are_logged() {
    let env = TestEnv::new("process-reconnect", Duration::from_secs(150));
    let mut origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    let cfg = env.path("edge.toml");
    std::fs::write(
        &cfg,
        "[quic]\nreconnect_min = \"100ms\"\nreconnect_max = \"2s\"\nconnect_timeout = \"1s\"\n",
    )
    .unwrap();
    let edge = Edge::start(
        &env,
        origin.quic,
        Some(&token),
        &env.path("edge"),
        &["--config", cfg.to_str().unwrap()],
    );
    wait_session_state(&env, &edge, "connected", Duration::from_secs(30));

    // A clean stop closes the QUIC connection, so the edge notices at once.
    assert!(origin.stop(&env).success());
    // Enough failed attempts that the backoff sits at its maximum.
    wait_session_failures(&env, &edge, 6, Duration::from_secs(40));
    let log = std::fs::read_to_string(edge.log()).unwrap();
    assert!(
        log.contains("cannot reach the origin") && log.contains("no answer within 1s"),
        "a failed connect is logged with its reason:\n{}",
        log_tail(edge.log(), 30)
    );

    origin.restart(&env);
    let back = Instant::now();
    wait_session_state(&env, &edge, "connected", Duration::from_secs(30));
    let took = back.elapsed();
    eprintln!("reconnected {took:?} after the origin was back (reconnect_max 2s)");
    assert!(
        took <= Duration::from_millis(3500),
        "reconnect_max 2s, connect_timeout 1s: the edge took {took:?} to come back"
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `dir` and every directory under it outside `chunks/` (content, not secrets) is closed to
/// others; databases, keys and tokens are 0600; nothing is writable by others.
fn assert_private(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut seen = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "chunks") {
                    assert_eq!(mode(&p) & 0o077, 0, "{} is open to others", p.display());
                    stack.push(p);
                }
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let secret = name.contains("key") || name.contains(".db") || name.contains("token");
            if secret {
                assert_eq!(mode(&p), 0o600, "{}: {:o}", p.display(), mode(&p));
                seen += 1;
            } else {
                assert_eq!(mode(&p) & 0o022, 0, "{}: {:o}", p.display(), mode(&p));
            }
        }
    }
    assert!(
        seen >= 3,
        "{}: too few files to mean anything",
        dir.display()
    );
}

#[test]
fn databases_keys_and_tokens_are_private() {
    let env = TestEnv::new("process-modes", Duration::from_secs(90));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    origin.ctl_ok(&env, &["user", "create", "u", "--password", "pw"]);
    let edge = Edge::start(&env, origin.quic, Some(&token), &env.path("edge"), &[]);
    wait_session_state(&env, &edge, "connected", Duration::from_secs(30));
    assert_private(&origin.dir);
    assert_private(&edge.dir);
    for name in ["origin.db", "admin.token"] {
        assert_eq!(mode(&origin.dir.join(name)), 0o600, "{name}");
    }
    assert_eq!(mode(&edge.dir.join("edge.db")), 0o600);
}

/// The units and the sysusers file as shipped, checked by systemd's own tools (with the
/// binary path pointed at this build).
#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let env = TestEnv::new("process-units", Duration::from_secs(60));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    let dir = env.path("units");
    std::fs::create_dir_all(&dir).unwrap();
    for unit in ["sitecast-origin.service", "sitecast-edge.service"] {
        let text = std::fs::read_to_string(root.join(unit)).unwrap();
        assert!(
            text.contains("--config-optional"),
            "{unit} starts without a config"
        );
        assert!(
            text.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"),
            "{unit}"
        );
        assert!(text.contains("StateDirectory=") && text.contains("ConfigurationDirectory="));
        let local = dir.join(unit);
        std::fs::write(&local, text.replace("/usr/local/bin/sitecast", BIN)).unwrap();
        let mut c = Command::new("systemd-analyze");
        c.args(["verify", "--man=no"]).arg(&local);
        let o = run_cmd(&env, c, Duration::from_secs(30));
        assert!(o.ok() && !o.stderr.contains(unit), "{unit}: {o:?}");
        let mut c = Command::new("systemd-analyze");
        c.args(["security", "--offline=yes", "--threshold=30"])
            .arg(&local);
        let o = run_cmd(&env, c, Duration::from_secs(30));
        assert!(
            o.ok(),
            "{unit}: exposure above 3.0 (of 10):\n{}{}",
            o.stdout,
            o.stderr
        );
    }
    let sysroot = env.path("sysroot");
    std::fs::create_dir_all(sysroot.join("etc")).unwrap();
    let mut c = Command::new("systemd-sysusers");
    c.arg(format!("--root={}", sysroot.display()))
        .arg(root.join("sitecast.sysusers"));
    let o = run_cmd(&env, c, Duration::from_secs(30));
    assert!(o.ok(), "{o:?}");
    let passwd = std::fs::read_to_string(sysroot.join("etc/passwd")).unwrap();
    assert!(passwd.contains("sitecast:"), "{passwd}");
}
