//! Content identifiers: fixed-size newtypes, one per kind, so a chunk id can never be passed
//! where a blob digest is expected.
//!
//! Every id displays as lowercase hex (full length with `{}`, a short prefix with `{:?}`), parses
//! from hex, and serializes as a hex string in human-readable formats (JSON) and as raw bytes in
//! binary ones (the wire codec).

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: expected {len} lowercase hex digits")]
pub struct IdParseError {
    kind: &'static str,
    len: usize,
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The id made of these 32 bytes.
            #[must_use]
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw 32 bytes.
            #[must_use]
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Full lowercase hex (64 digits).
            #[must_use]
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 12 hex digits, for logs.
            #[must_use]
            pub fn short(&self) -> String {
                hex::encode(&self.0[..6])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = IdParseError { kind: $kind, len: 64 };
                if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(err);
                }
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|_| err)?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(D::Error::custom)
                } else {
                    Ok(Self(<[u8; 32]>::deserialize(d)?))
                }
            }
        }
    };
}

id_type!(
    /// A chunk's name: the BLAKE3 hash of its bytes.
    ChunkId,
    "chunk id"
);
id_type!(
    /// A blob's name: the BLAKE3 hash of all its bytes.
    BlobId,
    "blob id"
);
id_type!(
    /// The SHA-256 of a blob's bytes: what devices and OCI clients check.
    Sha256Digest,
    "sha256 digest"
);

impl ChunkId {
    /// The id of these bytes.
    #[must_use]
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// Whether `data` hashes to this id.
    #[must_use]
    pub fn matches(&self, data: &[u8]) -> bool {
        blake3::hash(data) == blake3::Hash::from_bytes(self.0)
    }
}

impl BlobId {
    /// The id of a whole blob held in memory.
    #[must_use]
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

impl Sha256Digest {
    /// The SHA-256 of these bytes.
    #[must_use]
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(data).into())
    }

    /// The OCI form, `sha256:<hex>`.
    #[must_use]
    pub fn to_oci(&self) -> String {
        format!("sha256:{}", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_text() {
        let id = ChunkId::of(b"hello");
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        assert!("abc".parse::<ChunkId>().is_err());
        assert!(id.to_hex().to_uppercase().parse::<ChunkId>().is_err());
        assert!(format!("{:?}", id).starts_with("ChunkId("));
    }

    #[test]
    fn json_is_hex_and_binary_is_raw() {
        let id = BlobId::of(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        let bin = postcard::to_stdvec(&id).unwrap();
        assert_eq!(bin.len(), 32);
        assert_eq!(postcard::from_bytes::<BlobId>(&bin).unwrap(), id);
    }
}
