//! Names and formats both ends of the QUIC session agree on.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// ALPN protocol id of the edge–origin session.
pub const ALPN: &[u8] = b"sitecast/1";

/// The DNS name in the origin's server certificate; edges always use it as the server name and
/// authenticate the origin by its CA, so the origin's address may change freely.
pub const ORIGIN_SERVER_NAME: &str = "origin.sitecast.internal";

/// SHA-256 of a DER certificate: how the origin recognises an enrolled node, and how a join
/// token pins the origin's CA.
#[must_use]
pub fn cert_fingerprint(der: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(der).into()
}

/// A join token: `scj1.<sha256 hex of the origin CA certificate>.<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the origin CA's DER certificate.
    pub ca_sha256: [u8; 32],
    /// The secret the origin holds a hash of.
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JoinToken(ca {}…, secret redacted)",
            &hex::encode(self.ca_sha256)[..12]
        )
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scj1.{}.{}", hex::encode(self.ca_sha256), self.secret)
    }
}

/// Why a join token does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid join token: {0} (expected scj1.<64 hex digits>.<secret>)")]
pub struct JoinTokenError(&'static str);

impl FromStr for JoinToken {
    type Err = JoinTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().splitn(3, '.');
        if parts.next() != Some("scj1") {
            return Err(JoinTokenError("unknown prefix"));
        }
        let ca = parts.next().ok_or(JoinTokenError("no CA pin"))?;
        let secret = parts.next().ok_or(JoinTokenError("no secret"))?;
        let mut ca_sha256 = [0u8; 32];
        hex::decode_to_slice(ca, &mut ca_sha256).map_err(|_| JoinTokenError("bad CA pin"))?;
        if secret.is_empty()
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(JoinTokenError("bad secret"));
        }
        Ok(Self {
            ca_sha256,
            secret: secret.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        let t = JoinToken {
            ca_sha256: cert_fingerprint(b"ca"),
            secret: "abcDEF-_09".into(),
        };
        assert_eq!(t.to_string().parse::<JoinToken>().unwrap(), t);
        assert!(!format!("{t:?}").contains("abcDEF"));
        for bad in [
            "",
            "scj1",
            "scj2.00.x",
            "scj1.zz.x",
            &format!("scj1.{}.", hex::encode([0u8; 32])),
        ] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad}");
        }
    }
}
