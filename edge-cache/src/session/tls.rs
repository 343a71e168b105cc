//! The node's identity and the TLS configurations of the two kinds of connection.
//!
//! - Identity lives in `<data_dir>/identity`: `node.key` (PKCS#8 PEM, P-256, mode 0600),
//!   `node.pem` (the certificate the origin signed) and `ca.pem` (the origin CA). Files are
//!   written to a temporary name and renamed, so a crash never leaves half an identity; the
//!   key is created once and reused if enrollment has to be retried.
//! - Enrollment connections present no client certificate and verify the origin with
//!   [`PinnedCaVerifier`]: the chain must contain a certificate whose DER SHA-256 is the pin
//!   from the join token, and the server certificate must chain to it (WebPKI, with that
//!   certificate as the only root) for [`ORIGIN_SERVER_NAME`].
//! - Enrolled connections present `node.pem` and trust only `ca.pem`.
//!
//! Both use TLS 1.3 only, the ring provider, and ALPN [`ALPN`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sitecast_runtime::tls::{cert_fingerprint, ALPN};

use crate::config::QuicConfig;
use crate::error::Error;

#[allow(unused_imports)] // named in the module docs
use sitecast_runtime::tls::ORIGIN_SERVER_NAME;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what}: {e}"))
}

/// Verifies the origin during enrollment against the CA pinned in the join token.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl PinnedCaVerifier {
    /// A verifier accepting chains that contain the CA whose DER SHA-256 is `pin`.
    #[must_use]
    pub fn new(pin: [u8; 32]) -> Self {
        Self {
            pin,
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| cert_fingerprint(c.as_ref()) == self.pin)
        else {
            return Err(rustls::Error::General(
                "the origin's certificate chain does not contain the CA pinned in the join token"
                    .into(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(format!("pinned CA unusable: {e}")))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The node's enrolled identity.
pub(crate) struct Identity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub ca: CertificateDer<'static>,
}

/// Files of the identity directory.
pub(crate) struct IdentityDir {
    dir: PathBuf,
}

pub(crate) fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    Ok(())
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let text = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let certs = rustls_pemfile::certs(&mut text.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&format!("{}", path.display()), e))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

impl IdentityDir {
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("identity"),
        }
    }

    /// Where a re-enrollment builds the next identity before it replaces this one.
    pub(crate) fn staging(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("identity.new"),
        }
    }

    fn token_path(&self) -> PathBuf {
        self.dir.join("join-token.sha256")
    }

    /// Whether this identity was enrolled with `token` (its SHA-256 is kept beside it).
    pub(crate) fn enrolled_with(&self, token: &str) -> bool {
        std::fs::read_to_string(self.token_path()).is_ok_and(|h| h.trim() == token_hash(token))
    }

    /// Remember that this identity was enrolled with `token`.
    pub(crate) fn record_token(&self, token: &str) -> Result<(), Error> {
        write_atomic(&self.token_path(), token_hash(token).as_bytes(), true)
    }

    /// Replace the identity in `data_dir` by this (staged, enrolled) one, keeping the SSH
    /// host key devices may have pinned. A crash in between leaves either identity whole
    /// (`load` finishes a swap it finds half done).
    pub(crate) fn replace(self, data_dir: &Path) -> Result<(), Error> {
        let live = data_dir.join("identity");
        let host_key = live.join("ssh_host_ed25519_key");
        if host_key.exists() {
            let to = self.dir.join("ssh_host_ed25519_key");
            std::fs::copy(&host_key, &to).map_err(|e| Error::io("copy", &to, e))?;
        }
        let old = data_dir.join("identity.old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&live, &old).map_err(|e| Error::io("rename", &live, e))?;
        std::fs::rename(&self.dir, &live).map_err(|e| Error::io("rename", &self.dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io("remove", &old, e))
    }

    /// Finish a [`IdentityDir::replace`] interrupted between its renames.
    pub(crate) fn recover(data_dir: &Path) {
        let (live, new, old) = (
            data_dir.join("identity"),
            data_dir.join("identity.new"),
            data_dir.join("identity.old"),
        );
        if !live.exists() && new.join("node.pem").exists() && old.exists() {
            let _ = std::fs::rename(&new, &live);
        }
        if live.exists() {
            let _ = std::fs::remove_dir_all(&old);
        }
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("node.key")
    }
    fn cert_path(&self) -> PathBuf {
        self.dir.join("node.pem")
    }
    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The enrolled identity, or `None` if the node has not enrolled yet.
    pub(crate) fn load(&self) -> Result<Option<Identity>, Error> {
        if !self.cert_path().exists() || !self.ca_path().exists() || !self.key_path().exists() {
            return Ok(None);
        }
        let certs = read_pem_certs(&self.cert_path())?;
        let ca = read_pem_certs(&self.ca_path())?.remove(0);
        let key_text =
            std::fs::read(self.key_path()).map_err(|e| Error::io("read", self.key_path(), e))?;
        let key = rustls_pemfile::private_key(&mut key_text.as_slice())
            .map_err(|e| tls_err("node.key", e))?
            .ok_or_else(|| Error::Tls("node.key holds no private key".into()))?;
        Ok(Some(Identity { certs, key, ca }))
    }

    /// The node's key pair, created (mode 0600) on first use.
    pub(crate) fn key_pair(&self) -> Result<rcgen::KeyPair, Error> {
        sitecast_runtime::datadir::create_private_dir(&self.dir)
            .map_err(|e| Error::io("create", &self.dir, e))?;
        let path = self.key_path();
        if path.exists() {
            let pem = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
            return rcgen::KeyPair::from_pem(&pem).map_err(|e| tls_err("node.key", e));
        }
        let key = rcgen::KeyPair::generate().map_err(|e| tls_err("generating a key", e))?;
        write_atomic(&path, key.serialize_pem().as_bytes(), true)?;
        Ok(key)
    }

    /// A PEM CSR for `node` signed by the node key.
    pub(crate) fn csr(&self, node: &str) -> Result<String, Error> {
        let key = self.key_pair()?;
        let mut params = rcgen::CertificateParams::new(vec![]).map_err(|e| tls_err("csr", e))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node);
        params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .map_err(|e| tls_err("csr", e))
    }

    /// Store what the origin sent at enrollment (checked to parse first).
    pub(crate) fn store(&self, cert_pem: &str, ca_pem: &str) -> Result<(), Error> {
        for (what, pem) in [("certificate", cert_pem), ("CA certificate", ca_pem)] {
            let n = rustls_pemfile::certs(&mut pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(&format!("enrollment {what}"), e))?
                .len();
            if n == 0 {
                return Err(Error::Tls(format!("enrollment answer holds no {what}")));
            }
        }
        write_atomic(&self.ca_path(), ca_pem.as_bytes(), false)?;
        write_atomic(&self.cert_path(), cert_pem.as_bytes(), false)
    }
}

fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.trim().as_bytes()))
}

fn transport(q: &QuicConfig) -> Result<quinn::TransportConfig, Error> {
    let var = |v: u64| quinn::VarInt::from_u64(v).map_err(|e| Error::Config(e.to_string()));
    let mut t = quinn::TransportConfig::default();
    t.receive_window(var(q.receive_window)?)
        .stream_receive_window(var(q.stream_receive_window)?)
        .keep_alive_interval(Some(q.keep_alive))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(q.idle_timeout)
                .map_err(|e| Error::Config(e.to_string()))?,
        ));
    Ok(t)
}

fn finish(mut tls: rustls::ClientConfig, q: &QuicConfig) -> Result<quinn::ClientConfig, Error> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| tls_err("quic", e))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(transport(q)?));
    Ok(cfg)
}

fn builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, Error> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("tls", e))
}

/// Client config for enrollment: no client certificate, origin pinned by `pin`.
pub(crate) fn enroll_config(pin: [u8; 32], q: &QuicConfig) -> Result<quinn::ClientConfig, Error> {
    let tls = builder()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier::new(pin)))
        .with_no_client_auth();
    finish(tls, q)
}

/// Client config for an enrolled node.
pub(crate) fn node_config(id: Identity, q: &QuicConfig) -> Result<quinn::ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    roots.add(id.ca).map_err(|e| tls_err("ca.pem", e))?;
    let tls = builder()?
        .with_root_certificates(roots)
        .with_client_auth_cert(id.certs, id.key)
        .map_err(|e| tls_err("node certificate", e))?;
    finish(tls, q)
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default, clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    struct Pki {
        ca_der: CertificateDer<'static>,
        server_der: CertificateDer<'static>,
    }

    fn pki(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test ca");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        Pki {
            ca_der: ca.der().clone(),
            server_der: server.der().clone(),
        }
    }

    fn verify(
        v: &PinnedCaVerifier,
        p: &Pki,
        chain: &[CertificateDer<'static>],
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(ORIGIN_SERVER_NAME).unwrap();
        v.verify_server_cert(&p.server_der, chain, &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn pinned_verifier_accepts_only_the_pinned_ca() {
        let good = pki(ORIGIN_SERVER_NAME);
        let pin = cert_fingerprint(good.ca_der.as_ref());
        let v = PinnedCaVerifier::new(pin);
        verify(&v, &good, &[good.ca_der.clone()]).unwrap();

        // The pinned CA missing from the chain.
        let err = verify(&v, &good, &[]).unwrap_err();
        assert!(err.to_string().contains("pinned"), "{err}");

        // Another CA's chain, even complete and valid in itself.
        let other = pki(ORIGIN_SERVER_NAME);
        assert!(verify(&v, &other, &[other.ca_der.clone()]).is_err());

        // The pinned CA sent along with a server certificate it did not sign.
        assert!(verify(&v, &other, &[good.ca_der.clone()]).is_err());

        // The right CA, but a certificate for another name.
        let wrong_name = pki("evil.example");
        let v2 = PinnedCaVerifier::new(cert_fingerprint(wrong_name.ca_der.as_ref()));
        assert!(verify(&v2, &wrong_name, &[wrong_name.ca_der.clone()]).is_err());
    }

    #[test]
    fn identity_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let id = IdentityDir::new(dir.path());
        assert!(id.load().unwrap().is_none());
        let csr = id.csr("edge-1").unwrap();
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        let k1 = id.key_pair().unwrap().serialize_pem();
        let k2 = id.key_pair().unwrap().serialize_pem();
        assert_eq!(k1, k2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("identity/node.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(id.store("garbage", "garbage").is_err());
        assert!(id.load().unwrap().is_none());
    }
}
