//! The deployment files match the binary: `deploy/origin.toml` and `deploy/edge.toml` are the
//! configurations `--print-config` prints (every setting at its default), and the binary reads
//! each back unchanged. A new or renamed setting fails this test until the examples follow.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn example(name: &str) -> (std::path::PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    (path, body)
}

fn print_config(env: &TestEnv, args: &[&str]) -> String {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--print-config")
        .env_remove("SITECAST_ORIGIN_CONFIG")
        .env_remove("SITECAST_EDGE_CONFIG")
        .env_remove("SITECAST_JOIN_TOKEN");
    let o = run_cmd(env, c, Duration::from_secs(30));
    assert!(o.ok(), "sitecast {args:?} --print-config: {o:?}");
    o.stdout
}

#[test]
fn example_configs_are_the_binary_s_defaults_and_read_back_unchanged() {
    let env = TestEnv::new("deploy", Duration::from_secs(60));
    for (name, args) in [
        ("origin.toml", vec!["origin"]),
        ("edge.toml", vec!["edge", "--node", "edge-1"]),
    ] {
        let (path, body) = example(name);
        let defaults = print_config(&env, &args);
        assert_eq!(
            body,
            defaults,
            "{} differs from `sitecast {} --print-config`: regenerate it (see its header)",
            path.display(),
            args.join(" ")
        );
        let p = path.to_str().unwrap();
        let read_back = print_config(&env, &[args[0], "--config", p]);
        assert_eq!(read_back, defaults, "{name} read back through --config");
    }
}
