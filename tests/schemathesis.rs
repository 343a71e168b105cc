//! schemathesis (PyPI) against a real origin process, driven by the origin's own OpenAPI
//! document with the admin token: thousands of generated requests, valid and not, must get no
//! 5xx, and every answer must be what the document says (status, content type, headers, body
//! schema); undocumented methods get 405 with `Allow`, and operations that need a token refuse
//! requests without one.
//!
//! Left out: `POST /images/import` (it would contact the registries named in generated
//! references; no test sends traffic off this machine) and the two event streams (they stay open
//! by design; `GET /events` never ends). Their handlers are covered by tests/registry.rs and
//! tests/schedule.rs.
//!
//! Bounded: at most `MAX_EXAMPLES` cases per operation and phase, a per-request timeout, and the
//! run itself under `RUN_LIMIT` within the test's deadline. `SITECAST_SCHEMATHESIS_SEED` replays another seed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{curl, run_cmd, skip, Origin, TestEnv};

/// Generated cases per operation and phase (about 30 s here; each phase stops at this count,
/// whereas `--max-time` would make fuzzing repeat until the time is spent).
const MAX_EXAMPLES: &str = "100";
/// How long the whole run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(200);
/// The seed when none is given (a failure names its seed; replay it with the variable).
const SEED: &str = "20261204";

/// The checks asserted; all of schemathesis's but those that judge whether an input should
/// have been accepted (the document cannot state every rule: a site name that exists, a path
/// that parses) and the stateful ones that need links the document does not declare.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,unsupported_method,\
allow_header_conformance,ignored_auth";

fn has_schemathesis() -> bool {
    Command::new("python3")
        .args(["-c", "import schemathesis"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A few of each thing, so that generated requests also reach existing records.
fn seed_data(env: &TestEnv, origin: &Origin) {
    let file = env.path("a.bin");
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    origin.upload(env, &file, "/fw/a.bin");
    let api = origin.url();
    let auth = format!("Authorization: Bearer {}", origin.token);
    for (path, body) in [
        ("/api/v1/sites", r#"{"name":"s1","labels":{"tier":"farm"}}"#),
        ("/api/v1/users", r#"{"name":"u1","password":"pw"}"#),
        ("/api/v1/grants", r#"{"user":"u1","path":"/fw"}"#),
        (
            "/api/v1/registry-grants",
            r#"{"user":"u1","repository":"team/*"}"#,
        ),
        ("/api/v1/tokens", r#"{"name":"t1","role":"viewer"}"#),
    ] {
        let url = format!("{api}{path}");
        let r = curl(
            env,
            &[
                "-X",
                "POST",
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
                &url,
            ],
        );
        assert_eq!(r.status, 201, "{path}: {}", r.text());
    }
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe() {
    let env = TestEnv::new("schemathesis", Duration::from_secs(280));
    if !has_schemathesis() {
        return skip(
            "schemathesis",
            "python3 lacks schemathesis (scripts/install-test-deps.sh installs it)",
        );
    }
    let origin = Origin::start(&env);
    seed_data(&env, &origin);
    let seed = std::env::var("SITECAST_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let mut cmd = Command::new("python3");
    cmd.current_dir(env.dir())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/api/v1/openapi.json", origin.url()))
        .args([
            "--header",
            &format!("Authorization: Bearer {}", origin.token),
        ])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", "10"])
        .args(["--workers", "1"])
        .args(["--seed", &seed])
        .args(["--generation-database", "none"])
        .args(["--exclude-operation-id", "import_image"])
        .args(["--exclude-operation-id", "all_events"])
        .args(["--exclude-operation-id", "push_events"])
        .args(["--continue-on-failure", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let start = Instant::now();
    let out = run_cmd(&env, cmd, RUN_LIMIT);
    let text = format!("{}\n{}", out.stdout, out.stderr);
    eprintln!(
        "schemathesis (seed {seed}) took {:.0?}: {}",
        start.elapsed(),
        text.lines()
            .filter(|l| l.contains("generated") || l.contains("Operations:"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    assert!(
        out.ok(),
        "schemathesis failed (exit {:?}, seed {seed}; replay with SITECAST_SCHEMATHESIS_SEED={seed}):\n{text}\n\
         origin log:\n{}",
        out.code,
        common::log_tail(origin.log(), 40)
    );
    // It really ran: every operation but the three left out and the document itself (which
    // schemathesis does not test), and many cases.
    let counts: Vec<u64> = text
        .lines()
        .find(|l| l.contains(" selected / "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        counts.len() == 2 && counts[0] + 3 == counts[1] && counts[0] >= 40,
        "every operation but the three left out should run: {counts:?}\n{text}"
    );
    let generated: u64 = text
        .lines()
        .find(|l| l.contains(" generated,"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(generated >= 1000, "only {generated} cases:\n{text}");
    let log = std::fs::read_to_string(origin.log()).unwrap_or_default();
    assert!(!log.contains("panicked"), "the origin panicked:\n{log}");
}
