//! The QUIC server with a real quinn client: enrollment, control stream, recipes, chunks,
//! malformed frames.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{bytes, Origin};
use quinn::{Connection, RecvStream, SendStream};
use reqwest::Method;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use sitecast_protocol::wire::{
    ArtifactState, ArtifactStatus, ChunkRequest, Enroll, ErrorCode, Hello, Message, RecipeRequest,
    StatusReport,
};
use sitecast_protocol::BlobId;
use sitecast_runtime::framed::{read_frame, write_frame};
use sitecast_runtime::tls::{ALPN, ORIGIN_SERVER_NAME};

const T: Duration = Duration::from_secs(60);

fn ca_der(o: &Origin) -> CertificateDer<'static> {
    let pem = std::fs::read_to_string(o.dir.path().join("ca/ca.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    der
}

async fn connect(
    addr: SocketAddr,
    ca: CertificateDer<'static>,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Connection {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => b.with_client_auth_cert(vec![cert], key).unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(qc)));
    ep.connect(addr, ORIGIN_SERVER_NAME).unwrap().await.unwrap()
}

async fn request(conn: &Connection, msg: Message) -> (SendStream, RecvStream, Message) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    write_frame(&mut send, &msg).await.unwrap();
    let answer = read_frame(&mut recv).await.unwrap().expect("an answer");
    (send, recv, answer)
}

fn error_code(m: &Message) -> (ErrorCode, String) {
    match m {
        Message::Error(e) => (e.code, e.message.clone()),
        other => panic!("expected ErrorMsg, got {other:?}"),
    }
}

#[tokio::test]
async fn enroll_control_recipe_chunks_and_malformed_frames() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        let data = bytes(3, 700_000);
        let r = o
            .req(Method::PUT, "/api/v1/artifacts/fw/a.bin")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let (_, v) = o
            .json(Method::POST, "/api/v1/sites", Some(json!({"name":"s1"})))
            .await;
        let token = v["join_token"].as_str().unwrap().to_owned();
        o.json(
            Method::POST,
            "/api/v1/users",
            Some(json!({"name":"u","password":"pw"})),
        )
        .await;
        o.json(
            Method::POST,
            "/api/v1/grants",
            Some(json!({"user":"u","path":"/fw","site":"s1"})),
        )
        .await;
        let (s, push) = o
            .json(
                Method::POST,
                "/api/v1/pushes",
                Some(json!({"content":["/fw/a.bin"],"sites":["s1"]})),
            )
            .await;
        assert_eq!(s, 201);
        let push_id = push["id"].as_i64().unwrap();

        // Enrollment without a certificate: a bad token is refused, a good one works once.
        let ca = ca_der(&o);
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let anon = connect(o.ready.quic, ca.clone(), None).await;
        let enroll = |t: &str| {
            Message::Enroll(Enroll {
                token: t.to_owned(),
                node: "n1".into(),
                csr_pem: csr.clone(),
            })
        };
        let bad = format!("{}x", &token[..token.len() - 1]);
        let (_, _, m) = request(&anon, enroll(&bad)).await;
        assert_eq!(error_code(&m).0, ErrorCode::BadToken);
        let (_, _, m) = request(
            &anon,
            Message::Hello(Hello {
                software: "t".into(),
                config_revision: 0,
                desired_revision: 0,
            }),
        )
        .await;
        assert_eq!(
            error_code(&m).0,
            ErrorCode::Unauthorized,
            "nothing but Enroll without a certificate"
        );
        let (_, _, m) = request(&anon, enroll(&token)).await;
        let Message::Enrolled(enrolled) = m else {
            panic!("expected Enrolled, got {m:?}")
        };
        assert_eq!(enrolled.site, "s1");
        let anon2 = connect(o.ready.quic, ca.clone(), None).await;
        let (_, _, m) = request(&anon2, enroll(&token)).await;
        assert_eq!(error_code(&m).0, ErrorCode::BadToken, "tokens are one-time");

        // Connect as the node.
        let cert = rustls_pemfile::certs(&mut enrolled.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let pk = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let conn = connect(o.ready.quic, ca.clone(), Some((cert, pk))).await;
        let (mut ctl_send, mut ctl_recv, m) = request(
            &conn,
            Message::Hello(Hello {
                software: "test".into(),
                config_revision: 0,
                desired_revision: 0,
            }),
        )
        .await;
        let Message::Welcome(w) = m else {
            panic!("expected Welcome, got {m:?}")
        };
        assert_eq!((w.site.as_str(), w.node.as_str()), ("s1", "n1"));
        let Some(Message::SiteConfig(sc)) = read_frame(&mut ctl_recv).await.unwrap() else {
            panic!("expected SiteConfig")
        };
        assert_eq!(sc.config.users.len(), 1);
        assert!(sc.config.users[0]
            .password_hash
            .as_deref()
            .unwrap()
            .starts_with("$argon2id$"));
        assert_eq!(sc.config.grants.len(), 1);
        let Some(Message::DesiredState(ds)) = read_frame(&mut ctl_recv).await.unwrap() else {
            panic!("expected DesiredState")
        };
        assert_eq!(ds.artifacts.len(), 1);
        let blob = ds.artifacts[0].blob;
        let (_, site) = o.json(Method::GET, "/api/v1/sites/s1", None).await;
        assert_eq!(site["nodes"][0]["state"], "online", "{site}");

        // Recipe and chunks.
        let (_, _, m) = request(&conn, Message::RecipeRequest(RecipeRequest { blob })).await;
        let Message::RecipeResponse(rr) = m else {
            panic!("expected RecipeResponse, got {m:?}")
        };
        assert_eq!(rr.recipe.len, data.len() as u64);
        let ids: Vec<_> = rr.recipe.chunks.iter().map(|c| c.id).collect();
        let (_send, mut recv, m) = request(
            &conn,
            Message::ChunkRequest(ChunkRequest {
                blob,
                chunks: ids.clone(),
            }),
        )
        .await;
        let mut got = Vec::new();
        let mut next = Some(m);
        while let Some(m) = next {
            let Message::ChunkData(cd) = m else {
                panic!("expected ChunkData, got {m:?}")
            };
            cd.verify().unwrap();
            got.extend_from_slice(&cd.data);
            next = read_frame(&mut recv).await.unwrap();
        }
        assert_eq!(got, data);
        let (_, _, m) = request(
            &conn,
            Message::RecipeRequest(RecipeRequest {
                blob: BlobId::from_bytes([9; 32]),
            }),
        )
        .await;
        assert_eq!(error_code(&m).0, ErrorCode::NotFound);
        let (_, _, m) = request(
            &conn,
            Message::ChunkRequest(ChunkRequest {
                blob,
                chunks: vec![sitecast_protocol::ChunkId::from_bytes([1; 32])],
            }),
        )
        .await;
        assert_eq!(error_code(&m).0, ErrorCode::BadRequest);

        // Malformed and unexpected frames: the stream gets an error, the connection lives on.
        let (mut s, mut r) = conn.open_bi().await.unwrap();
        s.write_all(b"XYZ\x01\x01\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let (code, msg) = error_code(&read_frame(&mut r).await.unwrap().unwrap());
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(msg.contains("magic"), "{msg}");
        let (mut s, mut r) = conn.open_bi().await.unwrap();
        s.write_all(b"SCW\x07\x01\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        let (_, msg) = error_code(&read_frame(&mut r).await.unwrap().unwrap());
        assert!(msg.contains("version"), "{msg}");
        let (_, _, m) = request(&conn, Message::Welcome(w.clone())).await;
        assert!(error_code(&m).1.contains("unexpected Welcome"));
        let (_, _, m) = request(&conn, Message::RecipeRequest(RecipeRequest { blob })).await;
        assert!(
            matches!(m, Message::RecipeResponse(_)),
            "connection survives bad streams"
        );

        // Progress on the control stream drives the push; bytes were counted. The edge's figure
        // of what it lacked (here: as if it held the first half's chunks) is what the push
        // shows, not the artifact's size.
        let lacked = data.len() as u64 / 2;
        let report = StatusReport {
            desired_revision: ds.revision,
            artifacts: vec![ArtifactStatus {
                path: ds.artifacts[0].path.clone(),
                blob,
                state: ArtifactState::Complete,
                bytes_total: data.len() as u64,
                bytes_needed: lacked,
                bytes_fetched: lacked,
                error: None,
            }],
        };
        write_frame(&mut ctl_send, &Message::StatusReport(report))
            .await
            .unwrap();
        let mut push = serde_json::Value::Null;
        for _ in 0..50 {
            let (_, p) = o
                .json(
                    Method::GET,
                    &format!("/api/v1/pushes/{push_id}?wait_ms=1000"),
                    None,
                )
                .await;
            push = p;
            if push["state"] == "complete" {
                break;
            }
        }
        assert_eq!(push["state"], "complete", "{push}");
        let s = &push["sites"][0];
        assert_eq!(s["bytes_needed"], lacked, "{push}");
        assert_eq!(s["bytes_total"], data.len() as u64, "{push}");
        assert_eq!(s["artifacts"][0]["bytes_needed"], lacked, "{push}");
        let payload = s["payload_bytes"].as_u64().unwrap();
        assert_eq!(payload, data.len() as u64, "{push}");
        assert!(s["framing_bytes"].as_u64().unwrap() > 0);
        assert!(s["bytes_sent"].as_u64().unwrap() < data.len() as u64 * 105 / 100);

        // A new push arrives on the open control stream as a new DesiredState.
        o.req(Method::PUT, "/api/v1/artifacts/fw/b.bin")
            .body(bytes(4, 1000))
            .send()
            .await
            .unwrap();
        o.json(
            Method::POST,
            "/api/v1/pushes",
            Some(json!({"content":["/fw/b.bin"],"sites":["s1"]})),
        )
        .await;
        let Some(Message::DesiredState(ds2)) = read_frame(&mut ctl_recv).await.unwrap() else {
            panic!("expected DesiredState")
        };
        assert!(ds2.revision > ds.revision);
        assert_eq!(ds2.artifacts.len(), 2);

        // Deleting the site revokes the node.
        let (s, _) = o.json(Method::DELETE, "/api/v1/sites/s1", None).await;
        assert_eq!(s, 204);
        conn.close(0u32.into(), b"bye");
        let cert = rustls_pemfile::certs(&mut enrolled.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let pk = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let revoked = connect(o.ready.quic, ca, Some((cert, pk))).await;
        let reason = revoked.closed().await;
        // Told why, with the close code edges stop retrying on.
        let text = reason.to_string();
        assert!(
            text.contains("node n1 of site s1 was revoked")
                && text.contains("its site was deleted")
                && text.contains("(code 3)"),
            "{reason}"
        );
        o.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_expired_join_token_is_refused_and_a_new_one_enrolls() {
    tokio::time::timeout(T, async {
        let o = Origin::start().await;
        for bad in ["0s", "400days", "soon"] {
            let (s, v) = o
                .json(
                    Method::POST,
                    "/api/v1/sites",
                    Some(json!({"name": "x", "join_token_ttl": bad})),
                )
                .await;
            assert_eq!(s, 400, "{bad}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("join_token_ttl"),
                "{v}"
            );
        }
        let (s, v) = o
            .json(
                Method::POST,
                "/api/v1/sites",
                Some(json!({"name": "s1", "join_token_ttl": "1s"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert!(v["join_token_expires"].as_str().is_some(), "{v}");
        let token = v["join_token"].as_str().unwrap().to_owned();
        let ca = ca_der(&o);
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let enroll = |t: &str| {
            Message::Enroll(Enroll {
                token: t.to_owned(),
                node: "n1".into(),
                csr_pem: csr.clone(),
            })
        };
        // Expiry is kept in whole seconds: past it for certain after 2.1 s.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let anon = connect(o.ready.quic, ca.clone(), None).await;
        let (_, _, m) = request(&anon, enroll(&token)).await;
        let (code, msg) = error_code(&m);
        assert_eq!(code, ErrorCode::BadToken);
        assert!(
            msg.contains("expired") && msg.contains("ctl site join-token s1"),
            "{msg}"
        );
        // A bad ttl on rotation is refused; a new token enrolls.
        let r = o
            .req(Method::POST, "/api/v1/sites/s1/join-token?ttl=-1h")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let (s, v) = o
            .json(Method::POST, "/api/v1/sites/s1/join-token?ttl=1h", None)
            .await;
        assert_eq!(s, 200, "{v}");
        let fresh = v["join_token"].as_str().unwrap().to_owned();
        let anon = connect(o.ready.quic, ca.clone(), None).await;
        let (_, _, m) = request(&anon, enroll(&fresh)).await;
        assert!(matches!(m, Message::Enrolled(_)), "{m:?}");
        o.stop().await;
    })
    .await
    .unwrap();
}
