//! The OpenAPI document as the origin serves it: without a token, valid OpenAPI 3.1
//! (openapi-spec-validator), true to the router (every documented operation is routed, and asks
//! for a token exactly when the router does), and browsable at `/api/v1/docs` with nothing
//! loaded from elsewhere. That the router has no undocumented route is checked where the routes
//! are registered (origin/src/api/openapi.rs). Real router on 127.0.0.1:0.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Origin;
use reqwest::Method;
use serde_json::Value;

const T: Duration = Duration::from_secs(120);

/// Whether `python3 -c "import MODULE"` works; otherwise the test says SKIPPED (and fails under
/// CI, where scripts/install-test-deps.sh installs it).
fn python_has(module: &str, test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test} cannot run under CI: python3 lacks {module} (scripts/install-test-deps.sh)"
        );
        eprintln!("SKIPPED {test}: python3 lacks {module} (scripts/install-test-deps.sh)");
    }
    ok
}

/// Run `cmd` to completion within `limit`; (success, stdout + stderr).
fn run(mut cmd: Command, limit: Duration) -> (bool, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(out.path()).unwrap_or_default();
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("timed out after {limit:?}\n{text}")),
    }
}

async fn document(o: &Origin) -> Value {
    let resp = o
        .http
        .get(o.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "served without a token");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    resp.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_served_without_a_token_and_is_valid_openapi_3_1() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        let doc = document(&o).await;
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"],
            serde_json::json!({"type": "http", "scheme": "bearer",
                "description": doc["components"]["securitySchemes"]["bearer"]["description"]})
        );
        // The library's copy is the served one.
        assert_eq!(
            doc,
            serde_json::from_str::<Value>(sitecast_origin::openapi_json()).unwrap()
        );
        if !python_has("openapi_spec_validator", "openapi document validation") {
            return o.stop().await;
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "openapi_spec_validator", "--schema", "3.1"])
            .arg(file.path());
        let (ok, out) = tokio::task::spawn_blocking(move || run(cmd, Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(ok, "openapi-spec-validator refused the document:\n{out}");
        assert!(out.contains("OK"), "{out}");
        o.stop().await;
    })
    .await
    .expect("test timed out");
}

/// A concrete URL path for a template: ids 1, names `x`.
fn concrete(template: &str) -> String {
    template
        .replace("{id}", "1")
        .replace("{index}", "0")
        .replace("{path}", "fw/a.bin")
        .replace("{name}", "x")
        .replace("{node}", "x")
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_asks_for_a_token_as_documented() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        let doc = document(&o).await;
        let mut checked = 0;
        for (template, item) in doc["paths"].as_object().unwrap() {
            assert!(!template.contains('{') || template.contains('}'));
            for (method, op) in item.as_object().unwrap() {
                let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                    continue; // `parameters`, `summary`…
                };
                let url = o.url(&concrete(template));
                let id = op["operationId"].as_str().unwrap();
                let secured = op["security"] == serde_json::json!([{"bearer": []}]);
                // With the admin token: the route exists and takes this method.
                let resp = o.req(m.clone(), &concrete(template)).send().await.unwrap();
                let status = resp.status().as_u16();
                // The event streams answer with headers and then stay open: drop them.
                let body = if resp
                    .headers()
                    .get("content-type")
                    .is_some_and(|t| t.to_str().unwrap().starts_with("text/event-stream"))
                {
                    String::new()
                } else {
                    resp.text().await.unwrap()
                };
                assert_ne!(
                    status, 405,
                    "{id}: {method} {template} is not routed: {body}"
                );
                assert!(
                    !(status == 404 && body.contains("no such endpoint")),
                    "{id}: {template} is not routed"
                );
                assert!(
                    status < 500,
                    "{id}: {method} {url} answered {status}: {body}"
                );
                // Without a token: 401 exactly where the document says a token is needed.
                let resp = o.http.request(m, &url).send().await.unwrap();
                assert_eq!(
                    resp.status() == 401,
                    secured,
                    "{id}: {method} {template} without a token answered {}",
                    resp.status()
                );
                if secured {
                    assert!(op["responses"]["401"].is_object(), "{id}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 44);
        // The check tells routes from non-routes.
        let resp = o.req(Method::GET, "/api/v1/nope").send().await.unwrap();
        assert_eq!(resp.status(), 404);
        assert!(resp.text().await.unwrap().contains("no such endpoint"));
        o.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn the_docs_page_loads_everything_from_the_origin() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = client.get(o.url("/api/v1/docs")).send().await.unwrap();
        assert!(resp.status().is_redirection(), "{}", resp.status());
        assert_eq!(resp.headers()["location"], "/api/v1/docs/");
        let page = client.get(o.url("/api/v1/docs/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = page.text().await.unwrap();
        // Every script and stylesheet is the origin's own, and each is served.
        let mut assets = Vec::new();
        for attr in ["src=\"", "href=\""] {
            for part in html.split(attr).skip(1) {
                let url = part.split('"').next().unwrap();
                assert!(
                    !url.contains("//"),
                    "the docs page loads {url} from elsewhere"
                );
                assets.push(url.trim_start_matches("./").to_owned());
            }
        }
        assert!(
            assets.iter().any(|a| a.ends_with(".js")),
            "no script in {html}"
        );
        for a in &assets {
            let resp = client
                .get(o.url(&format!("/api/v1/docs/{a}")))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{a}");
            let text = resp.text().await.unwrap();
            assert!(!text.is_empty(), "{a}");
            if a.contains("initializer") {
                assert!(text.contains("/api/v1/openapi.json"), "{text}");
            }
        }
        o.stop().await;
    })
    .await
    .expect("test timed out");
}
