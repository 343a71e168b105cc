//! Day-2 operations through the REST API on a real origin: tokens with roles, expiry and
//! revocation; the audit log; editing users and sites; filtering grants; cancelling a push;
//! push history surviving its site's deletion.

mod common;

use std::time::Duration;

use common::{bytes, Origin};
use reqwest::Method;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

/// A request with `token` instead of the admin's.
async fn with(o: &Origin, token: &str, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = o.http.request(m, o.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.header("user-agent", "day2-test/1").send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The paths of the grants `GET /grants{q}` lists.
async fn grants(o: &Origin, q: &str) -> Vec<String> {
    let (s, v) = o
        .json(Method::GET, &format!("/api/v1/grants{q}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["path"].as_str().unwrap().to_owned())
        .collect()
}

async fn token(o: &Origin, name: &str, role: &str) -> String {
    let (s, v) = o
        .json(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": name, "role": role})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["role"], role);
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn roles_allow_and_refuse_what_they_should_and_every_change_is_audited() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        let op = token(&o, "ops", "operator").await;
        let view = token(&o, "dash", "viewer").await;
        let up = |tok: String, path: &'static str| {
            let req = o
                .http
                .put(o.url(path))
                .bearer_auth(tok)
                .body(bytes(1, 10_000));
            async move { req.send().await.unwrap().status().as_u16() }
        };

        // Operator: artifacts, sites, pushes yes; users, grants, tokens, audit no.
        assert_eq!(up(op.clone(), "/api/v1/artifacts/fw/a.bin").await, 201);
        let (s, _) = with(
            &o,
            &op,
            Method::POST,
            "/api/v1/sites",
            Some(json!({"name": "farm-1"})),
        )
        .await;
        assert_eq!(s, 201);
        let (s, _) = with(
            &o,
            &op,
            Method::POST,
            "/api/v1/pushes",
            Some(json!({"content": ["/fw/a.bin"], "sites": ["farm-1"]})),
        )
        .await;
        assert_eq!(s, 201);
        let (s, v) = with(
            &o,
            &op,
            Method::POST,
            "/api/v1/users",
            Some(json!({"name": "ap", "password": "pw"})),
        )
        .await;
        assert_eq!(s, 403, "{v}");
        assert_eq!(v["error"]["code"], "forbidden");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("operator"),
            "{v}"
        );
        // Reads: everyone but tokens and audit, which are the admin's.
        for (tok, path, want) in [
            (&op, "/api/v1/users", 200),
            (&op, "/api/v1/tokens", 403),
            (&op, "/api/v1/audit", 403),
            (&view, "/api/v1/sites", 200),
            (&view, "/api/v1/pushes", 200),
            (&view, "/api/v1/tokens", 403),
        ] {
            let (s, v) = with(&o, tok, Method::GET, path, None).await;
            assert_eq!(s, want, "GET {path}: {v}");
        }

        // Viewer: reads only.
        assert_eq!(up(view.clone(), "/api/v1/artifacts/fw/b.bin").await, 403);
        let (s, _) = with(&o, &view, Method::DELETE, "/api/v1/sites/farm-1", None).await;
        assert_eq!(s, 403);

        // Tokens: listed without secrets, unique names, revoked at once, expiry enforced.
        let (s, v) = o.json(Method::GET, "/api/v1/tokens", None).await;
        assert_eq!(s, 200);
        let names: Vec<_> = v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap(), t["role"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            vec![("admin", "admin"), ("dash", "viewer"), ("ops", "operator")]
        );
        assert!(!v.to_string().contains(&view), "a secret is never listed");
        assert!(v["tokens"][1]["last_used"].is_string());
        let (s, _) = o
            .json(Method::POST, "/api/v1/tokens", Some(json!({"name": "ops"})))
            .await;
        assert_eq!(s, 409);
        let (s, v) = o
            .json(
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": "x", "role": "root"})),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(
            o.json(Method::DELETE, "/api/v1/tokens/admin", None).await.0,
            400
        );
        assert_eq!(
            o.json(Method::DELETE, "/api/v1/tokens/dash", None).await.0,
            204
        );
        assert_eq!(
            o.json(Method::DELETE, "/api/v1/tokens/dash", None).await.0,
            404
        );
        assert_eq!(
            with(&o, &view, Method::GET, "/api/v1/sites", None).await.0,
            401
        );
        let (s, v) = o
            .json(
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": "brief", "role": "viewer", "ttl": "1s"})),
            )
            .await;
        assert_eq!(s, 201);
        assert!(v["expires"].is_string());
        let brief = v["token"].as_str().unwrap().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let expired = loop {
            let (s, v) = with(&o, &brief, Method::GET, "/api/v1/sites", None).await;
            if s == 401 || tokio::time::Instant::now() > deadline {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(
            expired["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expired"),
            "{expired}"
        );

        // Audit: every mutating call, refused ones too, newest first, paged; no reads.
        let (s, v) = o.json(Method::GET, "/api/v1/audit?limit=3", None).await;
        assert_eq!(s, 200, "{v}");
        let page1 = v["entries"].as_array().unwrap().clone();
        assert_eq!(page1.len(), 3);
        assert_eq!(page1[0]["method"], "POST");
        assert_eq!(page1[0]["path"], "/api/v1/tokens");
        assert_eq!(page1[0]["token"], "admin");
        assert_eq!(page1[0]["status"], 201);
        assert!(page1[0]["remote"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"));
        let next = v["next"].as_str().unwrap().to_owned();
        let (_, v) = o
            .json(
                Method::GET,
                &format!("/api/v1/audit?limit=1000&before={next}"),
                None,
            )
            .await;
        let rest = v["entries"].as_array().unwrap();
        assert!(v["next"].is_null());
        let all: Vec<(String, String, u64, String)> = page1
            .iter()
            .chain(rest)
            .map(|e| {
                (
                    e["method"].as_str().unwrap().to_owned(),
                    e["path"].as_str().unwrap().to_owned(),
                    e["status"].as_u64().unwrap(),
                    e["token"].as_str().unwrap_or("-").to_owned(),
                )
            })
            .collect();
        assert!(all.iter().all(|e| e.0 != "GET"), "reads are not audited");
        for want in [
            ("PUT", "/api/v1/artifacts/fw/a.bin", 201, "ops"),
            ("POST", "/api/v1/users", 403, "ops"),
            ("PUT", "/api/v1/artifacts/fw/b.bin", 403, "dash"),
            ("DELETE", "/api/v1/sites/farm-1", 403, "dash"),
            ("DELETE", "/api/v1/tokens/dash", 204, "admin"),
            ("DELETE", "/api/v1/tokens/dash", 404, "admin"),
        ] {
            assert!(
                all.iter()
                    .any(|e| (e.0.as_str(), e.1.as_str(), e.2, e.3.as_str()) == want),
                "{want:?} missing from {all:?}"
            );
        }
        let (_, v) = o
            .json(Method::GET, "/api/v1/audit?token=ops&limit=1000", None)
            .await;
        assert!(v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["token"] == "ops"));
        assert_eq!(v["entries"].as_array().unwrap().len(), 4);
        o.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn users_sites_and_grants_are_edited_in_place_and_pushes_cancelled() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        let post = |path: &'static str, body: Value| o.json(Method::POST, path, Some(body));
        assert_eq!(post("/api/v1/users", json!({"name": "ap", "password": "one"})).await.0, 201);
        assert_eq!(post("/api/v1/sites", json!({"name": "farm-1", "labels": {"province": "gansu"}})).await.0, 201);
        assert_eq!(post("/api/v1/sites", json!({"name": "farm-2"})).await.0, 201);
        assert_eq!(post("/api/v1/grants", json!({"user": "ap", "path": "/fw/", "labels": {"province": "gansu"}})).await.0, 201);
        assert_eq!(post("/api/v1/grants", json!({"anonymous": true, "path": "/pub/"})).await.0, 201);

        // Grants filtered by user, site (labels count) and path.
        assert_eq!(grants(&o, "?user=ap").await, vec!["/fw"]);
        assert_eq!(grants(&o, "?user=anonymous").await, vec!["/pub"]);
        assert_eq!(grants(&o, "?site=farm-1").await, vec!["/fw", "/pub"]);
        assert_eq!(grants(&o, "?site=farm-2").await, vec!["/pub"]);
        assert_eq!(grants(&o, "?path=/fw/ap/x.bin").await, vec!["/fw"]);
        assert_eq!(o.json(Method::GET, "/api/v1/grants?site=nope", None).await.0, 404);

        // A site's labels, cap and names change in place; the grant by label follows.
        let (s, v) = o.json(Method::PATCH, "/api/v1/sites/farm-2",
            Some(json!({"labels": {"province": "gansu"}, "max_rate": 1000000, "https_names": ["Edge.Farm2.test"]}))).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["labels"]["province"], "gansu");
        assert_eq!(v["max_rate"], 1_000_000);
        assert_eq!(v["https_names"], json!(["edge.farm2.test"]));
        assert_eq!(grants(&o, "?site=farm-2").await, vec!["/fw", "/pub"]);
        let (s, v) = o.json(Method::PATCH, "/api/v1/sites/farm-2", Some(json!({"max_rate": null}))).await;
        assert_eq!(s, 200);
        assert!(v["max_rate"].is_null());
        assert_eq!(v["labels"]["province"], "gansu", "fields not given stay");
        assert_eq!(o.json(Method::PATCH, "/api/v1/sites/farm-2", Some(json!({}))).await.0, 400);
        assert_eq!(o.json(Method::PATCH, "/api/v1/sites/farm-2", Some(json!({"max_rate": 0}))).await.0, 400);
        assert_eq!(o.json(Method::PATCH, "/api/v1/sites/nope", Some(json!({"labels": {}}))).await.0, 404);

        // A password changes without losing grants; a user cannot be left with no login.
        let (s, v) = o.json(Method::PATCH, "/api/v1/users/ap", Some(json!({"password": "two"}))).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["has_password"], true);
        assert_eq!(grants(&o, "?user=ap").await, vec!["/fw"]);
        let (s, v) = o.json(Method::PATCH, "/api/v1/users/ap", Some(json!({"password": null}))).await;
        assert_eq!(s, 400, "{v}");
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ap@x";
        let (s, v) = o.json(Method::PATCH, "/api/v1/users/ap", Some(json!({"password": null, "ssh_keys": [key]}))).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["has_password"], false);
        assert_eq!(v["ssh_keys"], json!([key]));
        assert_eq!(o.json(Method::PATCH, "/api/v1/users/ap", Some(json!({"ssh_keys": ["nonsense"]}))).await.0, 400);
        assert_eq!(o.json(Method::PATCH, "/api/v1/users/zz", Some(json!({"password": "x"}))).await.0, 404);

        // A push to sites with no edge stays pending; cancelled, it says so per site.
        let r = o.req(Method::PUT, "/api/v1/artifacts/fw/a.bin").body(bytes(3, 50_000)).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let (s, v) = post("/api/v1/pushes", json!({"content": ["/fw/a.bin"], "sites": ["farm-1", "farm-2"]})).await;
        assert_eq!(s, 201, "{v}");
        let id = v["id"].as_i64().unwrap();
        let (s, v) = o.json(Method::POST, &format!("/api/v1/pushes/{id}/cancel"), None).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["state"], "cancelled");
        assert!(v["cancelled"].is_string());
        for site in v["sites"].as_array().unwrap() {
            assert_eq!(site["state"], "cancelled");
            assert_eq!(site["error"], "cancelled by the admin");
        }
        assert_eq!(o.json(Method::POST, "/api/v1/pushes/999/cancel", None).await.0, 404);

        // Deleting a site keeps the push history readable.
        let (s, v) = post("/api/v1/pushes", json!({"content": ["/fw/a.bin"], "sites": ["farm-1"]})).await;
        assert_eq!(s, 201);
        let id2 = v["id"].as_i64().unwrap();
        assert_eq!(o.json(Method::DELETE, "/api/v1/sites/farm-1", None).await.0, 204);
        let (s, v) = o.json(Method::GET, &format!("/api/v1/pushes/{id2}"), None).await;
        assert_eq!(s, 200);
        assert_eq!(v["sites"][0]["site"], "farm-1");
        assert_eq!(v["sites"][0]["state"], "cancelled");
        assert_eq!(v["sites"][0]["error"], "site deleted");
        assert!(v["sites"][0]["site_deleted"].is_string());
        o.stop().await;
    })
    .await
    .unwrap();
}

/// Sites chosen by a label expression: equality, inequality, sets and existence; a bad
/// expression is a 400 that shows the syntax; names and an expression together are refused.
#[tokio::test]
async fn pushes_choose_sites_by_label_expressions() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        for (name, labels) in [
            (
                "hub-1",
                json!({"province": "gansu", "tier": "hub", "region": "north"}),
            ),
            (
                "farm-1",
                json!({"province": "gansu", "tier": "farm", "region": "west"}),
            ),
            (
                "farm-2",
                json!({"province": "gansu", "tier": "farm", "region": "south"}),
            ),
            ("other", json!({"province": "hebei"})),
        ] {
            let (s, v) = o
                .json(
                    Method::POST,
                    "/api/v1/sites",
                    Some(json!({"name": name, "labels": labels})),
                )
                .await;
            assert_eq!(s, 201, "{v}");
        }
        let r = o
            .http
            .put(o.url("/api/v1/artifacts/fw/a.bin"))
            .bearer_auth(&o.token)
            .body(bytes(7, 10_000))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let push = |selector: &'static str| {
            o.json(
                Method::POST,
                "/api/v1/pushes",
                Some(json!({"content": ["/fw/a.bin"], "selector": selector})),
            )
        };
        let sites = |v: &Value| -> Vec<String> {
            v["sites"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["site"].as_str().unwrap().to_owned())
                .collect()
        };
        let (s, v) = push("province=gansu,tier!=hub").await;
        assert_eq!(
            (s, sites(&v)),
            (201, vec!["farm-1".into(), "farm-2".into()])
        );
        let (s, v) = push("region in (north, west)").await;
        assert_eq!((s, sites(&v)), (201, vec!["farm-1".into(), "hub-1".into()]));
        let (s, v) = push("!tier").await;
        assert_eq!((s, sites(&v)), (201, vec!["other".to_owned()]));
        let (s, v) = push("region in north").await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("region in (north,west)"),
            "{v}"
        );
        let (s, _) = push("tier=nowhere").await;
        assert_eq!(s, 400, "no site matches");
        let (s, _) = o
            .json(
                Method::POST,
                "/api/v1/pushes",
                Some(json!({"content": ["/fw/a.bin"], "sites": ["other"], "selector": "tier"})),
            )
            .await;
        assert_eq!(s, 400);
    })
    .await
    .expect("timed out");
}
