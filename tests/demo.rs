//! `sitecast demo` end to end: it writes its env file once ready, the sample is served to the
//! demo user over HTTP, Ctrl-C (SIGINT) exits 0, and a second run on the same dir keeps state.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const KEYS: [&str; 14] = [
    "SITECAST_API",
    "SITECAST_TOKEN",
    "SITECAST_ORIGIN_REGISTRY",
    "SITECAST_SITE",
    "SITECAST_EDGE_HTTP",
    "SITECAST_EDGE_FTP",
    "SITECAST_EDGE_SFTP",
    "SITECAST_DEMO_USER",
    "SITECAST_DEMO_PASSWORD",
    "SITECAST_SAMPLE_PATH",
    "SITECAST_SAMPLE_SHA256",
    "SITECAST_EDGE_REGISTRY",
    "SITECAST_SAMPLE_IMAGE",
    "SITECAST_SAMPLE_IMAGE_DIGEST",
];

/// A running demo; SIGKILLed on drop unless it was stopped.
struct Demo {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Demo {
    fn start(env: &TestEnv, dir: &Path, env_file: &Path, log: &Path) -> Self {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let _ = writeln!(f, "===== harness: starting demo");
        let child = Command::new(BIN)
            .args(["demo", "--dir"])
            .arg(dir)
            .arg("--env-file")
            .arg(env_file)
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .env_remove("SITECAST_API")
            .env_remove("SITECAST_TOKEN")
            .spawn()
            .unwrap_or_else(|e| panic!("spawning sitecast demo: {e}"));
        let _ = env;
        Self {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// Wait for the env file. The file appearing (written atomically once everything is ready)
    /// is the demo's contract; there is no other event a second process can wait on, so poll
    /// every 100 ms under a deadline, and fail early if the demo exits.
    fn wait_env(
        &mut self,
        env: &TestEnv,
        file: &Path,
        timeout: Duration,
    ) -> BTreeMap<String, String> {
        let until = Instant::now() + env.cap(timeout);
        loop {
            if let Ok(text) = std::fs::read_to_string(file) {
                return parse_env(&text);
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "demo exited ({st}) before writing {}:\n{}",
                    file.display(),
                    log_tail(&self.log, 80)
                );
            }
            assert!(
                Instant::now() < until,
                "demo did not write {} within {timeout:?}:\n{}",
                file.display(),
                log_tail(&self.log, 80)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGINT (Ctrl-C) and the exit code. The child is unreaped, so its PID is still ours.
    /// std has no wait-with-timeout, so poll try_wait every 50 ms under a deadline.
    fn interrupt(&mut self, env: &TestEnv) -> Option<i32> {
        let mut child = self.child.take().expect("demo running");
        let st = Command::new("kill")
            .args(["-s", "INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let until = Instant::now() + env.cap(Duration::from_secs(30));
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "demo did not exit within 30 s of SIGINT:\n{}",
                    log_tail(&self.log, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if std::thread::panicking() {
                eprintln!(
                    "----- demo output (tail) -----\n{}\n-----",
                    log_tail(&self.log, 60)
                );
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// Fetch the sample as the demo user and check its SHA-256.
fn check_sample(env: &TestEnv, vars: &BTreeMap<String, String>) {
    for k in KEYS {
        assert!(
            vars.get(k).is_some_and(|v| !v.is_empty()),
            "env file lacks {k}: {vars:?}"
        );
    }
    let base = vars["SITECAST_EDGE_HTTP"].trim_end_matches('/');
    let base = if base.starts_with("http://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let url = format!("{base}{}", vars["SITECAST_SAMPLE_PATH"]);
    let out = env.scratch("sample.bin");
    let user = format!(
        "{}:{}",
        vars["SITECAST_DEMO_USER"], vars["SITECAST_DEMO_PASSWORD"]
    );
    let r = curl_to_file(env, &["-u", &user, &url], &out);
    assert_eq!(r.status, 200, "GET {url} as the demo user");
    assert_eq!(
        sha256sum(env, &out),
        vars["SITECAST_SAMPLE_SHA256"].to_ascii_lowercase()
    );
    let r = curl_to_file(env, &[&url], Path::new("/dev/null"));
    assert_eq!(r.status, 401, "the sample without credentials");

    // The same sample over FTP (busybox ftpget) and SFTP (OpenSSH), as the demo prints.
    let creds = (
        vars["SITECAST_DEMO_USER"].as_str(),
        vars["SITECAST_DEMO_PASSWORD"].as_str(),
    );
    let sample = &vars["SITECAST_SAMPLE_PATH"];
    let sha = vars["SITECAST_SAMPLE_SHA256"].to_ascii_lowercase();
    let addr = |k: &str| -> std::net::SocketAddr {
        let v = vars[k].rsplit("://").next().unwrap_or_default();
        let v = v.replace("0.0.0.0", "127.0.0.1");
        v.parse().unwrap_or_else(|e| panic!("{k}={}: {e}", vars[k]))
    };
    let got = env.scratch("sample-ftp.bin");
    let o = clients::ftpget_at(env, addr("SITECAST_EDGE_FTP"), Some(creds), sample, &got);
    assert!(o.ok(), "ftpget of the sample: {o:?}");
    assert_eq!(sha256sum(env, &got), sha, "the sample over FTP");
    let got = env.scratch("sample-sftp.bin");
    let o = clients::sftp_get_at(env, addr("SITECAST_EDGE_SFTP"), Some(creds), sample, &got);
    assert!(o.ok(), "sftp of the sample: {o:?}");
    assert_eq!(sha256sum(env, &got), sha, "the sample over SFTP");

    // The admin API and token from the file work with ctl.
    let o = ctl_raw(
        env,
        &vars["SITECAST_API"],
        &vars["SITECAST_TOKEN"],
        &["--output", "json", "site", "show", &vars["SITECAST_SITE"]],
        Duration::from_secs(30),
    );
    assert!(o.ok(), "ctl site show with the demo's API and token: {o:?}");

    // The origin's registry answers with the same token, and refuses without it.
    let reg = format!("http://{}/v2/", vars["SITECAST_ORIGIN_REGISTRY"]);
    let r = curl(
        env,
        &["-u", &format!("sitecast:{}", vars["SITECAST_TOKEN"]), &reg],
    );
    assert_eq!(r.status, 200, "the demo's registry with its token");
    assert_eq!(curl(env, &[&reg]).status, 401);

    // The sample image, pushed to the site: the edge's mirror serves it byte-exact, without
    // credentials, by the reference and digest the env file names.
    let image = &vars["SITECAST_SAMPLE_IMAGE"];
    let (repo, tag) = image.rsplit_once(':').expect("image reference with a tag");
    let path = repo.strip_prefix("docker.io/").expect("a docker.io image");
    let url = format!(
        "http://{}/v2/{path}/manifests/{tag}?ns=docker.io",
        vars["SITECAST_EDGE_REGISTRY"]
    );
    let r = curl(env, &[&url]);
    assert_eq!(
        r.status,
        200,
        "sample image manifest from the edge: {}",
        r.text()
    );
    assert_eq!(
        common::oci::digest(&r.body),
        vars["SITECAST_SAMPLE_IMAGE_DIGEST"],
        "the edge's manifest is the pushed one"
    );
}

#[test]
fn demo_runs_serves_its_sample_and_keeps_state() {
    let env = TestEnv::new("demo", Duration::from_secs(240));
    let dir = env.path("demo-state");
    let file = env.path("demo.env");
    let log = env.path("demo.log");

    let mut demo = Demo::start(&env, &dir, &file, &log);
    let first = demo.wait_env(&env, &file, Duration::from_secs(120));
    check_sample(&env, &first);
    assert_eq!(
        demo.interrupt(&env),
        Some(0),
        "demo exit code after SIGINT:\n{}",
        log_tail(&log, 40)
    );

    // Second run on the same dir: same site, user, sample; still served.
    std::fs::remove_file(&file).unwrap();
    let mut demo = Demo::start(&env, &dir, &file, &log);
    let second = demo.wait_env(&env, &file, Duration::from_secs(120));
    check_sample(&env, &second);
    for k in [
        "SITECAST_SITE",
        "SITECAST_DEMO_USER",
        "SITECAST_DEMO_PASSWORD",
        "SITECAST_SAMPLE_PATH",
        "SITECAST_SAMPLE_SHA256",
        "SITECAST_TOKEN",
    ] {
        assert_eq!(first[k], second[k], "{k} changed between runs");
    }
    assert_eq!(
        demo.interrupt(&env),
        Some(0),
        "second demo exit code after SIGINT"
    );
}
