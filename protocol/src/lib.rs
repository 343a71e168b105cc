//! sitecast's content model and wire protocol.
//!
//! Pure types and functions: content-defined chunking ([`Chunker`]), content ids ([`ChunkId`],
//! [`BlobId`], [`Sha256Digest`]), catalog paths ([`CatalogPath`]), blob recipes and artifact
//! manifests, site configuration, and the versioned wire messages with their frame codec
//! ([`wire`]). No sockets, files or async runtime: the origin and the edge do the I/O.
//!
//! ```
//! use sitecast_protocol::{chunk_all, wire, CatalogPath, ChunkId};
//!
//! let data = vec![7u8; 300_000];
//! let (cuts, recipe) = chunk_all(&data);
//! assert_eq!(recipe.len, 300_000);
//! assert!(cuts.iter().all(|c| c.id == ChunkId::of(&c.data)));
//!
//! let frame = wire::encode(&wire::RecipeRequest { blob: recipe.blake3 }.into());
//! let (msg, used) = wire::decode(&frame).unwrap();
//! assert_eq!(used, frame.len());
//! assert_eq!(msg.name(), "RecipeRequest");
//!
//! assert!(CatalogPath::parse("/fw/../etc/passwd").is_err());
//! ```
//!
//! # Errors
//! Each module has its own small error type ([`PathError`], [`RecipeError`],
//! [`wire::WireError`], [`IdParseError`]); they carry enough to render a 400 or to close a
//! stream with a clear reason, and none wraps another crate's error.

mod access;
mod chunker;
mod ids;
pub mod oci;
mod path;
mod recipe;
pub mod wire;

pub use access::{Permissions, Principal, SiteConfig, SiteGrant, SiteUser};
pub use chunker::{
    chunk_all, BlobHasher, BlobHashes, Chunker, Cut, Cutter, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK,
};
pub use ids::{BlobId, ChunkId, IdParseError, Sha256Digest};
pub use path::{CatalogPath, PathError, MAX_PATH_LEN, MAX_SEGMENT_LEN};
pub use recipe::{ArtifactManifest, BlobRecipe, ChunkRef, RecipeError};

/// Version string of this build, sent in hellos.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
