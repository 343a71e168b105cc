//! The origin's certificate authority (ECDSA P-256, rcgen) and the QUIC server's TLS config.
//!
//! Kept in `<data_dir>/ca/ca.key` (mode 0600) and `ca.pem`, created on first start and never
//! rewritten. The server certificate for [`ORIGIN_SERVER_NAME`] is issued at every start with a
//! fresh key (it is never stored); the server sends the chain `[server, ca]`. Node certificates
//! are issued from enrollment CSRs with CN `<site>/<node>`, client-auth only, valid 10 years.
//! Edge HTTPS certificates are issued from the edges' CSRs for their site's HTTPS names,
//! server-auth only, valid one year.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sitecast_runtime::tls::{cert_fingerprint, JoinToken, ALPN, ORIGIN_SERVER_NAME};

use crate::error::{Error, Result};

/// The origin CA, loaded and ready to sign.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate as stored (PEM).
    pub(crate) pem: String,
    /// Its DER.
    pub(crate) der: CertificateDer<'static>,
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what}: {e}"))
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * years);
}

impl Ca {
    /// Load the CA from `dir`, creating it on first start.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self> {
        sitecast_runtime::datadir::create_private_dir(dir)
            .map_err(|e| Error::io("create", dir, e))?;
        let key_path = dir.join("ca.key");
        let pem_path = dir.join("ca.pem");
        if !key_path.exists() || !pem_path.exists() {
            if key_path.exists() != pem_path.exists() {
                return Err(Error::Tls(format!(
                    "{} has only one of ca.key and ca.pem; restore the missing file or remove both to create a new CA (enrolled nodes must then re-enroll)",
                    dir.display()
                )));
            }
            let key = KeyPair::generate().map_err(|e| tls_err("generate CA key", e))?;
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, "sitecast origin CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut params, 30);
            let cert = params
                .self_signed(&key)
                .map_err(|e| tls_err("self-sign CA", e))?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            write_atomic(&pem_path, cert.pem().as_bytes())?;
            tracing::info!(dir = %dir.display(), "created origin CA");
        }
        let key_pem =
            std::fs::read_to_string(&key_path).map_err(|e| Error::io("read", &key_path, e))?;
        let pem =
            std::fs::read_to_string(&pem_path).map_err(|e| Error::io("read", &pem_path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| tls_err("parse ca.key", e))?;
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .ok_or_else(|| Error::Tls("ca.pem holds no certificate".into()))?
            .map_err(|e| tls_err("parse ca.pem", e))?;
        let params =
            CertificateParams::from_ca_cert_pem(&pem).map_err(|e| tls_err("parse ca.pem", e))?;
        // Re-signing the parsed params gives an issuer handle with the CA's name and key; the
        // stored ca.pem stays the certificate everyone pins.
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_err("load CA", e))?;
        Ok(Self {
            cert,
            key,
            pem,
            der,
        })
    }

    /// SHA-256 of the CA certificate's DER (pinned in join tokens).
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        cert_fingerprint(&self.der)
    }

    /// The join token text for `secret`.
    pub(crate) fn join_token(&self, secret: &str) -> String {
        JoinToken {
            ca_sha256: self.fingerprint(),
            secret: secret.to_owned(),
        }
        .to_string()
    }

    /// Issue a node certificate from a CSR (PEM); returns (cert PEM, cert DER fingerprint).
    pub(crate) fn sign_csr(
        &self,
        csr_pem: &str,
        site: &str,
        node: &str,
    ) -> Result<(String, [u8; 32])> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::BadRequest(format!("invalid CSR: {e}")))?;
        let p = &mut csr.params;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, format!("{site}/{node}"));
        p.subject_alt_names = Vec::new();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.custom_extensions = Vec::new();
        p.use_authority_key_identifier_extension = true;
        validity(p, 10);
        let cert = csr
            .signed_by(&self.cert, &self.key)
            .map_err(|e| tls_err("sign node certificate", e))?;
        Ok((cert.pem(), cert_fingerprint(cert.der())))
    }

    /// A fresh HTTPS server certificate for `names` (DNS names or IP addresses), valid one
    /// year, with a fresh key: `(chain PEM [leaf, CA], key PEM)`. Issued at every start and
    /// never stored; clients verify it with `ca.pem`.
    pub(crate) fn issue_https(&self, names: &[String]) -> Result<(String, String)> {
        let key = KeyPair::generate().map_err(|e| tls_err("generate HTTPS key", e))?;
        let cert = https_params(names)?
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|e| tls_err("sign HTTPS certificate", e))?;
        Ok((format!("{}{}", cert.pem(), self.pem), key.serialize_pem()))
    }

    /// An edge's HTTPS certificate for the key of `csr_pem` and the site's `names` (whatever
    /// names the request itself asks for), valid one year: the chain PEM `[leaf, CA]`.
    pub(crate) fn sign_https_csr(&self, csr_pem: &str, names: &[String]) -> Result<String> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::BadRequest(format!("invalid CSR: {e}")))?;
        csr.params = https_params(names)?;
        let cert = csr
            .signed_by(&self.cert, &self.key)
            .map_err(|e| tls_err("sign HTTPS certificate", e))?;
        Ok(format!("{}{}", cert.pem(), self.pem))
    }

    /// The QUIC server's rustls config: a fresh server certificate, client certificates
    /// optional but, when present, verified against this CA.
    pub(crate) fn server_tls(&self) -> Result<rustls::ServerConfig> {
        let key = KeyPair::generate().map_err(|e| tls_err("generate server key", e))?;
        let mut params = CertificateParams::new(vec![ORIGIN_SERVER_NAME.to_owned()])
            .map_err(|e| tls_err("server params", e))?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, ORIGIN_SERVER_NAME);
        params.subject_alt_names = vec![SanType::DnsName(
            ORIGIN_SERVER_NAME
                .try_into()
                .map_err(|e| tls_err("server name", e))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 1);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|e| tls_err("sign server certificate", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.der.clone())
            .map_err(|e| tls_err("CA root", e))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls_err("client verifier", e))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("tls versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone(), self.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| tls_err("server certificate", e))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        Ok(tls)
    }
}

/// A server-auth leaf for `names` (DNS names or IP addresses; the first is the CN), one year.
fn https_params(names: &[String]) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("sitecast", String::as_str),
    );
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| tls_err("certificate name", e)),
        })
        .collect::<Result<_>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 1);
    Ok(params)
}

/// Write a file readable only by its owner (temp + fsync + rename).
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    write_with_mode(path, data, 0o600)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_with_mode(path, data, 0o644)
}

fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp: PathBuf = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(mode);
    let mut f = opts.open(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_and_signs_csrs() {
        let dir = tempfile::tempdir().unwrap();
        let a = Ca::load_or_create(dir.path()).unwrap();
        let b = Ca::load_or_create(dir.path()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec!["x".into()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let (pem, fp) = b.sign_csr(&csr.pem().unwrap(), "s1", "n1").unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(cert_fingerprint(&der), fp);
        assert!(b.sign_csr("garbage", "s1", "n1").is_err());
        let chain = b
            .sign_https_csr(
                &csr.pem().unwrap(),
                &["edge.example".into(), "10.1.2.3".into()],
            )
            .unwrap();
        let certs: Vec<_> = rustls_pemfile::certs(&mut chain.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(certs.len(), 2, "leaf and CA");
        assert_eq!(certs[1], b.der);
        let leaf = rcgen::CertificateParams::from_ca_cert_der(&certs[0]).unwrap();
        assert_eq!(
            leaf.subject_alt_names,
            vec![
                SanType::DnsName("edge.example".try_into().unwrap()),
                SanType::IpAddress("10.1.2.3".parse().unwrap())
            ],
            "the site's names, not the CSR's"
        );
        assert!(b.sign_https_csr("garbage", &[]).is_err());
        b.server_tls().unwrap();
        assert!(b.join_token("abc").starts_with("scj1."));
    }
}
