//! TLS where secrets travel (issue 10 part 1): the origin's REST API and registry serve HTTPS
//! with a certificate from its own CA (`tls.names`) or from the operator's files; the edge's
//! HTTP and OCI listeners with the operator's files or with a certificate the origin issues for
//! its site's names (`tls_from_origin`); `ctl` verifies the server (`--ca`) and
//! refuses an unknown one. Real processes; certificates made by the `openssl` CLI; curl as
//! the client.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// `curl -sS ARGS`, whatever it exits with: (exit code, HTTP status or 0, stderr).
fn curl_raw(env: &TestEnv, args: &[&str]) -> (Option<i32>, u16, String) {
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .args(args);
    let o = run_cmd(env, c, Duration::from_secs(30));
    (o.code, o.stdout.trim().parse().unwrap_or(0), o.stderr)
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, made with `openssl`:
/// (ca.pem, leaf chain, leaf key).
fn openssl_ca_and_leaf(env: &TestEnv, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
    -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key \
    -out leaf.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
    -days 2 -extfile ext 2>/dev/null
"#;
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).current_dir(dir);
    let o = run_cmd(env, c, Duration::from_secs(30));
    assert!(o.ok(), "openssl: {o:?}");
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

#[test]
fn the_origin_serves_https_from_its_own_ca_and_ctl_verifies_it() {
    let env = TestEnv::new("tls-origin-ca", Duration::from_secs(120));
    let origin = Origin::start_with_config(&env, "[tls]\nnames = [\"127.0.0.1\", \"localhost\"]\n");
    let ca = origin.dir.join("ca").join("ca.pem");
    let ca_s = ca.to_str().unwrap();
    let api = format!("https://127.0.0.1:{}", origin.api.port());
    let reg = format!("https://localhost:{}", origin.registry.port());

    // curl trusts the origin's CA file, and nothing else.
    let (code, status, err) = curl_raw(&env, &["--cacert", ca_s, &format!("{api}/healthz")]);
    assert_eq!((code, status), (Some(0), 200), "{err}");
    let (code, _, err) = curl_raw(&env, &[&format!("{api}/healthz")]);
    assert_eq!(
        code,
        Some(60),
        "an unknown issuer must fail verification: {err}"
    );
    // The TLS port does not also speak plain HTTP.
    let (code, status, _) = curl_raw(
        &env,
        &[&format!("http://127.0.0.1:{}/healthz", origin.api.port())],
    );
    assert!(
        code != Some(0) || status != 200,
        "plain HTTP answered on the HTTPS port"
    );
    // The registry listener serves the same certificate (name `localhost` from tls.names).
    let (code, status, err) = curl_raw(&env, &["--cacert", ca_s, &format!("{reg}/v2/")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(status == 200 || status == 401, "{status}");

    // ctl: verified with --ca (or SITECAST_CA); refused without, naming the certificate.
    let out = ctl_raw(
        &env,
        &api,
        &origin.token,
        &["--ca", ca_s, "site", "create", "s1"],
        Duration::from_secs(30),
    );
    assert!(out.ok(), "{out:?}");
    let mut c = Command::new(BIN);
    c.args(["ctl", "site", "list"])
        .env("SITECAST_API", &api)
        .env("SITECAST_TOKEN", &origin.token)
        .env("SITECAST_CA", ca_s);
    let out = run_cmd(&env, c, Duration::from_secs(30));
    assert!(out.ok() && out.stdout.contains("s1"), "{out:?}");
    let out = ctl_raw(
        &env,
        &api,
        &origin.token,
        &["site", "list"],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("certificate") || out.stderr.contains("UnknownIssuer"),
        "the reason names the certificate: {out:?}"
    );
    // A CA that is not a PEM certificate is refused before anything is sent.
    let junk = env.path("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let out = ctl_raw(
        &env,
        &api,
        &origin.token,
        &["--ca", junk.to_str().unwrap(), "site", "list"],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("no PEM certificate"), "{out:?}");
}

#[test]
fn operator_certificates_serve_the_origin_api_and_the_edge_http_and_oci_listeners() {
    let env = TestEnv::new("tls-files", Duration::from_secs(150));
    let (ca, cert, key) = openssl_ca_and_leaf(&env, &env.path("pki"));
    let (ca_s, cert_s, key_s) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let origin = Origin::start_with_config(
        &env,
        &format!("[tls]\ncert = {cert_s:?}\nkey = {key_s:?}\n"),
    );
    let api = format!("https://localhost:{}", origin.api.port());
    let (code, status, err) = curl_raw(&env, &["--cacert", ca_s, &format!("{api}/healthz")]);
    assert_eq!((code, status), (Some(0), 200), "{err}");
    let out = ctl_raw(
        &env,
        &api,
        &origin.token,
        &["--ca", ca_s, "--output", "json", "site", "create", "s1"],
        Duration::from_secs(30),
    );
    assert!(out.ok(), "{out:?}");
    let token: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let token = token["join_token"].as_str().unwrap().to_owned();

    // The edge's device HTTP and OCI mirror listeners over HTTPS with the same files.
    let cfg = env.path("edge.toml");
    std::fs::write(
        &cfg,
        format!("[http]\ntls_cert = {cert_s:?}\ntls_key = {key_s:?}\n[oci]\ntls_cert = {cert_s:?}\ntls_key = {key_s:?}\n"),
    )
    .unwrap();
    let edge = Edge::start(
        &env,
        origin.quic,
        Some(&token),
        &env.path("edge"),
        &["--config", cfg.to_str().unwrap()],
    );
    let http = format!("https://localhost:{}", edge.http.port());
    let (code, status, err) = curl_raw(&env, &["--cacert", ca_s, &format!("{http}/nothing.bin")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(status == 401 || status == 404, "{status}");
    let (code, _, err) = curl_raw(&env, &[&format!("{http}/nothing.bin")]);
    assert_eq!(code, Some(60), "{err}");
    let oci = format!("https://localhost:{}", edge.oci.unwrap().port());
    let (code, status, err) = curl_raw(&env, &["--cacert", ca_s, &format!("{oci}/v2/")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(status == 200 || status == 401, "{status}");
}

#[test]
fn tls_settings_that_cannot_work_are_refused_at_start() {
    let env = TestEnv::new("tls-bad", Duration::from_secs(60));
    let check = |name: &str, toml: &str, program: &str, expect: &str| {
        let f = env.path(name);
        std::fs::write(&f, toml).unwrap();
        let mut c = sitecast_command();
        c.args([program, "--check-config", "--config", f.to_str().unwrap()]);
        let o = run_cmd(&env, c, Duration::from_secs(20));
        assert_eq!(o.code, Some(1), "{toml}: {o:?}");
        assert!(o.stderr.contains(expect), "{toml}: {o:?}");
    };
    check(
        "a.toml",
        "[tls]\ncert = \"/x.pem\"\n",
        "origin",
        "tls.cert and tls.key",
    );
    check(
        "b.toml",
        "[tls]\nnames = [\"bad name\"]\n",
        "origin",
        "tls.names",
    );
    check(
        "c.toml",
        "[http]\ntls_cert = \"/x.pem\"\n",
        "edge",
        "http.tls_cert and http.tls_key",
    );
    check(
        "d.toml",
        "[oci]\ntls_cert = \"/nope.pem\"\ntls_key = \"/nope.key\"\n",
        "edge",
        "not readable",
    );
    // Files that exist but hold no certificate: the origin exits 1 naming them, before ready.
    let junk = env.path("junk.pem");
    std::fs::write(&junk, "junk\n").unwrap();
    let f = env.path("e.toml");
    std::fs::write(&f, format!("[tls]\ncert = {:?}\nkey = {:?}\n", junk, junk)).unwrap();
    let any = "127.0.0.1:0";
    let mut c = sitecast_command();
    c.args([
        "origin",
        "--config",
        f.to_str().unwrap(),
        "--data-dir",
        env.path("o").to_str().unwrap(),
        "--api-listen",
        any,
        "--quic-listen",
        any,
        "--registry-listen",
        any,
    ]);
    let o = run_cmd(&env, c, Duration::from_secs(20));
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(
        o.stderr.contains("junk.pem") && o.stderr.contains("no certificate"),
        "{o:?}"
    );
    assert!(!o.stdout.contains("\"ready\""), "{o:?}");
}

/// Poll `ok` until it holds; panic naming `what` when the test's budget (at most 30 s) runs
/// out.
fn until(env: &TestEnv, what: &str, ok: impl FnMut() -> bool) {
    assert!(
        eventually(env.cap(Duration::from_secs(30)), ok),
        "timed out: {what}"
    );
}

#[test]
fn the_origin_issues_the_edge_s_https_certificate_for_its_site_s_names() {
    let env = TestEnv::new("tls-from-origin", Duration::from_secs(150));
    let mut origin = Origin::start(&env);
    let ca = origin.dir.join("ca").join("ca.pem");
    let ca_s = ca.to_str().unwrap().to_owned();
    let token = origin.create_site(&env, "s1", &[]);
    let cfg = env.path("edge.toml");
    std::fs::write(
        &cfg,
        "[http]\ntls_from_origin = true\n[oci]\ntls_from_origin = true\n",
    )
    .unwrap();
    let mut edge = Edge::start(
        &env,
        origin.quic,
        Some(&token),
        &env.path("edge"),
        &["--config", cfg.to_str().unwrap()],
    );
    let port = edge.http.port();

    // While the site lists no names: HTTPS only, with a placeholder no verifying client trusts.
    let (code, status, err) = curl_raw(&env, &["-k", &format!("https://127.0.0.1:{port}/x.bin")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(status == 401 || status == 404, "{status}");
    let (code, _, err) = curl_raw(
        &env,
        &[
            "--cacert",
            &ca_s,
            &format!("https://127.0.0.1:{port}/x.bin"),
        ],
    );
    assert_eq!(
        code,
        Some(60),
        "the placeholder must fail verification: {err}"
    );
    let (code, status, _) = curl_raw(&env, &[&format!("http://127.0.0.1:{port}/x.bin")]);
    assert!(
        code != Some(0) || status == 0,
        "plain HTTP answered on the HTTPS port"
    );

    // Names set: the connected edge gets a certificate for them at once, on both listeners.
    let out = origin.ctl(&env, &["site", "https-names", "s1", "bad name"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("neither a DNS name"), "{out:?}");
    origin.ctl_ok(
        &env,
        &["site", "https-names", "s1", "localhost", "127.0.0.1"],
    );
    let verified = |host: &str, port: u16, path: &str| {
        let url = format!("https://{host}:{port}{path}");
        let resolve = format!("{host}:{port}:127.0.0.1");
        curl_raw(&env, &["--cacert", &ca_s, "--resolve", &resolve, &url]).0 == Some(0)
    };
    until(&env, "a certificate for 127.0.0.1", || {
        verified("127.0.0.1", port, "/x.bin")
    });
    let oci = edge.oci.unwrap().port();
    assert!(
        verified("localhost", oci, "/v2/"),
        "the OCI mirror serves it too"
    );

    // Names changed: a new certificate for the new name only.
    origin.ctl_ok(&env, &["site", "https-names", "s1", "edge.farm17.test"]);
    until(&env, "a certificate for edge.farm17.test", || {
        verified("edge.farm17.test", port, "/x.bin")
    });
    let (code, _, err) = curl_raw(
        &env,
        &[
            "--cacert",
            &ca_s,
            &format!("https://127.0.0.1:{port}/x.bin"),
        ],
    );
    assert_eq!(code, Some(60), "127.0.0.1 is no longer a name of it: {err}");
    let site = origin.ctl_json(&env, &["site", "show", "s1"]);
    assert_eq!(site["https_names"], serde_json::json!(["edge.farm17.test"]));

    // The key never left the node and is private; the certificate survives a restart without
    // the origin.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(edge.dir.join("https/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(edge.dir.join("https/key.pem")).unwrap();
    for f in walk(&origin.dir) {
        let text = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains(key.trim()),
            "the edge's HTTPS key is in {}",
            f.display()
        );
    }
    origin.kill();
    edge.restart(&env);
    let port = edge.http.port();
    assert!(
        verified("edge.farm17.test", port, "/x.bin"),
        "after a restart without the origin: {}",
        log_tail(edge.log(), 20)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
