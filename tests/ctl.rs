//! `sitecast ctl` and the metrics endpoints as an operator meets them with bad input (issue 10
//! part 7): one clear answer, JSON on stdout with `--output json`, a non-zero exit, nothing
//! silently changed; secrets from stdin, a file or the environment; deletes say what they
//! deleted; both `/metrics` pass a real exposition parser (Python `prometheus_client`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::clients::wait_session_state;
use common::*;
use serde_json::Value;

/// `sh -c SCRIPT` with the origin's API and token in the environment (for stdin pipes).
fn sh(env: &TestEnv, origin: &Origin, script: &str) -> CmdOutput {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .env("SITECAST_API", origin.url())
        .env("SITECAST_TOKEN", &origin.token)
        .env("BIN", BIN);
    run_cmd(env, c, Duration::from_secs(30))
}

fn json_error(out: &CmdOutput) -> Value {
    assert_eq!(out.code, Some(1), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"));
    assert!(
        v["error"]["code"].is_string() && v["error"]["message"].is_string(),
        "{v}"
    );
    v
}

#[test]
fn bad_input_gets_one_clear_answer_and_json_errors_on_stdout() {
    let env = TestEnv::new("ctl-input", Duration::from_secs(120));
    let origin = Origin::start(&env);

    // API errors and unreachable origins: JSON on stdout, exit 1, nothing on stdout in text.
    let v = json_error(&origin.ctl(&env, &["--output", "json", "push", "show", "999"]));
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["status"].as_u64()),
        (Some("not_found"), Some(404))
    );
    let out = ctl_raw(
        &env,
        "http://127.0.0.1:9",
        "t",
        &["--output", "json", "site", "list"],
        Duration::from_secs(30),
    );
    let v = json_error(&out);
    assert_eq!(v["error"]["code"], "transport", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{v}"
    );
    let out = origin.ctl(&env, &["push", "show", "999"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(1), ""), "{out:?}");
    assert!(out.stderr.starts_with("error: not_found"), "{out:?}");

    // Join token lifetimes: out of range refused, naming the flag's field; the expiry printed.
    let v = json_error(&origin.ctl(
        &env,
        &[
            "--output",
            "json",
            "site",
            "create",
            "t1",
            "--join-token-ttl",
            "0s",
        ],
    ));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("join_token_ttl"),
        "{v}"
    );
    let out = origin.ctl_ok(&env, &["site", "create", "t1", "--join-token-ttl", "2h"]);
    assert!(out.contains("valid until 20"), "{out}");
    let v = origin.ctl_json(&env, &["site", "join-token", "t1", "--ttl", "30min"]);
    assert!(v["join_token_expires"].as_str().is_some(), "{v}");
    origin.ctl_ok(&env, &["site", "delete", "t1"]);

    // Usage errors clap raises are JSON on stdout too (code "usage", exit 2), in both
    // spellings of the flag; in text they stay clap's message on stderr.
    for args in [
        &["--output", "json", "push", "show"][..],
        &["--output=json", "site", "create", "s", "--no-such-flag"][..],
    ] {
        let out = origin.ctl(&env, args);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {out:?}"));
        assert_eq!(v["error"]["code"], "usage", "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty(), "{v}");
    }
    let out = origin.ctl(&env, &["push", "show"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(2), ""), "{out:?}");
    assert!(out.stderr.starts_with("error: "), "{out:?}");
    let out = origin.ctl(&env, &["--output", "json", "--help"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Usage"), "{out:?}");

    // A directory is not uploaded, and the message says why (not "cannot reach the origin").
    let dir = env.scratch("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    let out = origin.ctl(&env, &["artifact", "upload", dir.to_str().unwrap(), "/p"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("not a regular file"), "{out:?}");

    // Conflicting or repeated flags are refused, not merged or overwritten.
    let out = origin.ctl(
        &env,
        &[
            "push",
            "create",
            "--content",
            "/x",
            "--site",
            "s",
            "--label",
            "a=b",
        ],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("cannot be used with"), "{out:?}");
    let out = origin.ctl(
        &env,
        &["site", "create", "s1", "--label", "k=v", "--label", "k=w"],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("given twice"), "{out:?}");
    let out = origin.ctl(&env, &["site", "create", "s1", "--label", "k=a b"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("invalid label"), "{out:?}");
    let out = origin.ctl(&env, &["grant", "create", "--anonymous", "--path", "x"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("bad_path") && out.stderr.contains("'/'"),
        "{out:?}"
    );
    let listed = origin.ctl_json(&env, &["site", "list"]);
    assert_eq!(
        listed["sites"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    let grants = origin.ctl_json(&env, &["grant", "list"]);
    assert_eq!(
        grants["grants"].as_array().map(Vec::len),
        Some(0),
        "{grants}"
    );

    // Secrets from stdin, a file and the environment; a key-only user; none at all refused.
    let out = sh(
        &env,
        &origin,
        r#"printf 'pw-one\n' | "$BIN" ctl user create one --password-stdin"#,
    );
    assert!(out.ok(), "{out:?}");
    let file = env.path("pw.txt");
    std::fs::write(&file, "pw-two\n").unwrap();
    origin.ctl_ok(
        &env,
        &[
            "user",
            "create",
            "two",
            "--password-file",
            file.to_str().unwrap(),
        ],
    );
    let out = sh(
        &env,
        &origin,
        r#"SITECAST_USER_PASSWORD=pw-three "$BIN" ctl user create three --password-env"#,
    );
    assert!(out.ok(), "{out:?}");
    let key = env.path("id.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl k@h\n",
    )
    .unwrap();
    origin.ctl_ok(
        &env,
        &[
            "user",
            "create",
            "keyonly",
            "--ssh-key",
            key.to_str().unwrap(),
        ],
    );
    let out = origin.ctl(&env, &["user", "create", "nothing"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("needs a password"), "{out:?}");
    let out = origin.ctl(
        &env,
        &["user", "create", "x", "--password", "a", "--password-stdin"],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    let users = origin.ctl_json(&env, &["user", "list"]);
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keyonly", "one", "three", "two"], "{users}");
    let keyonly = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "keyonly")
        .unwrap();
    assert_eq!(
        keyonly["ssh_keys"].as_array().map(Vec::len),
        Some(1),
        "{keyonly}"
    );

    // Deletes say what they deleted, as text and as JSON.
    assert_eq!(
        origin.ctl_ok(&env, &["user", "delete", "one"]),
        "deleted user one\n"
    );
    let v = origin.ctl_json(&env, &["user", "delete", "two"]);
    assert_eq!(
        (v["deleted"]["kind"].as_str(), v["deleted"]["id"].as_str()),
        (Some("user"), Some("two")),
        "{v}"
    );
    let v = json_error(&origin.ctl(&env, &["--output", "json", "user", "delete", "two"]));
    assert_eq!(v["error"]["code"], "not_found");
}

/// Parse an exposition with prometheus_client's parser; fail on a family written twice.
fn check_exposition(env: &TestEnv, url: &str) -> Vec<String> {
    let text = curl(env, &[url]).text();
    let script = r##"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
names = [f.name for f in text_string_to_metric_families(text)]
dupes = sorted({n for n in names if names.count(n) > 1})
if dupes:
    sys.exit("families written more than once: " + ", ".join(dupes))
for line in text.splitlines():
    if line.startswith("# TYPE "):
        print(line.split()[2])
"##;
    let file = env.path("exposition.txt");
    std::fs::write(&file, &text).unwrap();
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!(
        "python3 -c '{}' < {}",
        script.replace('\'', "'\\''"),
        file.display()
    ));
    let out = run_cmd(env, c, Duration::from_secs(30));
    assert!(out.ok(), "{url}: {out:?}\n{text}");
    out.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn metrics_expositions_pass_a_real_parser() {
    let env = TestEnv::new("ctl-metrics", Duration::from_secs(120));
    let origin = Origin::start(&env);
    // Two sites, one with a node online: per-site families interleave in the origin's loop.
    let token = origin.create_site(&env, "s1", &[]);
    origin.create_site(&env, "s2", &[]);
    let edge = Edge::start(&env, origin.quic, Some(&token), &env.path("edge"), &[]);
    wait_session_state(&env, &edge, "connected", Duration::from_secs(30));
    let families = check_exposition(&env, &format!("{}/metrics", origin.url()));
    assert!(
        families.iter().any(|f| f == "sitecast_origin_nodes_online"),
        "{families:?}"
    );
    let families = check_exposition(&env, &format!("http://{}/metrics", edge.metrics));
    assert!(
        families.iter().any(|f| f == "sitecast_edge_session_state"),
        "{families:?}"
    );
}

/// Day-2 operations through `ctl` (issue 11): tokens with roles, listed and revoked; the audit
/// log; sites and users changed in place; grants filtered; a push cancelled.
#[test]
fn day_two_operations_through_ctl() {
    let env = TestEnv::new("ctl-day2", Duration::from_secs(120));
    let origin = Origin::start(&env);
    let viewer = origin.ctl_ok(
        &env,
        &[
            "token", "create", "dash", "--role", "viewer", "--ttl", "30days",
        ],
    );
    let viewer = viewer.trim();
    let tokens = origin.ctl_json(&env, &["token", "list"]);
    let t = &tokens["tokens"][1];
    assert_eq!(
        (t["name"].as_str(), t["role"].as_str()),
        (Some("dash"), Some("viewer")),
        "{tokens}"
    );
    assert!(t["expires"].is_string() && !tokens.to_string().contains(viewer));
    let as_viewer =
        |args: &[&str]| ctl_raw(&env, &origin.url(), viewer, args, Duration::from_secs(30));
    let out = as_viewer(&["site", "create", "x"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("forbidden") && out.stderr.contains("viewer"),
        "{out:?}"
    );
    let out = as_viewer(&["site", "list"]);
    assert_eq!(out.code, Some(0), "{out:?}");

    origin.ctl_ok(&env, &["site", "create", "farm-1", "--label", "tier=edge"]);
    let v = origin.ctl_json(
        &env,
        &[
            "site",
            "set",
            "farm-1",
            "--label",
            "province=gansu",
            "--max-rate",
            "5Mbit/s",
        ],
    );
    assert_eq!(v["labels"], serde_json::json!({"province": "gansu"}), "{v}");
    assert_eq!(v["max_rate"], 625_000);
    let v = origin.ctl_json(&env, &["site", "set", "farm-1", "--no-max-rate"]);
    assert!(
        v["max_rate"].is_null() && v["labels"]["province"] == "gansu",
        "{v}"
    );

    let out = sh(
        &env,
        &origin,
        "echo one | $BIN ctl user create ap --password-stdin",
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    origin.ctl_ok(
        &env,
        &[
            "grant",
            "create",
            "--user",
            "ap",
            "--path",
            "/fw",
            "--label",
            "province=gansu",
        ],
    );
    let out = sh(
        &env,
        &origin,
        "echo two | $BIN ctl --output json user set ap --password-stdin",
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let g = origin.ctl_json(&env, &["grant", "list", "--user", "ap", "--site", "farm-1"]);
    assert_eq!(
        g["grants"].as_array().map(Vec::len),
        Some(1),
        "grants survive: {g}"
    );
    let g = origin.ctl_json(&env, &["grant", "list", "--user", "anonymous"]);
    assert_eq!(g["grants"].as_array().map(Vec::len), Some(0), "{g}");

    let file = env.dir().join("fw.bin");
    std::fs::write(&file, vec![7u8; 10_000]).unwrap();
    origin.ctl_ok(
        &env,
        &["artifact", "upload", file.to_str().unwrap(), "/fw/fw.bin"],
    );
    let id = origin.ctl_ok(
        &env,
        &[
            "push",
            "create",
            "--content",
            "/fw/fw.bin",
            "--site",
            "farm-1",
        ],
    );
    let v = origin.ctl_json(&env, &["push", "cancel", id.trim()]);
    assert_eq!(v["state"], "cancelled", "{v}");

    let a = origin.ctl_json(&env, &["audit", "--limit", "2"]);
    assert_eq!(
        a["entries"][0]["path"],
        format!("/api/v1/pushes/{}/cancel", id.trim()),
        "{a}"
    );
    assert!(a["next"].is_string(), "{a}");
    let a = origin.ctl_json(&env, &["audit", "--token-name", "dash"]);
    assert_eq!(a["entries"][0]["status"], 403, "{a}");
    assert_eq!(
        origin.ctl_ok(&env, &["token", "revoke", "dash"]),
        "deleted token dash\n"
    );
    let out = as_viewer(&["site", "list"]);
    assert_eq!(out.code, Some(1), "a revoked token stops at once: {out:?}");
}

/// One node revoked (issue 11): its session closes at once, the edge says why, stops dialing
/// and keeps serving; restarted with its used token it stays revoked; started with a fresh
/// join token it enrolls again and replaces its identity.
#[test]
fn a_revoked_node_is_told_why_stops_retrying_and_re_enrolls_with_a_fresh_token() {
    let env = TestEnv::new("ctl-revoke", Duration::from_secs(120));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "farm-1", &[]);
    origin.ctl_ok(&env, &["grant", "create", "--anonymous", "--path", "/fw"]);
    let file = env.dir().join("fw.bin");
    std::fs::write(&file, vec![5u8; 100_000]).unwrap();
    origin.ctl_ok(
        &env,
        &["artifact", "upload", file.to_str().unwrap(), "/fw/fw.bin"],
    );
    let data = env.path("edge");
    let mut edge = Edge::start(&env, origin.quic, Some(&token), &data, &[]);
    wait_session_state(&env, &edge, "connected", env.left());
    let id = origin.push(&env, &["--content", "/fw/fw.bin", "--site", "farm-1"]);
    let out = origin.push_wait(&env, &id, 60);
    assert_eq!(out.code, Some(0), "{out:?}");
    let site = origin.ctl_json(&env, &["site", "show", "farm-1"]);
    assert_eq!(
        site["nodes"][0]["software"],
        env!("CARGO_PKG_VERSION"),
        "{site}"
    );

    assert_eq!(
        origin.ctl_ok(&env, &["site", "revoke-node", "farm-1", "edge-1"]),
        "deleted node farm-1/edge-1\n"
    );
    wait_session_state(&env, &edge, "revoked", env.left());
    let log = std::fs::read_to_string(edge.log()).unwrap();
    assert!(
        log.contains("the origin revoked this node") && log.contains("revoked by the admin"),
        "{log}"
    );
    let failures = |e: &Edge| {
        let text = curl(&env, &[&format!("http://{}/metrics", e.metrics)]).text();
        prom_sum(&text, "sitecast_edge_origin_session_failures_total", &[])
    };
    let before = failures(&edge);
    // It keeps serving what it holds, and does not dial again.
    let r = curl(&env, &[&edge.url("/fw/fw.bin")]);
    assert_eq!((r.status, r.body.len()), (200, 100_000));
    std::thread::sleep(Duration::from_secs(2)); // reconnect_min is 0.5 s: retries would show
    assert_eq!(failures(&edge), before, "a revoked edge stops retrying");
    let site = origin.ctl_json(&env, &["site", "show", "farm-1"]);
    assert_eq!(site["nodes"], serde_json::json!([]), "{site}");
    assert_eq!(
        origin
            .ctl(&env, &["site", "revoke-node", "farm-1", "edge-1"])
            .code,
        Some(1)
    );

    // Restarted with the token it already used: still revoked, told so again.
    edge.restart(&env);
    wait_session_state(&env, &edge, "revoked", env.left());

    // A fresh join token on the enrolled data dir: enrolls again, replaces the identity.
    edge.kill();
    let fresh = origin.ctl_json(&env, &["site", "join-token", "farm-1"]);
    let fresh = fresh["join_token"].as_str().unwrap().to_owned();
    let edge = Edge::start(&env, origin.quic, Some(&fresh), &data, &[]);
    wait_session_state(&env, &edge, "connected", env.left());
    let site = origin.ctl_json(&env, &["site", "show", "farm-1"]);
    assert_eq!(site["nodes"][0]["name"], "edge-1", "{site}");
    assert!(!data.join("identity.new").exists() && !data.join("identity.old").exists());
    assert!(
        data.join("identity/ssh_host_ed25519_key").exists(),
        "the host key is kept"
    );
}
