//! REST API rate limits (`[[rate_limits]]`), against a real origin process with curl as the
//! client: a client over its User-Agent rule gets 429 before its token is checked while other
//! clients pass; method and path decide whether a rule matches; Retry-After; the per-rule
//! counters in `/metrics`; 429s stay out of the audit log; bad rules stop the origin at start
//! naming the rule.
//!
//! Rates are `1/h`, so no token comes back while the test runs: every answer is decided by the
//! count of requests, never by the clock.

mod common;

use std::time::Duration;

use common::*;

const RULES: &str = r#"
[[rate_limits]]
name = "python-pushes"
user_agent = "^python-requests/"
methods = ["POST"]
path = "/api/v1/pushes"
rate = "1/h"
burst = 2

[[rate_limits]]
name = "probes"
path = "/healthz"
rate = "1/h"
burst = 1
per = "rule"
"#;

const PY: &str = "python-requests/2.31.0";
const CI: &str = "ci-script/1.0";

/// `curl -A UA [--interface FROM] -X METHOD` on the origin's `path` with `token`.
fn call(
    env: &TestEnv,
    o: &Origin,
    ua: &str,
    from: &str,
    method: &str,
    path: &str,
    token: &str,
) -> Resp {
    let url = format!("{}{path}", o.url());
    let auth = format!("Authorization: Bearer {token}");
    curl(
        env,
        &[
            "-A",
            ua,
            "--interface",
            from,
            "-X",
            method,
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            "{}",
            &url,
        ],
    )
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_client_over_its_user_agent_rule_gets_429_before_its_token_is_checked() {
    let env = TestEnv::new("ratelimit", Duration::from_secs(90));
    let o = Origin::start_with_config(&env, RULES);
    let (a, b) = ("127.0.0.1", "127.0.0.2");
    let push = |ua, from, token| call(&env, &o, ua, from, "POST", "/api/v1/pushes", token);

    // Its burst of two reaches the token check (401); the third is refused before it.
    for _ in 0..2 {
        assert_eq!(push(PY, a, "wrong").status, 401);
    }
    let r = push(PY, a, "wrong");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), None, "no auth was attempted");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (3000..=3600).contains(&retry),
        "a token comes back within the hour: {retry}"
    );
    let v = r.json();
    assert_eq!(v["error"]["code"], "too_many_requests", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"python-pushes\"") && msg.contains("1/h, burst 2, per client"),
        "{msg}"
    );
    // A valid token changes nothing: it is not looked at.
    assert_eq!(push(PY, a, &o.token).status, 429);

    // Other clients pass: another User-Agent from the same address reaches auth and the
    // handler, and the same User-Agent from another address has its own bucket.
    assert_eq!(push(CI, a, "wrong").status, 401);
    assert_eq!(
        push(CI, a, &o.token).status,
        400,
        "an empty push reaches the handler"
    );
    assert_eq!(push(PY, b, "wrong").status, 401);
    // The rule matches POST on /api/v1/pushes only.
    assert_eq!(
        call(&env, &o, PY, a, "GET", "/api/v1/pushes", &o.token).status,
        200
    );
    for path in ["/api/v1/sites", "/api/v1/pushes/1/cancel"] {
        assert_eq!(
            call(&env, &o, PY, a, "POST", path, "wrong").status,
            401,
            "{path}"
        );
    }

    // `probes` (per rule): one /healthz in all, whoever asks; /metrics matches no rule.
    let health = |ua, from| {
        curl(
            &env,
            &[
                "-A",
                ua,
                "--interface",
                from,
                &format!("{}/healthz", o.url()),
            ],
        )
        .status
    };
    assert_eq!(health(CI, a), 200);
    assert_eq!(health("kube-probe/1.31", b), 429);

    let m = curl(&env, &[&format!("{}/metrics", o.url())]);
    assert_eq!(m.status, 200);
    let m = m.text();
    let series = |rule: &str, result: &str| {
        let s = format!(
            "sitecast_origin_rate_limit_requests_total{{rule=\"{rule}\",result=\"{result}\"}}"
        );
        sample(&m, &s).unwrap_or_else(|| panic!("{s} missing from /metrics:\n{m}"))
    };
    assert_eq!(
        series("python-pushes", "allowed"),
        3,
        "two from {a}, one from {b}"
    );
    assert_eq!(series("python-pushes", "refused"), 2);
    assert_eq!(series("probes", "allowed"), 1);
    assert_eq!(series("probes", "refused"), 1);

    // Refusals cost no database write: the audit log has the calls that reached auth only.
    let audit = curl(
        &env,
        &[
            "-H",
            &format!("Authorization: Bearer {}", o.token),
            &format!("{}/api/v1/audit?limit=1000", o.url()),
        ],
    )
    .json();
    let pushes: Vec<(u64, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"] == "/api/v1/pushes")
        .map(|e| {
            (
                e["status"].as_u64().unwrap(),
                e["user_agent"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let py_401 = pushes
        .iter()
        .filter(|(s, ua)| *s == 401 && ua == PY)
        .count();
    assert_eq!(py_401, 3, "{pushes:?}");
    assert!(pushes.iter().all(|(s, _)| *s != 429), "{pushes:?}");
    assert_eq!(pushes.len(), 5, "{pushes:?}");
}

#[test]
fn a_bad_rule_stops_the_origin_at_start_naming_it() {
    let env = TestEnv::new("ratelimit-bad", Duration::from_secs(60));
    let rule = |name: &str, extra: &str| {
        format!("[[rate_limits]]\nname = \"ok\"\nrate = \"5/s\"\nburst = 5\n\n[[rate_limits]]\nname = \"{name}\"\n{extra}\n")
    };
    for (toml, expect) in [
        (
            rule(
                "py",
                "user_agent = \"^python-(requests\"\nrate = \"1/s\"\nburst = 1",
            ),
            vec![
                "rate_limits[1] (rule \"py\")",
                "user_agent \"^python-(requests\" is not a valid regex",
            ],
        ),
        (
            rule("zero", "rate = \"0/s\"\nburst = 1"),
            vec!["rate_limits[1] (rule \"zero\")", "rate must be more than 0"],
        ),
        (
            rule("no-burst", "rate = \"1/s\"\nburst = 0"),
            vec!["rule \"no-burst\"", "burst must be at least 1"],
        ),
        (
            rule("fast", "rate = \"10/sec\"\nburst = 1"),
            vec!["rule \"fast\"", "N/s, N/min or N/h"],
        ),
        (
            rule(
                "glob",
                "path = \"/api/v1/push*\"\nrate = \"1/s\"\nburst = 1",
            ),
            vec!["rule \"glob\"", "path \"/api/v1/push*\""],
        ),
        (
            rule("ok", "rate = \"1/s\"\nburst = 1"),
            vec!["rate_limits[1]", "unique"],
        ),
    ] {
        let f = env.scratch("origin.toml");
        std::fs::write(&f, &toml).unwrap();
        let mut c = sitecast_command();
        c.arg("origin")
            .arg("--config")
            .arg(&f)
            .arg("--data-dir")
            .arg(env.path("origin"));
        for flag in ["--api-listen", "--quic-listen", "--registry-listen"] {
            c.args([flag, "127.0.0.1:0"]);
        }
        let o = run_cmd(&env, c, Duration::from_secs(20));
        assert_eq!(o.code, Some(1), "{toml}: {o:?}");
        assert!(o.stdout.is_empty(), "no ready line: {o:?}");
        for e in expect {
            assert!(o.stderr.contains(e), "{toml}: {e:?} in {:?}", o.stderr);
        }
    }
}
