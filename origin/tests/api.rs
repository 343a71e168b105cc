//! The REST API through the real router on 127.0.0.1:0.

mod common;

use std::time::Duration;

use common::{bytes, Origin};
use reqwest::Method;
use serde_json::json;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const T: Duration = Duration::from_secs(120);

async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn errors_have_the_contract_shape() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        // No token needed for health and metrics; needed for the API.
        let r = o.http.get(o.url("/healthz")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
        let r = o.http.get(o.url("/api/v1/sites")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("www-authenticate").is_some());
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
        let r = o.http.get(o.url("/api/v1/sites")).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), 401);

        // Bad paths name the problem.
        let (s, v) = o.json(Method::GET, "/api/v1/artifacts/a%00b", None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_path")), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("NUL"), "{v}");
        let (s, v) = o.json(Method::PUT, "/api/v1/artifacts/a//b", None).await;
        assert_eq!(s, 400);
        assert!(v["error"]["message"].as_str().unwrap().contains("empty segment"), "{v}");
        let long = format!("/api/v1/artifacts/{}", "x/".repeat(600) + "y");
        let (s, v) = o.json(Method::PUT, &long, None).await;
        assert_eq!(s, 400);
        assert!(v["error"]["message"].as_str().unwrap().contains("longer than"), "{v}");
        // `..` straight on the wire (HTTP clients normalise it away).
        let resp = raw_http(
            o.ready.api,
            &format!(
                "PUT /api/v1/artifacts/fw/../etc/passwd HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
                o.token
            ),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
        assert!(resp.contains("bad_path") && resp.contains("'..'"), "{resp}");

        // 404, 409, 400 on bodies.
        let (s, v) = o.json(Method::GET, "/api/v1/artifacts/nope.bin", None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
        let (s, _) = o.json(Method::GET, "/api/v1/sites/nope", None).await;
        assert_eq!(s, 404);
        let (s, _) = o.json(Method::GET, "/nothing/here", None).await;
        assert_eq!(s, 404);
        let (s, v) = o.json(Method::POST, "/api/v1/sites", Some(json!({"name":"s1","labels":{"province":"gansu"}}))).await;
        assert_eq!(s, 201, "{v}");
        assert!(v["join_token"].as_str().unwrap().starts_with("scj1."));
        assert_eq!(v["site"]["labels"]["province"], "gansu");
        let (s, v) = o.json(Method::POST, "/api/v1/sites", Some(json!({"name":"s1"}))).await;
        assert_eq!((s, v["error"]["code"].as_str()), (409, Some("conflict")));
        let (s, v) = o.json(Method::POST, "/api/v1/sites", Some(json!({"name":"bad name"}))).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_request")));
        let r = o.req(Method::POST, "/api/v1/sites").body("{not json").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let (s, _) = o.json(Method::POST, "/api/v1/users", Some(json!({"name":"u","password":"p"}))).await;
        assert_eq!(s, 201);
        let (s, _) = o.json(Method::POST, "/api/v1/users", Some(json!({"name":"u","password":"q"}))).await;
        assert_eq!(s, 409);
        let (_, v) = o.json(Method::GET, "/api/v1/users", None).await;
        assert!(!v.to_string().contains("argon2"), "hashes never leave the origin through the API");
        // An anonymous grant is asked for explicitly; a missing user is not one.
        let (s, v) = o.json(Method::POST, "/api/v1/grants", Some(json!({"user":null,"path":"/pub"}))).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("anonymous"), "{v}");
        let (s, v) = o.json(Method::POST, "/api/v1/grants", Some(json!({"user":"u","anonymous":true,"path":"/pub"}))).await;
        assert_eq!(s, 400, "{v}");
        for reserved in ["anonymous", "FTP"] {
            let (s, v) = o.json(Method::POST, "/api/v1/users", Some(json!({"name":reserved,"password":"p"}))).await;
            assert_eq!(s, 400, "{reserved}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("reserved"), "{v}");
        }
        let (s, v) = o.json(Method::POST, "/api/v1/grants", Some(json!({"anonymous":true,"path":"/pub"}))).await;
        assert_eq!(s, 201, "{v}");
        assert!(v["user"].is_null(), "{v}");
        assert_eq!((v["read"].as_bool(), v["list"].as_bool()), (Some(true), Some(true)));
        let (s, _) = o.json(Method::POST, "/api/v1/grants", Some(json!({"user":"ghost","path":"/pub"}))).await;
        assert_eq!(s, 404);
        let (s, _) = o.json(Method::DELETE, &format!("/api/v1/grants/{}", v["id"]), None).await;
        assert_eq!(s, 204);
        let (s, _) = o.json(Method::POST, "/api/v1/pushes", Some(json!({"content":["/none"],"sites":["s1"]}))).await;
        assert_eq!(s, 400);

        // New tokens work.
        let (s, v) = o.json(Method::POST, "/api/v1/tokens", Some(json!({"name":"ci"}))).await;
        assert_eq!(s, 201);
        let r = o.http.get(o.url("/api/v1/sites")).bearer_auth(v["token"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        o.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn streamed_upload_dedup_replace_push_and_delete() {
    tokio::time::timeout(T, async {
        let o = Origin::start_with(|c| c.max_upload = 300 << 20).await;
        // A 256 MiB upload, produced and hashed on the fly: nothing holds the whole body.
        let total: usize = 256 << 20;
        let piece = 1 << 20;
        let expect = {
            let mut h = sha2::Sha256::new();
            for i in 0..total / piece {
                h.update(bytes(i as u64, piece));
            }
            hex::encode(h.finalize())
        };
        let stream = futures::stream::iter(
            (0..total / piece).map(move |i| Ok::<_, std::io::Error>(bytes(i as u64, piece))),
        );
        let r = o
            .req(Method::PUT, "/api/v1/artifacts/fw/big.bin")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["sha256"], expect);
        assert_eq!(v["size"], total as u64);
        assert!(v["chunks"].as_u64().unwrap() > 1000);

        // Same content: 200; new content: 201 and the old blob's chunks are collected.
        let small = bytes(7, 500_000);
        let (s, _) = {
            let r = o
                .req(Method::PUT, "/api/v1/artifacts/fw/a.bin")
                .body(small.clone())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), ())
        };
        assert_eq!(s, 201);
        let r = o
            .req(Method::PUT, "/api/v1/artifacts/fw/a.bin")
            .body(small.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let chunk_files = || walk(&o.dir.path().join("chunks"));
        let before = chunk_files();
        let r = o
            .req(Method::PUT, "/api/v1/artifacts/fw/big.bin")
            .body(bytes(9, 100_000))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let after = chunk_files();
        assert!(
            after < before / 10,
            "replaced blob's chunks collected: {before} -> {after}"
        );

        // Over the limit: 413, nothing published.
        let r = o
            .req(Method::PUT, "/api/v1/artifacts/fw/huge.bin")
            .body(vec![0u8; (300 << 20) + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        let (s, _) = o
            .json(Method::GET, "/api/v1/artifacts/fw/huge.bin", None)
            .await;
        assert_eq!(s, 404);

        let (_, v) = o
            .json(Method::GET, "/api/v1/artifacts?prefix=/fw", None)
            .await;
        assert_eq!(v["artifacts"].as_array().unwrap().len(), 2);

        // A push, its long poll, and delete.
        o.json(
            Method::POST,
            "/api/v1/sites",
            Some(json!({"name":"s1","labels":{"p":"g"}})),
        )
        .await;
        let (s, push) = o
            .json(
                Method::POST,
                "/api/v1/pushes",
                Some(json!({"content":["/fw/"],"labels":{"p":"g"},"max_rate":1000000})),
            )
            .await;
        assert_eq!(s, 201, "{push}");
        assert_eq!(push["state"], "in_progress");
        assert_eq!(push["sites"][0]["state"], "pending");
        assert_eq!(push["sites"][0]["bytes_total"], 600_000);
        let id = push["id"].as_i64().unwrap();
        let t = std::time::Instant::now();
        let (s, same) = o
            .json(
                Method::GET,
                &format!("/api/v1/pushes/{id}?wait_ms=300"),
                None,
            )
            .await;
        assert_eq!(s, 200);
        assert!(t.elapsed() >= Duration::from_millis(290));
        assert_eq!(same, push);
        let (s, _) = o
            .json(Method::DELETE, "/api/v1/artifacts/fw/a.bin", None)
            .await;
        assert_eq!(s, 204);
        let (s, _) = o
            .json(Method::GET, "/api/v1/artifacts/fw/a.bin", None)
            .await;
        assert_eq!(s, 404);
        let metrics = o
            .http
            .get(o.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("sitecast_origin_sent_bytes_total{site=\"s1\",kind=\"payload\"} 0"),
            "{metrics}"
        );
        o.stop().await;
    })
    .await
    .unwrap();
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Every file under `dir` (recursively).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .flat_map(|e| {
                    if e.path().is_dir() {
                        files_under(&e.path())
                    } else {
                        vec![e.path()]
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The origin keeps only a hash of a join token's secret: through the real API, the raw
/// secret appears in no file of the data directory (database, WAL, anything else), and the
/// token still works as a token (the site lists it unused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_token_secret_is_stored_only_as_a_hash() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        let (st, site) = o
            .json(
                Method::POST,
                "/api/v1/sites",
                Some(serde_json::json!({"name": "s1"})),
            )
            .await;
        assert_eq!(st, 201, "{site}");
        let token = site["join_token"]
            .as_str()
            .expect("a join token")
            .to_owned();
        let (st, again) = o
            .json(Method::POST, "/api/v1/sites/s1/join-token", None)
            .await;
        assert!(st == 200 || st == 201, "{again}");
        let second = again["join_token"]
            .as_str()
            .expect("a new join token")
            .to_owned();
        for token in [&token, &second] {
            let secret = token.splitn(3, '.').nth(2).expect("scj1.<ca>.<secret>");
            assert!(secret.len() >= 20, "a secret worth hashing: {secret}");
            let files = files_under(o.dir.path());
            assert!(files.iter().any(|f| f.ends_with("origin.db")), "{files:?}");
            for f in &files {
                let bytes = std::fs::read(f).unwrap();
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "the raw join-token secret is in {}",
                    f.display()
                );
            }
        }
    })
    .await
    .unwrap();
}
