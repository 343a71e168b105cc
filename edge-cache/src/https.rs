//! The HTTPS certificate an edge takes from its origin (`http.tls_from_origin`,
//! `oci.tls_from_origin`).
//!
//! The key is made once and kept in `<data_dir>/https/key.pem` (0600, in a 0700 directory); it
//! never leaves the node. After `Welcome` the control stream sends the origin a CSR for it, and
//! the origin answers with a certificate from its CA for the names the site lists
//! (`ctl site https-names`), and sends a new one when they change. Each certificate is stored
//! in `cert.pem` and swapped into the listeners at once (connections already open keep theirs),
//! so a restart while the origin is unreachable serves the last one.
//!
//! Until the first certificate arrives, or while the site lists no names, the listeners serve a
//! self-signed placeholder: still HTTPS only (never plain HTTP on a listener configured for
//! TLS), refused by every client that verifies, and said so in the log.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sitecast_protocol::wire::HttpsCert;
use sitecast_runtime::https::TlsIdentity;

use crate::error::Error;
use crate::session::tls::write_atomic;

/// The origin-issued HTTPS identity of one edge.
pub struct OriginHttps {
    dir: PathBuf,
    key_pem: String,
    csr_pem: String,
    /// Shared with the listeners; replaced in place.
    identity: TlsIdentity,
    placeholder: TlsIdentity,
    /// Names of the certificate served (empty while the placeholder is).
    names: Mutex<Vec<String>>,
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what}: {e}"))
}

/// The DNS names and IP addresses a certificate is valid for.
fn cert_names(chain_pem: &str) -> Result<Vec<String>, Error> {
    let der = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .next()
        .ok_or_else(|| Error::Tls("no certificate in the chain".into()))?
        .map_err(|e| tls_err("certificate PEM", e))?;
    let params =
        rcgen::CertificateParams::from_ca_cert_der(&der).map_err(|e| tls_err("certificate", e))?;
    Ok(params
        .subject_alt_names
        .iter()
        .map(|n| match n {
            rcgen::SanType::DnsName(d) => d.as_str().to_owned(),
            rcgen::SanType::IpAddress(ip) => ip.to_string(),
            other => format!("{other:?}"),
        })
        .collect())
}

impl OriginHttps {
    /// Load the key (made on first use) and the last certificate from `<data_dir>/https/`.
    ///
    /// # Errors
    /// The directory or key cannot be created or read.
    pub fn open(data_dir: &Path, node: &str) -> Result<Self, Error> {
        let dir = data_dir.join("https");
        sitecast_runtime::datadir::create_private_dir(&dir)
            .map_err(|e| Error::io("create", &dir, e))?;
        let key_path = dir.join("key.pem");
        let key = if key_path.exists() {
            let pem =
                std::fs::read_to_string(&key_path).map_err(|e| Error::io("read", &key_path, e))?;
            rcgen::KeyPair::from_pem(&pem).map_err(|e| tls_err("https/key.pem", e))?
        } else {
            let key = rcgen::KeyPair::generate().map_err(|e| tls_err("generating a key", e))?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), true)?;
            key
        };
        let key_pem = key.serialize_pem();
        let mut params = rcgen::CertificateParams::new(vec![]).map_err(|e| tls_err("csr", e))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node);
        let csr_pem = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .map_err(|e| tls_err("csr", e))?;
        let mut own =
            rcgen::CertificateParams::new(vec![]).map_err(|e| tls_err("placeholder", e))?;
        own.distinguished_name.push(
            rcgen::DnType::CommonName,
            "sitecast edge waiting for its certificate from the origin",
        );
        let own = own
            .self_signed(&key)
            .map_err(|e| tls_err("placeholder certificate", e))?;
        let placeholder = TlsIdentity::from_pem(own.pem().as_bytes(), key_pem.as_bytes())
            .map_err(|e| tls_err("placeholder certificate", e))?;
        let identity = TlsIdentity::from_pem(own.pem().as_bytes(), key_pem.as_bytes())
            .map_err(|e| tls_err("placeholder certificate", e))?;
        let this = Self {
            dir,
            key_pem,
            csr_pem,
            identity,
            placeholder,
            names: Mutex::new(Vec::new()),
        };
        let cert_path = this.cert_path();
        if cert_path.exists() {
            let pem = std::fs::read_to_string(&cert_path)
                .map_err(|e| Error::io("read", &cert_path, e))?;
            match this.install(&pem) {
                Ok(names) => {
                    tracing::info!(names = ?names, "serving HTTPS with the certificate the origin issued last")
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %cert_path.display(), "ignoring the stored HTTPS certificate; waiting for a new one from the origin")
                }
            }
        } else {
            tracing::warn!("no HTTPS certificate from the origin yet: serving a self-signed placeholder until the origin sends one");
        }
        Ok(this)
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn names(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serve `chain_pem` with the key; its names.
    fn install(&self, chain_pem: &str) -> Result<Vec<String>, Error> {
        let names = cert_names(chain_pem)?;
        let id = TlsIdentity::from_pem(chain_pem.as_bytes(), self.key_pem.as_bytes())
            .map_err(|e| tls_err("certificate from the origin", e))?;
        self.identity.replace_with(&id);
        names.clone_into(&mut self.names());
        Ok(names)
    }

    /// The identity the HTTPS listeners serve (it follows every new certificate).
    #[must_use]
    pub fn identity(&self) -> TlsIdentity {
        self.identity.clone()
    }

    /// The CSR the control stream sends the origin.
    #[must_use]
    pub fn csr_pem(&self) -> &str {
        &self.csr_pem
    }

    /// Names of the certificate served now (empty while the placeholder is).
    #[cfg(test)]
    fn current_names(&self) -> Vec<String> {
        self.names().clone()
    }

    /// Serve and store a certificate from the origin (blocking: writes a file). An empty one
    /// (the site lists no names) brings back the placeholder.
    ///
    /// # Errors
    /// The certificate does not parse or is not for this key (nothing changes), or it cannot be
    /// stored.
    pub fn apply(&self, cert: &HttpsCert) -> Result<(), Error> {
        if cert.chain_pem.is_empty() {
            self.identity.replace_with(&self.placeholder);
            self.names().clear();
            match std::fs::remove_file(self.cert_path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("remove", self.cert_path(), e))
                }
                _ => {}
            }
            tracing::warn!("the site lists no HTTPS names (ctl site https-names): serving the self-signed placeholder");
            return Ok(());
        }
        let names = self.install(&cert.chain_pem)?;
        write_atomic(&self.cert_path(), cert.chain_pem.as_bytes(), true)?;
        tracing::info!(names = ?names, "HTTPS certificate from the origin installed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA that signs `csr_pem` for `names`, as the origin does.
    struct TestCa {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    impl TestCa {
        fn new() -> Self {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let cert = p.self_signed(&key).unwrap();
            Self { cert, key }
        }

        fn sign(&self, csr_pem: &str, names: &[&str]) -> HttpsCert {
            let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
            csr.params = rcgen::CertificateParams::new(
                names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
            )
            .unwrap();
            let leaf = csr.signed_by(&self.cert, &self.key).unwrap();
            HttpsCert {
                names: names.iter().map(|n| (*n).to_owned()).collect(),
                chain_pem: format!("{}{}", leaf.pem(), self.cert.pem()),
            }
        }
    }

    #[test]
    fn certificates_are_installed_kept_and_refused_when_not_for_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let h = OriginHttps::open(dir.path(), "e1").unwrap();
        assert!(h.current_names().is_empty(), "placeholder first");
        let key_before = std::fs::read(dir.path().join("https/key.pem")).unwrap();

        h.apply(&ca.sign(h.csr_pem(), &["edge.example", "127.0.0.1"]))
            .unwrap();
        assert_eq!(h.current_names(), ["edge.example", "127.0.0.1"]);

        // A restart serves the stored certificate with the same key.
        let h = OriginHttps::open(dir.path(), "e1").unwrap();
        assert_eq!(h.current_names(), ["edge.example", "127.0.0.1"]);
        assert_eq!(
            std::fs::read(dir.path().join("https/key.pem")).unwrap(),
            key_before
        );

        // A certificate for another key is refused and changes nothing.
        let other = tempfile::tempdir().unwrap();
        let stranger = OriginHttps::open(other.path(), "e2").unwrap();
        let e = h
            .apply(&ca.sign(stranger.csr_pem(), &["evil.example"]))
            .unwrap_err();
        assert!(matches!(e, Error::Tls(_)), "{e}");
        assert_eq!(h.current_names(), ["edge.example", "127.0.0.1"]);
        let e = h
            .apply(&HttpsCert {
                names: vec![],
                chain_pem: "garbage".into(),
            })
            .unwrap_err();
        assert!(matches!(e, Error::Tls(_)), "{e}");

        // No names: back to the placeholder, and nothing stored to come back after a restart.
        h.apply(&HttpsCert {
            names: vec![],
            chain_pem: String::new(),
        })
        .unwrap();
        assert!(h.current_names().is_empty());
        assert!(!dir.path().join("https/cert.pem").exists());
        assert!(OriginHttps::open(dir.path(), "e1")
            .unwrap()
            .current_names()
            .is_empty());

        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("https"), 0o700);
        assert_eq!(mode("https/key.pem"), 0o600);
    }
}
