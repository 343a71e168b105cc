//! Bad input to the REST API gets one clear answer: the documented JSON error shape with the
//! status that names the problem, including what axum's extractors and router reject, and
//! values are refused rather than silently changed. Real router on 127.0.0.1:0.

mod common;

use std::time::Duration;

use common::Origin;
use reqwest::Method;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(120);

/// The `(status, error.code, error.message)` of an answer that must be an API error.
async fn error(r: reqwest::RequestBuilder) -> (u16, String, String) {
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("HTTP {status} answered non-JSON {ct:?}: {text:?}"));
    assert!(ct.starts_with("application/json"), "{status} {ct} {text}");
    let code = v["error"]["code"].as_str().unwrap_or_else(|| panic!("{v}"));
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    assert!(!msg.is_empty(), "{v}");
    (status, code.to_owned(), msg.to_owned())
}

#[tokio::test]
async fn extractor_and_router_rejections_are_json_errors() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        // 405, with Allow, on an API route and on /healthz.
        let resp = o.req(Method::PATCH, "/api/v1/sites").send().await.unwrap();
        let allow = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(resp.status(), 405);
        assert!(
            allow
                .as_deref()
                .is_some_and(|a| a.contains("GET") && a.contains("POST")),
            "{allow:?}"
        );
        let (s, code, msg) = error(o.req(Method::PATCH, "/api/v1/sites")).await;
        assert_eq!((s, code.as_str()), (405, "method_not_allowed"));
        assert!(msg.contains("PATCH"), "{msg}");
        let (s, code, _) = error(o.req(Method::POST, "/healthz")).await;
        assert_eq!((s, code.as_str()), (405, "method_not_allowed"));
        // 404 for an unknown route, inside and outside /api/v1.
        let (s, code, _) = error(o.req(Method::GET, "/api/v1/nope")).await;
        assert_eq!((s, code.as_str()), (404, "not_found"));
        // Path parameters that do not decode or do not parse.
        let (s, code, msg) = error(o.req(Method::GET, "/api/v1/sites/%FF")).await;
        assert_eq!((s, code.as_str()), (400, "bad_request"), "{msg}");
        assert!(msg.contains("UTF-8"), "{msg}");
        let (s, code, msg) = error(o.req(Method::DELETE, "/api/v1/users/u/keys/first")).await;
        assert_eq!((s, code.as_str()), (400, "bad_request"), "{msg}");
        let (s, _, msg) = error(o.req(
            Method::DELETE,
            "/api/v1/users/u/keys/99999999999999999999999",
        ))
        .await;
        assert_eq!(s, 400, "{msg}");
        // Query strings.
        let (s, code, msg) =
            error(o.req(Method::GET, "/api/v1/artifacts?prefix=/a&prefix=/b")).await;
        assert_eq!((s, code.as_str()), (400, "bad_request"));
        assert!(msg.contains("duplicate field"), "{msg}");
        let (s, _, msg) = error(o.req(Method::GET, "/api/v1/pushes/1?wait_ms=-1")).await;
        assert_eq!(s, 400, "{msg}");
        // Bodies: not JSON by type (415), too large (413), malformed (400).
        let (s, code, msg) = error(
            o.req(Method::POST, "/api/v1/sites")
                .header("content-type", "text/plain")
                .body(r#"{"name":"s"}"#),
        )
        .await;
        assert_eq!((s, code.as_str()), (415, "unsupported_media_type"), "{msg}");
        assert!(msg.contains("application/json"), "{msg}");
        let big = format!(
            r#"{{"name":"s","labels":{{"k":"{}"}}}}"#,
            "v".repeat(2 << 20)
        );
        let (s, code, _) = error(
            o.req(Method::POST, "/api/v1/sites")
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
        assert_eq!((s, code.as_str()), (413, "payload_too_large"));
        let (s, code, msg) = error(
            o.req(Method::POST, "/api/v1/sites")
                .header("content-type", "application/json")
                .body(r#"{"name":"#),
        )
        .await;
        assert_eq!((s, code.as_str()), (400, "bad_request"));
        assert!(msg.contains("invalid JSON body"), "{msg}");
        // Without a Content-Type the body is read as JSON.
        let resp = o
            .req(Method::POST, "/api/v1/tokens")
            .body(r#"{"name":"ci"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        o.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn values_are_refused_not_silently_changed() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        let (s, v) = o
            .json(
                Method::POST,
                "/api/v1/sites",
                Some(json!({"name": "s1", "labels": {"a": "b"}})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let post = |path: &'static str, body: &'static str| {
            o.req(Method::POST, path)
                .header("content-type", "application/json")
                .body(body)
        };
        // Numbers out of range: 400, not clamped to i64::MAX.
        let (s, _, msg) = error(post(
            "/api/v1/sites",
            r#"{"name":"s2","max_rate":18446744073709551615}"#,
        ))
        .await;
        assert_eq!(s, 400);
        assert!(msg.contains("out of range"), "{msg}");
        let (s, _, msg) = error(post(
            "/api/v1/pushes",
            r#"{"content":["/x"],"sites":["s1"],"max_rate":18446744073709551615}"#,
        ))
        .await;
        assert_eq!(s, 400, "{msg}");
        assert!(msg.contains("out of range"), "{msg}");
        let (s, _, _) = error(post("/api/v1/sites", r#"{"name":"s2","max_rate":-5}"#)).await;
        assert_eq!(s, 400);
        // Labels: a newline, a separator, a key given twice.
        for body in [
            r#"{"name":"s2","labels":{"a\nb":"c"}}"#,
            r#"{"name":"s2","labels":{"a":"b,c"}}"#,
            r#"{"name":"s2","labels":{"a":"b","a":"c"}}"#,
        ] {
            let (s, _, msg) = error(post("/api/v1/sites", body)).await;
            assert_eq!(s, 400, "{body}: {msg}");
            assert!(msg.contains("label"), "{msg}");
        }
        // Conflicting selectors are refused (as grants refuse them), not merged or dropped.
        let (s, _, msg) = error(post(
            "/api/v1/pushes",
            r#"{"content":["/x"],"sites":["s1"],"labels":{"a":"b"}}"#,
        ))
        .await;
        assert_eq!(s, 400);
        assert!(msg.contains("not both"), "{msg}");
        // A relative path is refused, not made absolute.
        let (s, code, msg) =
            error(post("/api/v1/grants", r#"{"anonymous":true,"path":"x"}"#)).await;
        assert_eq!((s, code.as_str()), (400, "bad_path"));
        assert!(msg.contains("must start with '/'"), "{msg}");
        let (s, code, _) = error(o.req(Method::GET, "/api/v1/artifacts?prefix=firmware")).await;
        assert_eq!((s, code.as_str()), (400, "bad_path"));
        // Encoded slashes are refused, never reinterpreted as separators.
        let (s, code, msg) = error(o.req(Method::PUT, "/api/v1/artifacts/a%2Fb/c").body("x")).await;
        assert_eq!((s, code.as_str()), (400, "bad_path"), "{msg}");
        let (s, _, _) = error(o.req(Method::GET, "/api/v1/sites/s%2f1")).await;
        assert_eq!(s, 400);
        let (s, v) = o.json(Method::GET, "/api/v1/artifacts", None).await;
        assert_eq!(
            (s, v["artifacts"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{v}"
        );
        // HTTPS names: DNS names or addresses, each once; stored lower case, not rewritten else.
        for body in [
            r#"{"name":"s2","https_names":["bad name"]}"#,
            r#"{"name":"s2","https_names":["a.example","A.example"]}"#,
            r#"{"name":"s2","https_names":["edge.example."]}"#,
            r#"{"name":"s2","https_names":"edge.example"}"#,
        ] {
            let (s, _, msg) = error(post("/api/v1/sites", body)).await;
            assert_eq!(s, 400, "{body}: {msg}");
        }
        let (s, v) = o
            .json(
                Method::POST,
                "/api/v1/sites",
                Some(json!({"name": "s2", "https_names": ["Edge.Example", "10.0.0.1"]})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(
            v["site"]["https_names"],
            json!(["edge.example", "10.0.0.1"])
        );
        let put = |path: &'static str, body: &'static str| {
            o.req(Method::PUT, path)
                .header("content-type", "application/json")
                .body(body)
        };
        let (s, code, _) = error(put("/api/v1/sites/nope/https-names", r#"{"names":[]}"#)).await;
        assert_eq!((s, code.as_str()), (404, "not_found"));
        let (s, _, msg) = error(put("/api/v1/sites/s2/https-names", r#"{"names":["a b"]}"#)).await;
        assert_eq!(s, 400);
        assert!(msg.contains("neither a DNS name"), "{msg}");
        let (s, _, _) = error(put("/api/v1/sites/s2/https-names", r#"{"nams":[]}"#)).await;
        assert_eq!(s, 400);
        let (s, v) = o
            .json(
                Method::PUT,
                "/api/v1/sites/s2/https-names",
                Some(json!({"names": ["::1"]})),
            )
            .await;
        assert_eq!((s, &v["https_names"]), (200, &json!(["::1"])), "{v}");
        let (_, v) = o.json(Method::GET, "/api/v1/sites/s2", None).await;
        assert_eq!(v["https_names"], json!(["::1"]), "{v}");
        o.stop().await;
    })
    .await
    .unwrap();
}
