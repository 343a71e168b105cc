//! What a run fetches and from where: [`Target`] (protocol, endpoint, credentials), [`Item`]
//! (a path and its expected SHA-256) and the streaming [`Verifier`].
//!
//! Contract: every download is verified. An [`Item`] without an expected digest is refused at
//! start-up ([`resolve_items`]), except OCI references, whose blobs are content-addressed and are
//! checked against their own digests. Expected digests come from `--sha256` or from the
//! `manifest.json` written by `make-testdata.py` (`files[].path/size/sha256`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Protocol spoken to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// HTTP/1.1 GET (reqwest).
    Http,
    /// FTP passive RETR (our own client: USER/PASS, TYPE I, SIZE, EPSV/PASV, RETR).
    Ftp,
    /// SFTP over SSH (russh + russh-sftp), public key or password.
    Sftp,
    /// OCI distribution: manifest (index resolved to one platform), config and layer blobs.
    Oci,
}

impl Proto {
    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Ftp => "ftp",
            Proto::Sftp => "sftp",
            Proto::Oci => "oci",
        }
    }
}

/// An endpoint and how to talk to it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Protocol.
    pub proto: Proto,
    /// Base URL: `http://host:port[/prefix]`, `ftp://host:port`, `sftp://host:port`,
    /// or the registry's `http://host:port` for OCI.
    pub url: String,
    /// User name (FTP: anonymous when absent; SFTP: required).
    pub user: Option<String>,
    /// Password (HTTP basic auth, FTP, SFTP password auth).
    pub password: Option<String>,
    /// SFTP private key file (OpenSSH format).
    pub key: Option<PathBuf>,
    /// SFTP `known_hosts` file; the server's key must be listed for the host:port.
    pub known_hosts: Option<PathBuf>,
    /// SFTP: accept any host key (benchmarks against throw-away servers only).
    pub insecure_host_key: bool,
    /// SFTP: directory prepended to relative item paths (peers without chroot).
    pub sftp_root: Option<String>,
    /// OCI: platform picked from an image index (`os/arch`).
    pub platform: String,
    /// New connection (and login) for every download, like a fleet of one-shot devices;
    /// otherwise each simulated device keeps its connection between downloads.
    pub fresh_connections: bool,
    /// Time limit of one download attempt.
    pub timeout: Duration,
}

impl Target {
    /// `host:port` of the URL (no scheme, no path).
    pub fn authority(&self) -> Result<String> {
        let rest = self
            .url
            .split_once("://")
            .map(|(_, r)| r)
            .ok_or_else(|| Error::Config(format!("url {:?} has no scheme", self.url)))?;
        let auth = rest.split('/').next().unwrap_or_default();
        if auth.is_empty() {
            return Err(Error::Config(format!("url {:?} has no host", self.url)));
        }
        let default_port = match self.proto {
            Proto::Ftp => 21,
            Proto::Sftp => 22,
            Proto::Http | Proto::Oci => 80,
        };
        if auth
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            Ok(auth.to_string())
        } else {
            Ok(format!("{auth}:{default_port}"))
        }
    }

    /// Checks the combination of fields before a run starts.
    pub fn validate(&self) -> Result<()> {
        let scheme = self.url.split_once("://").map(|(s, _)| s).unwrap_or("");
        let ok = match self.proto {
            Proto::Http | Proto::Oci => scheme == "http" || scheme == "https",
            Proto::Ftp => scheme == "ftp",
            Proto::Sftp => scheme == "sftp",
        };
        if !ok {
            return Err(Error::Config(format!(
                "url {:?} does not fit protocol {}",
                self.url,
                self.proto.name()
            )));
        }
        self.authority()?;
        if self.proto == Proto::Sftp {
            if self.user.is_none() {
                return Err(Error::Config("sftp needs --user".into()));
            }
            if self.key.is_none() && self.password.is_none() {
                return Err(Error::Config("sftp needs --key or --password".into()));
            }
            if self.known_hosts.is_none() && !self.insecure_host_key {
                return Err(Error::Config(
                    "sftp needs --known-hosts (or --insecure-host-key)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// One thing to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Path below the target's root (`fw/fw-1MiB.bin`), or `repo:tag` / `repo@sha256:…` for OCI.
    pub path: String,
    /// Expected SHA-256 (lower-case hex); `None` only for OCI references.
    pub sha256: Option<String>,
    /// Expected size, when known (a shorter body is reported as `short_body`).
    pub size: Option<u64>,
}

/// The `manifest.json` of `make-testdata.py` (only the fields used here).
#[derive(Debug, Deserialize)]
pub struct DataManifest {
    /// Every file of the data set.
    pub files: Vec<ManifestFile>,
}

/// One file of a [`DataManifest`].
#[derive(Debug, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the data root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

impl DataManifest {
    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("read {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("parse {}: {e}", path.display())))
    }
}

/// Builds the item list of a run: each path with its digest from `sha256` (only with a single
/// path) or from the manifest. A path without a known digest is a configuration error, except
/// for OCI, which verifies against content addresses.
pub fn resolve_items(
    proto: Proto,
    paths: &[String],
    sha256: Option<&str>,
    manifest: Option<&DataManifest>,
) -> Result<Vec<Item>> {
    if paths.is_empty() {
        return Err(Error::Config("give at least one --path".into()));
    }
    if sha256.is_some() && paths.len() != 1 {
        return Err(Error::Config(
            "--sha256 goes with exactly one --path".into(),
        ));
    }
    let by_path: BTreeMap<&str, &ManifestFile> = manifest
        .map(|m| {
            m.files
                .iter()
                .map(|f| (f.path.trim_start_matches('/'), f))
                .collect()
        })
        .unwrap_or_default();
    paths
        .iter()
        .map(|p| {
            if let Some(h) = sha256 {
                let h = h.trim().to_ascii_lowercase();
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Error::Config(format!(
                        "--sha256 {h:?} is not 64 hex digits"
                    )));
                }
                let size = by_path.get(p.trim_start_matches('/')).map(|f| f.size);
                return Ok(Item {
                    path: p.clone(),
                    sha256: Some(h),
                    size,
                });
            }
            if proto == Proto::Oci {
                return Ok(Item {
                    path: p.clone(),
                    sha256: None,
                    size: None,
                });
            }
            match by_path.get(p.trim_start_matches('/')) {
                Some(f) => Ok(Item {
                    path: p.clone(),
                    sha256: Some(f.sha256.to_ascii_lowercase()),
                    size: Some(f.size),
                }),
                None => Err(Error::Config(format!(
                    "no expected sha256 for {p:?}: give --sha256 or a --manifest listing it"
                ))),
            }
        })
        .collect()
}

/// Streaming SHA-256 and byte count of one body.
#[derive(Default)]
pub struct Verifier {
    hasher: Sha256,
    bytes: u64,
}

impl Verifier {
    /// Feeds received bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Checks size (when known) and digest; returns the byte count.
    pub fn finish(self, path: &str, want_sha: &str, want_size: Option<u64>) -> Result<u64> {
        if let Some(want) = want_size {
            if self.bytes < want {
                return Err(Error::Short {
                    got: self.bytes,
                    want,
                });
            }
        }
        let got = hex::encode(self.hasher.finalize());
        if !got.eq_ignore_ascii_case(want_sha) {
            return Err(Error::Digest {
                path: path.to_string(),
                got,
                want: want_sha.to_string(),
            });
        }
        Ok(self.bytes)
    }
}

/// Reads a `KEY=value` env file (as written by `peers/start-peers.sh`: no quoting, `#` comments).
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("read {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_checks_digest_and_size() {
        let mut v = Verifier::default();
        v.update(b"abc");
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(v.finish("x", abc, Some(3)).unwrap(), 3);
        let mut v = Verifier::default();
        v.update(b"abd");
        assert_eq!(
            v.finish("x", abc, None).unwrap_err().kind(),
            "digest_mismatch"
        );
        let mut v = Verifier::default();
        v.update(b"ab");
        assert_eq!(
            v.finish("x", abc, Some(3)).unwrap_err().kind(),
            "short_body"
        );
    }

    #[test]
    fn items_need_a_digest_except_oci() {
        let m = DataManifest {
            files: vec![ManifestFile {
                path: "fw/a.bin".into(),
                size: 3,
                sha256: "AB".repeat(32),
            }],
        };
        let items = resolve_items(Proto::Http, &["/fw/a.bin".into()], None, Some(&m)).unwrap();
        assert_eq!(items[0].sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(items[0].size, Some(3));
        let err = resolve_items(Proto::Ftp, &["fw/b.bin".into()], None, Some(&m)).unwrap_err();
        assert_eq!(err.kind(), "config");
        assert!(resolve_items(Proto::Oci, &["r:v1".into()], None, None).is_ok());
        assert!(resolve_items(Proto::Http, &["a".into()], Some("zz"), None).is_err());
    }

    #[test]
    fn authority_adds_default_port() {
        let mut t = Target {
            proto: Proto::Ftp,
            url: "ftp://127.0.0.1".into(),
            user: None,
            password: None,
            key: None,
            known_hosts: None,
            insecure_host_key: false,
            sftp_root: None,
            platform: "linux/amd64".into(),
            fresh_connections: false,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(t.authority().unwrap(), "127.0.0.1:21");
        t.url = "ftp://127.0.0.1:2121/".into();
        assert_eq!(t.authority().unwrap(), "127.0.0.1:2121");
        t.url = "http://x".into();
        assert!(t.validate().is_err());
    }
}
