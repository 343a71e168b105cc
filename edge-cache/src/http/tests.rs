//! HTTP server tests: a real listener on 127.0.0.1:0 over a catalog populated directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, IF_RANGE,
    LAST_MODIFIED, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::StatusCode;
use sitecast_protocol::wire::{ArtifactState, ArtifactStatus, DesiredState};
use sitecast_protocol::{
    chunk_all, ArtifactManifest, CatalogPath, Permissions, Principal, SiteConfig, SiteGrant,
    SiteUser,
};
use sitecast_runtime::chunks::{DiskChunkStore, DiskOptions};
use tokio_util::sync::CancellationToken;

use super::HttpServer;
use crate::catalog::Catalog;
use crate::config::EdgeConfig;
use crate::core::Core;

const T: Duration = Duration::from_secs(60);

pub(crate) struct Edge {
    pub core: Arc<Core>,
    pub addr: SocketAddr,
    pub cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Store `bytes` as chunks and a recipe; returns the manifest (not yet published).
pub(crate) fn stage(core: &Core, path: &str, bytes: &[u8], modified: u64) -> ArtifactManifest {
    let (cuts, recipe) = chunk_all(bytes);
    for c in &cuts {
        core.store.put(&c.id, &c.data).unwrap();
    }
    core.catalog.save_recipe(&recipe).unwrap();
    ArtifactManifest {
        path: CatalogPath::parse(path).unwrap(),
        blob: recipe.blake3,
        len: recipe.len,
        sha256: recipe.sha256,
        modified,
    }
}

pub(crate) fn publish_all(core: &Core, artifacts: &[ArtifactManifest], revision: u64) {
    core.catalog
        .save_desired(&DesiredState {
            revision,
            artifacts: artifacts.to_vec(),
        })
        .unwrap();
    for m in artifacts {
        let status = ArtifactStatus {
            path: m.path.clone(),
            blob: m.blob,
            state: ArtifactState::Complete,
            bytes_total: m.len,
            bytes_needed: 0,
            bytes_fetched: 0,
            error: None,
        };
        assert!(core.catalog.publish(m, &status).unwrap());
    }
}

fn grant(who: Option<&str>, prefix: &str, read: bool, list: bool) -> SiteGrant {
    SiteGrant {
        principal: who.map_or(Principal::Anonymous, |n| Principal::User(n.into())),
        prefix: CatalogPath::parse(prefix).unwrap(),
        permissions: Permissions { read, list },
    }
}

fn site() -> SiteConfig {
    SiteConfig {
        revision: 1,
        site: "s1".into(),
        users: vec![
            SiteUser {
                name: "alice".into(),
                password_hash: Some(crate::access::tests::hash("pw-alice")),
                ssh_keys: vec![],
            },
            SiteUser {
                name: "nogrant".into(),
                password_hash: Some(crate::access::tests::hash("pw-none")),
                ssh_keys: vec![],
            },
        ],
        grants: vec![
            grant(None, "/pub", true, true),
            grant(Some("alice"), "/fw", true, true),
        ],
    }
}

pub(crate) async fn start(cfg_edit: impl FnOnce(&mut EdgeConfig)) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EdgeConfig::default();
    cfg.data_dir = dir.path().to_owned();
    cfg_edit(&mut cfg);
    let catalog = Catalog::open(&dir.path().join("edge.db")).unwrap();
    let store = DiskChunkStore::open(dir.path().join("chunks"), DiskOptions::default()).unwrap();
    let core = Arc::new(Core::with_parts(cfg, catalog, Arc::new(store)).unwrap());
    core.set_site_config(site());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(HttpServer::new(core.clone(), cancel.clone()).run(listener, None));
    Edge {
        core,
        addr,
        cancel,
        _dir: dir,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Edge {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// GET `url` and return the body, whatever the status.
async fn get_body(c: &reqwest::Client, url: &str) -> bytes::Bytes {
    c.get(url).send().await.unwrap().bytes().await.unwrap()
}

/// GET `path` exactly as given over a fresh connection; returns the whole answer.
async fn raw_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWxpY2U6cHctYWxpY2U=\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Bodies are read in ~1 MiB batches of chunks: ranges starting, ending and crossing anywhere
/// (inside a chunk, on a batch edge, the last byte) come back exact.
#[tokio::test]
async fn ranges_across_read_batches_are_exact() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let len = 3_500_000usize;
        let body = data(len, 7);
        let m = stage(&edge.core, "/pub/big.bin", &body, 1_700_000_000);
        publish_all(&edge.core, &[m], 1);
        let c = client();
        let url = edge.url("/pub/big.bin");
        assert_eq!(get_body(&c, &url).await.as_ref(), body.as_slice());
        let mut x = 0x9e37_79b9_u64;
        let mut cases = vec![
            (0, 0),
            (0, len - 1),
            (len - 1, len - 1),
            (1 << 20, (2 << 20) + 1),
        ];
        for _ in 0..24 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let a = (x >> 33) as usize % len;
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let b = a + (x >> 33) as usize % (len - a);
            cases.push((a, b));
        }
        for (a, b) in cases {
            let r = c
                .get(&url)
                .header(RANGE, format!("bytes={a}-{b}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{a}-{b}");
            assert_eq!(
                r.headers()[CONTENT_LENGTH],
                (b - a + 1).to_string().as_str()
            );
            assert!(
                r.bytes().await.unwrap().as_ref() == &body[a..=b],
                "bytes {a}-{b}"
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn get_head_ranges_and_conditionals() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let body = data(700_000, 1);
        let m = stage(&edge.core, "/pub/fw.bin", &body, 1_700_000_000);
        publish_all(&edge.core, &[m.clone()], 1);
        let c = client();
        let url = edge.url("/pub/fw.bin");

        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let etag = format!("\"{}\"", m.sha256.to_hex());
        assert_eq!(r.headers()[ETAG], etag.as_str());
        assert_eq!(r.headers()["accept-ranges"], "bytes");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/octet-stream");
        let lm = r.headers()[LAST_MODIFIED].to_str().unwrap().to_owned();
        assert_eq!(lm, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());

        let r = c.head(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_LENGTH], "700000");
        assert!(r.bytes().await.unwrap().is_empty());

        // first, middle (crossing chunk boundaries), suffix, open-ended
        for (spec, from, to) in [
            ("bytes=0-99", 0usize, 99usize),
            ("bytes=100000-500000", 100_000, 500_000),
            ("bytes=-1000", 699_000, 699_999),
            ("bytes=699990-", 699_990, 699_999),
        ] {
            let r = c.get(&url).header(RANGE, spec).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{spec}");
            assert_eq!(
                r.headers()[CONTENT_RANGE],
                format!("bytes {from}-{to}/700000").as_str()
            );
            assert_eq!(
                r.bytes().await.unwrap().as_ref(),
                &body[from..=to],
                "{spec}"
            );
        }
        let r = c
            .get(&url)
            .header(RANGE, "bytes=700000-")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[CONTENT_RANGE], "bytes */700000");
        // multi-range: answered with the whole body
        let r = c
            .get(&url)
            .header(RANGE, "bytes=0-1,5-6")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        // ETag / If-None-Match
        let r = c
            .get(&url)
            .header(IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()[ETAG], etag.as_str());
        let r = c
            .get(&url)
            .header(IF_NONE_MATCH, "\"other\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        // If-Range: matching tag or date keeps the range, anything else gets the full body
        let ranged = |v: &str| {
            c.get(&url)
                .header(RANGE, "bytes=0-9")
                .header(IF_RANGE, v.to_owned())
                .send()
        };
        assert_eq!(
            ranged(&etag).await.unwrap().status(),
            StatusCode::PARTIAL_CONTENT
        );
        assert_eq!(
            ranged(&lm).await.unwrap().status(),
            StatusCode::PARTIAL_CONTENT
        );
        let r = ranged("\"stale\"").await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap().len(), body.len());
        assert_eq!(
            ranged("Wed, 15 Nov 2023 22:13:20 GMT")
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );

        assert!(
            edge.core
                .metrics
                .http_bytes_served
                .load(std::sync::atomic::Ordering::Relaxed)
                > 700_000
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn listings_html_and_json_filtered_by_grants() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let a = stage(&edge.core, "/fw/ap/a.bin", b"aaaa", 1_700_000_000);
        let b = stage(&edge.core, "/fw/b.json", b"{}", 1_700_000_100);
        let p = stage(&edge.core, "/pub/x y.bin", b"xy", 1_700_000_000);
        publish_all(&edge.core, &[a.clone(), b.clone(), p], 1);
        let c = client();

        // anonymous at the root sees only /pub
        let r = c
            .get(edge.url("/"))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["path"], "/");
        let names: Vec<&str> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["pub"]);

        // alice sees both, and /fw with and without a trailing slash
        for path in ["/fw", "/fw/"] {
            let r = c
                .get(edge.url(path))
                .basic_auth("alice", Some("pw-alice"))
                .header(ACCEPT, "application/json")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["path"], "/fw");
            let e = v["entries"].as_array().unwrap();
            assert_eq!(e.len(), 2);
            assert_eq!(e[0]["name"], "ap");
            assert_eq!(e[0]["type"], "dir");
            assert_eq!(e[1]["name"], "b.json");
            assert_eq!(e[1]["type"], "file");
            assert_eq!(e[1]["size"], 2);
            assert_eq!(e[1]["sha256"], b.sha256.to_hex());
            assert_eq!(e[1]["modified"], "2023-11-14T22:15:00Z");
        }

        let r = c.get(edge.url("/pub/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = r.text().await.unwrap();
        assert!(html.contains("href=\"/pub/x%20y.bin\""), "{html}");
        assert!(html.contains(">x y.bin</a>"));
        assert!(html.contains("href=\"/\">../"));

        // a file path with a trailing slash is not a directory
        let r = c.get(edge.url("/pub/x%20y.bin/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        // a file's content type by extension
        let r = c
            .get(edge.url("/fw/b.json"))
            .basic_auth("alice", Some("pw-alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn access_statuses() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let a = stage(&edge.core, "/fw/a.bin", b"secret firmware", 1);
        publish_all(&edge.core, &[a], 1);
        let c = client();
        let get = |path: &str, auth: Option<(&str, &str)>| {
            let mut r = c.get(edge.url(path));
            if let Some((u, p)) = auth {
                r = r.basic_auth(u, Some(p));
            }
            r.send()
        };

        let r = get("/fw/a.bin", None).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Basic realm=\"sitecast\"");
        // absent path, anonymous and not granted: 401 too (reveals nothing)
        assert_eq!(
            get("/fw/none.bin", None).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get("/fw/a.bin", Some(("alice", "pw-alice")))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            get("/fw/a.bin", Some(("alice", "wrong")))
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get("/fw/a.bin", Some(("nobody", "x")))
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get("/fw/a.bin", Some(("nogrant", "pw-none")))
                .await
                .unwrap()
                .status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get("/fw/none.bin", Some(("alice", "pw-alice")))
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/pub/none.bin", None).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );

        // Sent raw: HTTP client libraries normalize dot segments before sending.
        for hostile in [
            "/fw/%2e%2e/etc/passwd",
            "/fw/../etc/passwd",
            "/fw/a%00.bin",
            "/fw/%5c..%5cx",
            "/fw%2Fa.bin",
            "/%ff",
        ] {
            let answer = raw_get(edge.addr, hostile).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{hostile}: {answer}");
            assert!(answer.contains("path"), "{hostile}: {answer}");
        }
        // Runs of slashes are one separator (as nginx's merge_slashes), for devices whose
        // URL templates join a base ending in '/' with a path starting with one.
        for doubled in ["//fw/a.bin", "/fw//a.bin", "///fw///a.bin"] {
            let r = get(doubled, Some(("alice", "pw-alice"))).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{doubled}");
            assert_eq!(
                &r.bytes().await.unwrap()[..],
                b"secret firmware",
                "{doubled}"
            );
        }
        let r = c.post(edge.url("/fw/a.bin")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn too_many_failed_logins_get_429_before_argon2() {
    tokio::time::timeout(T, async {
        let edge = start(|c| c.http.auth_failures_before_429 = 3).await;
        let a = stage(&edge.core, "/fw/a.bin", b"x", 1);
        publish_all(&edge.core, &[a], 1);
        let c = client();
        for _ in 0..3 {
            let r = c
                .get(edge.url("/fw/a.bin"))
                .basic_auth("alice", Some("bad"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        let verified = edge.core.auth.verifications();
        let r = c
            .get(edge.url("/fw/a.bin"))
            .basic_auth("alice", Some("pw-alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            edge.core.auth.verifications(),
            verified,
            "the refused request ran no password verification"
        );
        let retry: u64 = r.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        // Anonymous access to what is granted anonymously is not blocked.
        assert_eq!(
            c.get(edge.url("/pub/")).send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn publish_switches_atomically() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let v1 = data(300_000, 7);
        let mut v2 = v1.clone();
        v2[150_000..150_100].fill(0xEE);
        let m1 = stage(&edge.core, "/pub/fw.bin", &v1, 1);
        publish_all(&edge.core, &[m1.clone()], 1);
        let c = client();
        let url = edge.url("/pub/fw.bin");

        // The new version is desired and partly stored: the old one is still served whole.
        let (cuts, recipe) = chunk_all(&v2);
        let m2 = ArtifactManifest {
            path: m1.path.clone(),
            blob: recipe.blake3,
            len: recipe.len,
            sha256: recipe.sha256,
            modified: 2,
        };
        edge.core.catalog.save_recipe(&recipe).unwrap();
        edge.core
            .catalog
            .save_desired(&DesiredState {
                revision: 2,
                artifacts: vec![m2.clone()],
            })
            .unwrap();
        edge.core.store.put(&cuts[0].id, &cuts[0].data).unwrap();
        assert_eq!(get_body(&c, &url).await.as_ref(), v1.as_slice());

        for cut in &cuts {
            edge.core.store.put(&cut.id, &cut.data).unwrap();
        }
        assert_eq!(get_body(&c, &url).await.as_ref(), v1.as_slice());
        let status = ArtifactStatus {
            path: m2.path.clone(),
            blob: m2.blob,
            state: ArtifactState::Complete,
            bytes_total: m2.len,
            bytes_needed: 0,
            bytes_fetched: 0,
            error: None,
        };
        assert!(edge.core.catalog.publish(&m2, &status).unwrap());
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(
            r.headers()[ETAG],
            format!("\"{}\"", m2.sha256.to_hex()).as_str()
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), v2.as_slice());

        // A blob that is no longer desired is never published.
        assert!(!edge.core.catalog.publish(&m1, &status).unwrap());

        // The published table survives a reopen.
        let reopened = Catalog::open(&edge.core.cfg.data_dir.join("edge.db")).unwrap();
        assert_eq!(reopened.lookup(&m2.path).unwrap(), m2);

        // Unpublished when the desired state drops it.
        edge.core
            .catalog
            .save_desired(&DesiredState {
                revision: 3,
                artifacts: vec![],
            })
            .unwrap();
        assert_eq!(
            c.get(&url).send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    })
    .await
    .unwrap();
}

/// A version replaced while a device is still downloading it: its chunks outlive the garbage
/// collection that follows the replacement, the download completes with the old bytes, and the
/// chunks go once the last reader is done.
#[tokio::test]
async fn replaced_version_stays_readable_until_its_last_reader_is_done() {
    tokio::time::timeout(T, async {
        // No chunk cache: every read below goes to the store.
        let edge = start(|c| c.chunk_cache_bytes = 0).await;
        let (v1, v2) = (data(1_500_000, 11), data(1_500_000, 12));
        let m1 = stage(&edge.core, "/pub/fw.bin", &v1, 1_700_000_000);
        publish_all(&edge.core, std::slice::from_ref(&m1), 1);
        let reader = crate::vfs::Content::open(&edge.core, &m1).await.unwrap();
        let second = crate::vfs::Content::open(&edge.core, &m1).await.unwrap();
        let old_chunks = edge
            .core
            .catalog
            .recipe(&m1.blob)
            .unwrap()
            .unwrap()
            .chunks
            .clone();

        let m2 = stage(&edge.core, "/pub/fw.bin", &v2, 1_700_000_100);
        publish_all(&edge.core, std::slice::from_ref(&m2), 2);
        crate::session::collect_garbage(&edge.core).await.unwrap();
        // New requests get v2; the readers that started on v1 still read all of v1.
        assert_eq!(
            get_body(&client(), &edge.url("/pub/fw.bin")).await.as_ref(),
            v2.as_slice()
        );
        let mut got = Vec::new();
        for d in reader.chunk_range(0, reader.chunks()).await.unwrap() {
            got.extend_from_slice(&d);
        }
        assert!(got == v1, "the old version, whole");
        drop(reader);
        // One reader left: still kept.
        crate::session::collect_garbage(&edge.core).await.unwrap();
        assert!(edge.core.store.has(&old_chunks[0].id).unwrap());
        drop(second);
        // The last reader is gone: its drop starts a collection; wait for it (no event to
        // await, so poll the store), then check the old chunks are all gone.
        while edge.core.store.has(&old_chunks[0].id).unwrap() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        crate::session::collect_garbage(&edge.core).await.unwrap();
        for c in &old_chunks {
            assert!(
                !edge.core.store.has(&c.id).unwrap(),
                "chunk {} of v1 kept",
                c.id
            );
        }
        assert!(edge.core.catalog.recipe(&m1.blob).unwrap().is_none());
        assert_eq!(
            get_body(&client(), &edge.url("/pub/fw.bin")).await.as_ref(),
            v2.as_slice()
        );
    })
    .await
    .unwrap();
}
