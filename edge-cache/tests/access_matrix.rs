//! One access decision: every (principal × path) gets the same answer over HTTP, FTP and
//! SFTP — allowed with the same content or listing, denied, or not found — including
//! anonymous, a user who may list but not read, one who may read but not list, and a user
//! without grants.
#![allow(clippy::missing_panics_doc)]

mod common;

use std::sync::Arc;

use common::ftp::Ftp;
use common::{pw, sha, start, Edge, T};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A file's SHA-256, or a directory's sorted entry names.
    Allow(String),
    Deny,
    NotFound,
}

const DIRS: &[&str] = &[
    "/",
    "/pub",
    "/pub/tools",
    "/fw",
    "/fw/ap",
    "/fw/other",
    "/nodir",
    "/fw/nodir",
];
const FILES: &[&str] = &[
    "/pub/readme.txt",
    "/pub/tools/t.bin",
    "/fw/a.bin",
    "/fw/ap/x.bin",
    "/fw/other/y.bin",
    "/fw/empty.bin",
    "/top.bin",
    "/fw/missing.bin",
    "/pub/missing.txt",
    "/fw/ap/missing.bin",
];
const PRINCIPALS: &[Option<&str>] = &[
    None,
    Some("alice"),
    Some("bob"),
    Some("carol"),
    Some("nogrant"),
];

async fn http(edge: &Edge, who: Option<&str>, path: &str, dir: bool) -> Outcome {
    let c = reqwest::Client::new();
    let url = if dir && path != "/" {
        format!("http://{}{path}/", edge.http)
    } else {
        format!("http://{}{path}", edge.http)
    };
    let mut req = c.get(url).header("accept", "application/json");
    if let Some(u) = who {
        req = req.basic_auth(u, Some(pw(u)));
    }
    let r = req.send().await.unwrap();
    match r.status().as_u16() {
        200 if dir => {
            let v: serde_json::Value = r.json().await.unwrap();
            let mut names: Vec<String> = v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            Outcome::Allow(names.join(","))
        }
        200 => Outcome::Allow(sha(&r.bytes().await.unwrap())),
        401 | 403 => Outcome::Deny,
        404 => Outcome::NotFound,
        s => panic!("http {who:?} {path}: {s}"),
    }
}

async fn ftp(f: &mut Ftp, path: &str, dir: bool) -> Outcome {
    let c = if dir {
        format!("MLSD {path}")
    } else {
        format!("RETR {path}")
    };
    let (pre, data, fin) = f.data_cmd(&c, None).await;
    let last = fin.unwrap_or(pre);
    match last.code {
        226 if dir => {
            let text = String::from_utf8(data).unwrap();
            let mut names: Vec<String> = text
                .lines()
                .filter_map(|l| l.rsplit(' ').next())
                .map(str::to_owned)
                .collect();
            names.sort();
            Outcome::Allow(names.join(","))
        }
        226 => Outcome::Allow(sha(&data)),
        550 if last.text.contains("Permission denied") => Outcome::Deny,
        550 => Outcome::NotFound,
        _ => panic!("ftp {c}: {last:?}"),
    }
}

fn sftp_status(e: &russh_sftp::client::error::Error) -> Outcome {
    match e {
        russh_sftp::client::error::Error::Status(s)
            if s.status_code == StatusCode::PermissionDenied =>
        {
            Outcome::Deny
        }
        russh_sftp::client::error::Error::Status(s) if s.status_code == StatusCode::NoSuchFile => {
            Outcome::NotFound
        }
        other => panic!("sftp: {other:?}"),
    }
}

async fn sftp(s: &SftpSession, path: &str, dir: bool) -> Outcome {
    if dir {
        match s.read_dir(path).await {
            Ok(rd) => {
                let mut names: Vec<String> = rd.map(|e| e.file_name()).collect();
                names.sort();
                Outcome::Allow(names.join(","))
            }
            Err(e) => sftp_status(&e),
        }
    } else {
        match s.read(path).await {
            Ok(bytes) => Outcome::Allow(sha(&bytes)),
            Err(e) => sftp_status(&e),
        }
    }
}

struct Client;

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn sftp_login(
    edge: &Edge,
    who: Option<&str>,
) -> (SftpSession, russh::client::Handle<Client>) {
    let mut h = russh::client::connect(
        Arc::new(russh::client::Config::default()),
        edge.sftp,
        Client,
    )
    .await
    .unwrap();
    let ok = match who {
        None => h.authenticate_none("anonymous").await.unwrap().success(),
        Some(u) => h.authenticate_password(u, pw(u)).await.unwrap().success(),
    };
    assert!(ok, "sftp login {who:?}");
    let ch = h.channel_open_session().await.unwrap();
    ch.request_subsystem(true, "sftp").await.unwrap();
    (SftpSession::new(ch.into_stream()).await.unwrap(), h)
}

fn file(path: &str) -> Outcome {
    Outcome::Allow(sha(&common::content(path)))
}

fn listing(names: &[&str]) -> Outcome {
    Outcome::Allow(names.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ftp_and_sftp_agree() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let mut table = Vec::new();
        for who in PRINCIPALS {
            let mut f = match who {
                None => Ftp::login(edge.ftp, "anonymous", "guest@example.com").await,
                Some(u) => Ftp::login(edge.ftp, u, pw(u)).await,
            };
            let (s, _h) = sftp_login(&edge, *who).await;
            for (path, dir) in DIRS
                .iter()
                .map(|p| (*p, true))
                .chain(FILES.iter().map(|p| (*p, false)))
            {
                let h = http(&edge, *who, path, dir).await;
                let fo = ftp(&mut f, path, dir).await;
                let so = sftp(&s, path, dir).await;
                assert_eq!(h, fo, "HTTP vs FTP for {who:?} at {path}");
                assert_eq!(h, so, "HTTP vs SFTP for {who:?} at {path}");
                table.push(((*who).map(str::to_owned), path, h));
            }
        }
        let at = |who: Option<&str>, path: &str| {
            table
                .iter()
                .find(|(w, p, _)| w.as_deref() == who && *p == path)
                .map(|(_, _, o)| o.clone())
                .unwrap()
        };
        // The agreed answers are the right ones.
        let deny = Outcome::Deny;
        let missing = Outcome::NotFound;
        assert_eq!(at(None, "/"), listing(&["pub"]));
        assert_eq!(at(None, "/pub/readme.txt"), file("/pub/readme.txt"));
        assert_eq!(at(None, "/pub"), listing(&["readme.txt", "tools"]));
        assert_eq!(at(None, "/pub/missing.txt"), missing);
        assert_eq!(at(None, "/fw/a.bin"), deny);
        assert_eq!(at(None, "/fw"), deny);
        assert_eq!(at(None, "/fw/missing.bin"), deny);
        assert_eq!(at(Some("alice"), "/"), listing(&["fw", "pub"]));
        assert_eq!(
            at(Some("alice"), "/fw"),
            listing(&["a.bin", "ap", "empty.bin", "other"])
        );
        assert_eq!(at(Some("alice"), "/fw/a.bin"), file("/fw/a.bin"));
        assert_eq!(at(Some("alice"), "/fw/empty.bin"), file("/fw/empty.bin"));
        assert_eq!(at(Some("alice"), "/fw/missing.bin"), missing);
        assert_eq!(at(Some("alice"), "/fw/nodir"), missing);
        assert_eq!(at(Some("alice"), "/top.bin"), deny);
        assert_eq!(at(Some("alice"), "/nodir"), deny);
        // bob reads /fw/ap but may not list it; he may list on the way down to it.
        assert_eq!(at(Some("bob"), "/fw/ap/x.bin"), file("/fw/ap/x.bin"));
        assert_eq!(at(Some("bob"), "/fw/ap"), deny);
        assert_eq!(at(Some("bob"), "/fw"), listing(&["ap"]));
        assert_eq!(at(Some("bob"), "/fw/a.bin"), deny);
        assert_eq!(at(Some("bob"), "/fw/ap/missing.bin"), missing);
        // carol lists /fw but reads nothing there.
        assert_eq!(at(Some("carol"), "/fw"), listing(&["ap", "other"]));
        assert_eq!(at(Some("carol"), "/fw/ap"), listing(&[]));
        assert_eq!(at(Some("carol"), "/fw/a.bin"), deny);
        // nogrant gets what anonymous gets, nothing more.
        assert_eq!(at(Some("nogrant"), "/"), listing(&["pub"]));
        assert_eq!(
            at(Some("nogrant"), "/pub/tools/t.bin"),
            file("/pub/tools/t.bin")
        );
        assert_eq!(at(Some("nogrant"), "/fw/a.bin"), deny);
        assert_eq!(at(Some("nogrant"), "/fw"), deny);
        assert_eq!(table.len(), PRINCIPALS.len() * (DIRS.len() + FILES.len()));
    })
    .await
    .unwrap();
}
