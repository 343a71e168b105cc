//! Shared fixture for the FTP/SFTP tests: an edge core over a temporary data directory with a
//! catalog populated directly (no origin), serving HTTP, FTP and SFTP on 127.0.0.1:0.
#![allow(
    dead_code,
    clippy::missing_panics_doc,
    clippy::field_reassign_with_default
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use sitecast_edge::{Catalog, Core, EdgeConfig, FtpServer, HttpServer, SftpServer};
use sitecast_protocol::wire::{ArtifactState, ArtifactStatus, DesiredState};
use sitecast_protocol::{
    chunk_all, ArtifactManifest, CatalogPath, Permissions, Principal, SiteConfig, SiteGrant,
    SiteUser,
};
use sitecast_runtime::chunks::{DiskChunkStore, DiskOptions};
use tokio_util::sync::CancellationToken;

pub mod ftp;

/// Every test body runs under this.
pub const T: Duration = Duration::from_secs(120);

/// Test users and their passwords.
pub const USERS: &[(&str, &str)] = &[
    ("alice", "pw-alice"),
    ("bob", "pw-bob"),
    ("carol", "pw-carol"),
    ("nogrant", "pw-none"),
];

/// The password of `user`.
pub fn pw(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .expect("known user")
}

/// Published files: path → content.
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("/pub/readme.txt", b"hello from the edge\n".to_vec()),
        ("/pub/tools/t.bin", data(70_000, 2)),
        ("/fw/a.bin", data(700_000, 1)),
        ("/fw/ap/x.bin", data(300_000, 3)),
        ("/fw/other/y.bin", data(1000, 4)),
        ("/top.bin", data(10, 5)),
        ("/fw/empty.bin", Vec::new()),
    ]
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
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

/// Hex SHA-256.
pub fn sha(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn hash(pw: &str) -> String {
    let salt = SaltString::from_b64("c2l0ZWNhc3RzYWx0c2FsdA").unwrap();
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8, 1, 1, None).unwrap(),
    )
    .hash_password(pw.as_bytes(), &salt)
    .unwrap()
    .to_string()
}

fn grant(who: Option<&str>, prefix: &str, read: bool, list: bool) -> SiteGrant {
    SiteGrant {
        principal: who.map_or(Principal::Anonymous, |n| Principal::User(n.into())),
        prefix: CatalogPath::parse(prefix).unwrap(),
        permissions: Permissions { read, list },
    }
}

/// The site: anonymous reads and lists /pub; alice reads and lists /fw; bob reads (no list)
/// /fw/ap; carol lists (no read) /fw; nogrant has nothing. alice also logs in by key.
pub fn site(alice_key: &str) -> SiteConfig {
    SiteConfig {
        revision: 1,
        site: "s1".into(),
        users: USERS
            .iter()
            .map(|(u, p)| SiteUser {
                name: (*u).into(),
                password_hash: Some(hash(p)),
                ssh_keys: if *u == "alice" {
                    vec![alice_key.to_owned(), "not a key".to_owned()]
                } else {
                    vec![]
                },
            })
            .collect(),
        grants: vec![
            grant(None, "/pub", true, true),
            grant(Some("alice"), "/fw", true, true),
            grant(Some("bob"), "/fw/ap", true, false),
            grant(Some("carol"), "/fw", false, true),
        ],
    }
}

/// A running edge (servers stop when dropped).
pub struct Edge {
    pub core: Arc<Core>,
    pub http: SocketAddr,
    pub ftp: SocketAddr,
    pub sftp: SocketAddr,
    pub cancel: CancellationToken,
    /// alice's private key file (OpenSSH format, 0600).
    pub alice_key: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Edge {
    /// A scratch path inside the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("scratch").join(name)
    }
}

fn write_key(dir: &Path) -> (PathBuf, String) {
    use russh::keys::ssh_key::private::Ed25519Keypair;
    use russh::keys::ssh_key::LineEnding;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = russh::keys::PrivateKey::from(Ed25519Keypair::from_seed(&[7u8; 32]));
    let path = dir.join("id_ed25519");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    f.write_all(key.to_openssh(LineEnding::LF).unwrap().as_bytes())
        .unwrap();
    let public = key.public_key().to_openssh().unwrap();
    std::fs::write(dir.join("id_ed25519.pub"), format!("{public} alice@test\n")).unwrap();
    (path, format!("{public} alice@test"))
}

/// Store and publish `files` into `core`.
pub fn publish(core: &Core, files: &[(&str, Vec<u8>)], revision: u64) {
    let manifests: Vec<ArtifactManifest> = files
        .iter()
        .map(|(path, bytes)| {
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
                modified: 1_700_000_000,
            }
        })
        .collect();
    core.catalog
        .save_desired(&DesiredState {
            revision,
            artifacts: manifests.clone(),
        })
        .unwrap();
    for m in &manifests {
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

/// Start HTTP, FTP and SFTP over a fresh data directory holding [`files`] and [`site`].
pub async fn start(edit: impl FnOnce(&mut EdgeConfig)) -> Edge {
    start_in(tempfile::tempdir().unwrap(), edit).await
}

/// As [`start`], in an existing directory (to restart over the same data).
pub async fn start_in(dir: tempfile::TempDir, edit: impl FnOnce(&mut EdgeConfig)) -> Edge {
    std::fs::create_dir_all(dir.path().join("scratch")).unwrap();
    let data = dir.path().join("edge");
    let mut cfg = EdgeConfig::default();
    cfg.data_dir = data.clone();
    cfg.http_listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_listen = "127.0.0.1:0".parse().unwrap();
    cfg.ftp.listen = "127.0.0.1:0".parse().unwrap();
    cfg.sftp.listen = "127.0.0.1:0".parse().unwrap();
    cfg.oci.listen = "127.0.0.1:0".parse().unwrap();
    // A wide passive range below Linux's ephemeral ports (32768-60999, where clients' own
    // connections land): tests run in parallel and one runs 200 transfers at once.
    cfg.ftp.passive_ports = "20000-24999".to_owned().try_into().unwrap();
    edit(&mut cfg);
    let cfg = cfg.validate().unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let catalog = Catalog::open(&data.join("edge.db")).unwrap();
    let store = DiskChunkStore::open(data.join("chunks"), DiskOptions::default()).unwrap();
    let core = Arc::new(Core::with_parts(cfg, catalog, Arc::new(store)).unwrap());
    let (alice_key, alice_pub) = write_key(dir.path());
    core.set_site_config(site(&alice_pub));
    if core.catalog.published().is_empty() {
        publish(&core, &files(), 1);
    }
    let cancel = CancellationToken::new();
    let bind = || async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    };
    let (hl, http) = bind().await;
    let (fl, ftp) = bind().await;
    let (sl, sftp) = bind().await;
    tokio::spawn(HttpServer::new(core.clone(), cancel.clone()).run(hl, None));
    tokio::spawn(FtpServer::new(core.clone(), cancel.clone()).run(fl));
    let sftp_task = SftpServer::new(core.clone(), cancel.clone()).run(sl);
    tokio::spawn(async move {
        if let Err(e) = sftp_task.await {
            panic!("sftp server failed: {e}");
        }
    });
    Edge {
        core,
        http,
        ftp,
        sftp,
        cancel,
        alice_key,
        dir,
    }
}

/// Run a command to completion (off the runtime's threads), with a time limit.
pub async fn run(cmd: &mut tokio::process::Command) -> std::process::Output {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("command finished in time")
        .expect("command started (is the client installed? scripts/install-test-deps.sh)")
}

/// The content of a published file.
pub fn content(path: &str) -> Vec<u8> {
    files()
        .into_iter()
        .find(|(p, _)| *p == path)
        .map(|(_, b)| b)
        .expect("known file")
}
