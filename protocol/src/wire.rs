//! Wire messages between edge and origin, and their frame codec.
//!
//! Every message travels in one frame:
//!
//! ```text
//! magic "SCW" (3) | version (1) | kind (1) | flags (1, zero) | payload length (u32 BE) | payload
//! ```
//!
//! The payload is the message body in postcard, except [`ChunkData`], whose payload is the
//! 32-byte chunk id followed by the raw chunk bytes (so a sender can write the bytes straight
//! from its store, see [`chunk_data_header`]). A frame with a wrong magic, an unknown version or
//! kind, non-zero flags, a payload over [`MAX_FRAME`], trailing bytes, or a body that does not
//! decode is rejected with a [`WireError`]; decoding never panics.
//!
//! Streams (all QUIC bidirectional streams opened by the edge):
//! - enrollment (no client certificate): [`Enroll`] → [`Enrolled`] or [`ErrorMsg`];
//! - control: [`Hello`] → [`Welcome`], then the origin sends [`SiteConfigMsg`] and
//!   [`DesiredState`] whenever they change, and the edge sends [`StatusReport`]s;
//! - recipe: [`RecipeRequest`] → [`RecipeResponse`] or [`ErrorMsg`];
//! - chunks: [`ChunkRequest`] → one [`ChunkData`] per requested id, in order, or an [`ErrorMsg`];
//! - image metadata: after a [`DesiredState`], the origin sends the site's [`ImageState`] on the
//!   control stream (only to sites that were ever pushed an image, so older edges without
//!   images keep working);
//! - on demand: [`OciResolve`] → [`OciResolved`], and [`OciBlobRequest`] → [`RecipeResponse`],
//!   or an [`ErrorMsg`] (`not_found` when neither the origin nor its upstream has it);
//!   [`OciReferrers`] → [`OciReferrersList`]; [`OciTags`] → [`OciTagList`];
//! - HTTPS certificates: an edge that takes its HTTPS certificate from the origin sends an
//!   [`HttpsCertRequest`] on the control stream after `Welcome`; the origin answers
//!   [`HttpsCert`] for the names of its site, and sends a new one whenever those names change
//!   (only to edges that asked, so older edges keep working);
//! - transfer holds: an edge that honours them sends [`HoldsRequest`] on the control stream
//!   after `Welcome`; the origin sends [`Holds`] (the desired blobs not to fetch now) at once
//!   and whenever they change, and cuts a chunk stream of a blob that becomes held with
//!   [`ErrorCode::Held`] at a chunk boundary. Older edges get `internal` instead (and retry).

use serde::{Deserialize, Serialize};

use crate::access::SiteConfig;
use crate::ids::{BlobId, ChunkId, Sha256Digest};
use crate::path::CatalogPath;
use crate::recipe::{ArtifactManifest, BlobRecipe};

/// Frame magic.
pub const MAGIC: [u8; 3] = *b"SCW";
/// The one frame version this build speaks.
pub const WIRE_VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 10;
/// Largest payload accepted (a desired state for a large catalog fits; a chunk is far smaller).
pub const MAX_FRAME: u32 = 64 * 1024 * 1024;
/// Most chunk ids one [`ChunkRequest`] may name.
pub const MAX_CHUNKS_PER_REQUEST: usize = 4096;

/// What went wrong decoding a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not a sitecast frame.
    #[error("bad frame magic {0:02x?}")]
    BadMagic([u8; 3]),
    /// A version this build does not speak.
    #[error("unsupported wire version {0} (this build speaks {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// A message kind this build does not know.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// Reserved flags set.
    #[error("reserved frame flags {0:#04x} set")]
    BadFlags(u8),
    /// Payload longer than [`MAX_FRAME`].
    #[error("frame payload of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(u32),
    /// Fewer bytes than the header announced.
    #[error("truncated frame: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Body does not decode as the announced kind.
    #[error("malformed {kind} message: {reason}")]
    Malformed {
        /// Which message.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// Chunk bytes do not hash to their id.
    #[error("chunk {0} does not match its id")]
    ChunkMismatch(String),
    /// A valid frame arrived where another was expected.
    #[error("unexpected {got} message, expected {expected}")]
    Unexpected {
        /// What arrived.
        got: &'static str,
        /// What the stream expected.
        expected: &'static str,
    },
}

/// Error codes carried by [`ErrorMsg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Join token unknown, used or expired.
    BadToken,
    /// The connection is not authenticated for this.
    Unauthorized,
    /// The requested blob or chunk is not at the origin (deleted since).
    NotFound,
    /// Request malformed or over limits.
    BadRequest,
    /// Origin-side failure; retry later.
    Internal,
    /// The blob is held (outside its push's or site's transfer window, or before its start):
    /// not a failure; the edge waits for [`Holds`] to release it. Sent only to edges that
    /// sent [`HoldsRequest`].
    Held,
}

/// A refusal, with a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// Class of error.
    pub code: ErrorCode,
    /// What happened.
    pub message: String,
}

/// A message that expects one answer.
pub trait Request {
    /// What the answer is.
    type Response;
}

/// Edge → origin, first message of an enrollment connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enroll {
    /// The one-time join token from `site create`.
    pub token: String,
    /// The node's chosen name (unique within the site).
    pub node: String,
    /// PEM certificate signing request for the node's key.
    pub csr_pem: String,
}

/// Origin → edge: the node's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The site the token belonged to.
    pub site: String,
    /// The node's certificate, signed by the origin CA.
    pub cert_pem: String,
    /// The origin CA certificate.
    pub ca_pem: String,
}

impl Request for Enroll {
    type Response = Enrolled;
}

/// Edge → origin, first message on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Software version of the edge.
    pub software: String,
    /// Revision of the site config the edge holds (0 for none).
    pub config_revision: u64,
    /// Revision of the desired state the edge holds (0 for none).
    pub desired_revision: u64,
}

/// Origin → edge: the session is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The edge's site.
    pub site: String,
    /// The edge's node name.
    pub node: String,
    /// Software version of the origin.
    pub software: String,
}

impl Request for Hello {
    type Response = Welcome;
}

/// Origin → edge: the site's users and grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteConfigMsg {
    /// The configuration.
    pub config: SiteConfig,
}

/// Origin → edge: everything the site should hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Increases with every change at the origin.
    pub revision: u64,
    /// Every artifact the site should serve.
    pub artifacts: Vec<ArtifactManifest>,
}

/// Where an edge is with one artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactState {
    /// Known, not started.
    Queued,
    /// Chunks being fetched.
    Fetching,
    /// Every chunk present and verified; served.
    Complete,
    /// Stopped on an error (see the reason); retried later.
    Failed,
}

/// Progress of one artifact at an edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactStatus {
    /// Artifact path.
    pub path: CatalogPath,
    /// Its blob.
    pub blob: BlobId,
    /// Where it is.
    pub state: ArtifactState,
    /// Blob length.
    pub bytes_total: u64,
    /// Bytes the edge lacked when it started (after dedup against what it held).
    pub bytes_needed: u64,
    /// Of those, bytes received and stored so far.
    pub bytes_fetched: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Edge → origin: progress for the current desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The desired-state revision this report is about.
    pub desired_revision: u64,
    /// One entry per artifact that changed since the last report (or all, on connect).
    pub artifacts: Vec<ArtifactStatus>,
}

/// Edge → origin: send me this blob's recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeRequest {
    /// The blob.
    pub blob: BlobId,
}

/// Origin → edge: the recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeResponse {
    /// The recipe.
    pub recipe: BlobRecipe,
}

impl Request for RecipeRequest {
    type Response = RecipeResponse;
}

/// Edge → origin: send me these chunks (all belonging to `blob`, for accounting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// The blob the chunks are for.
    pub blob: BlobId,
    /// The chunks, at most [`MAX_CHUNKS_PER_REQUEST`].
    pub chunks: Vec<ChunkId>,
}

/// Origin → edge: one chunk's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkData {
    /// The chunk's id.
    pub id: ChunkId,
    /// Its bytes.
    pub data: Vec<u8>,
}

impl ChunkData {
    /// Check the bytes against the id.
    ///
    /// # Errors
    /// [`WireError::ChunkMismatch`] when they differ.
    pub fn verify(&self) -> Result<(), WireError> {
        if self.id.matches(&self.data) {
            Ok(())
        } else {
            Err(WireError::ChunkMismatch(self.id.to_hex()))
        }
    }
}

impl Request for ChunkRequest {
    type Response = ChunkData;
}

/// One manifest or index of an image, as an edge needs it to serve and to decide when a tag
/// may be published. Its bytes (and every blob it references) travel as the artifact at
/// [`crate::oci::blob_path`] of their digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// The manifest's digest (the SHA-256 of its bytes).
    pub digest: Sha256Digest,
    /// Its media type as stored (served as `Content-Type`).
    pub media_type: String,
    /// Blobs it references (config and layers); for an index, none.
    pub blobs: Vec<Sha256Digest>,
    /// Child manifests (for an index: one per platform pushed).
    pub children: Vec<Sha256Digest>,
}

/// A tag of a repository and the manifest it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageTag {
    /// The tag.
    pub tag: String,
    /// The manifest (or index) it points to.
    pub digest: Sha256Digest,
}

/// A repository pushed to a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRepo {
    /// Its name (`docker.io/library/nginx`).
    pub repo: String,
    /// Pushed tags.
    pub tags: Vec<ImageTag>,
    /// Every manifest pushed in it (tagged, by digest, and the children of indexes).
    pub manifests: Vec<ImageManifest>,
}

/// Origin → edge: every image pushed to the site (same revision as the [`DesiredState`] it
/// follows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageState {
    /// The desired-state revision this belongs to.
    pub revision: u64,
    /// The repositories.
    pub repos: Vec<ImageRepo>,
}

/// Edge → origin: what is this manifest reference in this repository (on demand)?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciResolve {
    /// Repository (`docker.io/library/nginx`).
    pub repo: String,
    /// A tag or `sha256:` digest.
    pub reference: String,
}

/// Origin → edge: the manifest a reference names, with its bytes' recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciResolved {
    /// The manifest.
    pub manifest: ImageManifest,
    /// The recipe of the manifest's bytes.
    pub recipe: BlobRecipe,
}

impl Request for OciResolve {
    type Response = OciResolved;
}

/// Edge → origin: the recipe of this blob of this repository (on demand; the origin fetches it
/// from its pull-through upstream when it lacks it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciBlobRequest {
    /// Repository.
    pub repo: String,
    /// The blob's digest.
    pub digest: Sha256Digest,
}

impl Request for OciBlobRequest {
    type Response = RecipeResponse;
}

/// Edge → origin: the manifests of `repo` whose `subject` is `subject` (the referrers API, so
/// a signature or SBOM attached at the origin after the image reached the site is listed there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciReferrers {
    /// Repository.
    pub repo: String,
    /// The subject manifest's digest.
    pub subject: Sha256Digest,
}

/// One manifest that refers to a subject, as the referrers API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciReferrer {
    /// The referring manifest's digest.
    pub digest: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Its `artifactType` (or its config's media type).
    pub artifact_type: Option<String>,
    /// Its annotations, as the JSON object it carries.
    pub annotations_json: Option<String>,
}

/// Origin → edge: the answer to [`OciReferrers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciReferrersList {
    /// The referrers the origin holds, by digest.
    pub referrers: Vec<OciReferrer>,
}

impl Request for OciReferrers {
    type Response = OciReferrersList;
}

/// Edge → origin: the tags of `repo` the origin holds (the mirror's `tags/list` while online).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciTags {
    /// Repository.
    pub repo: String,
}

/// Origin → edge: the answer to [`OciTags`], in lexical order, at most [`MAX_TAGS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciTagList {
    /// The tags.
    pub tags: Vec<String>,
}

/// Most tags an [`OciTagList`] carries (a tag is at most 128 bytes: well inside a frame).
pub const MAX_TAGS: usize = 10_000;

impl Request for OciTags {
    type Response = OciTagList;
}

/// Edge → origin, on the control stream: sign this key for the edge's HTTPS listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpsCertRequest {
    /// A PKCS#10 certificate signing request (PEM). Only its public key is used: the names come
    /// from the site's configuration at the origin.
    pub csr_pem: String,
}

/// Edge → origin, on the control stream after `Welcome`: this edge honours [`Holds`] (the
/// origin then sends them, and answers a chunk request for a held blob with
/// [`ErrorCode::Held`] instead of failing it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldsRequest {}

/// Origin → edge, on the control stream, to edges that sent [`HoldsRequest`]: the desired
/// blobs not to be fetched now (every push that supplies them is outside its transfer window
/// or before its start time). The whole set each time; an empty set releases every hold. A
/// held blob's chunks already stored are kept; its fetch continues once released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holds {
    /// The held blobs.
    pub blobs: Vec<BlobId>,
}

/// Edge → origin, on the control stream after `Welcome` and then about every minute: the
/// node's disk and what it holds, for `ctl site show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Size of the file system holding the data directory, bytes.
    pub disk_total: u64,
    /// Free space on it for the edge, bytes.
    pub disk_free: u64,
    /// Bytes of chunks in the store.
    pub store_bytes: u64,
    /// Artifacts published (served).
    pub artifacts_held: u32,
    /// Desired artifacts not yet complete.
    pub artifacts_pending: u32,
    /// Bytes still to fetch for them (their totals while the lack is not yet known).
    pub bytes_pending: u64,
}

/// Origin → edge, on the control stream: the HTTPS certificate for the key of the edge's
/// [`HttpsCertRequest`], issued by the origin's CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpsCert {
    /// The DNS names and IP addresses it is valid for (the site's HTTPS names; empty when the
    /// site lists none, and then `chain_pem` is empty too).
    pub names: Vec<String>,
    /// The chain, leaf first, ending with the origin's CA certificate (PEM).
    pub chain_pem: String,
}

macro_rules! messages {
    ($( $kind:literal => $variant:ident($ty:ty) ),* $(,)?) => {
        /// Every message that can cross the wire.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $( #[allow(missing_docs)] $variant($ty), )*
            /// A chunk (raw payload, see the module docs).
            ChunkData(ChunkData),
        }

        impl Message {
            /// The kind byte of this message.
            #[must_use]
            pub fn kind(&self) -> u8 {
                match self {
                    $( Message::$variant(_) => $kind, )*
                    Message::ChunkData(_) => CHUNK_DATA_KIND,
                }
            }

            /// The message's name, for errors and logs.
            #[must_use]
            pub fn name(&self) -> &'static str {
                match self {
                    $( Message::$variant(_) => stringify!($variant), )*
                    Message::ChunkData(_) => "ChunkData",
                }
            }

            fn encode_body(&self, out: &mut Vec<u8>) {
                match self {
                    $( Message::$variant(m) => {
                        *out = postcard::to_extend(m, std::mem::take(out))
                            .expect("postcard encoding into a Vec cannot fail");
                    } )*
                    Message::ChunkData(c) => {
                        out.extend_from_slice(c.id.as_bytes());
                        out.extend_from_slice(&c.data);
                    }
                }
            }

            fn decode_body(kind: u8, body: &[u8]) -> Result<Self, WireError> {
                match kind {
                    $( $kind => {
                        let (m, rest) = postcard::take_from_bytes::<$ty>(body)
                            .map_err(|e| WireError::Malformed {
                                kind: stringify!($variant),
                                reason: e.to_string(),
                            })?;
                        if !rest.is_empty() {
                            return Err(WireError::Malformed {
                                kind: stringify!($variant),
                                reason: format!("{} trailing bytes", rest.len()),
                            });
                        }
                        Ok(Message::$variant(m))
                    } )*
                    CHUNK_DATA_KIND => {
                        if body.len() < 32 {
                            return Err(WireError::Malformed {
                                kind: "ChunkData",
                                reason: "shorter than a chunk id".into(),
                            });
                        }
                        let mut id = [0u8; 32];
                        id.copy_from_slice(&body[..32]);
                        Ok(Message::ChunkData(ChunkData {
                            id: ChunkId::from_bytes(id),
                            data: body[32..].to_vec(),
                        }))
                    }
                    other => Err(WireError::UnknownKind(other)),
                }
            }
        }

        $( impl From<$ty> for Message {
            fn from(m: $ty) -> Self { Message::$variant(m) }
        } )*
    };
}

const CHUNK_DATA_KIND: u8 = 20;
/// The highest postcard message kind.
const LAST_KIND: u8 = 25;

messages! {
    1 => Error(ErrorMsg),
    2 => Enroll(Enroll),
    3 => Enrolled(Enrolled),
    4 => Hello(Hello),
    5 => Welcome(Welcome),
    6 => SiteConfig(SiteConfigMsg),
    7 => DesiredState(DesiredState),
    8 => StatusReport(StatusReport),
    9 => RecipeRequest(RecipeRequest),
    10 => RecipeResponse(RecipeResponse),
    11 => ChunkRequest(ChunkRequest),
    12 => ImageState(ImageState),
    13 => OciResolve(OciResolve),
    14 => OciResolved(OciResolved),
    15 => OciBlobRequest(OciBlobRequest),
    16 => HttpsCertRequest(HttpsCertRequest),
    17 => HttpsCert(HttpsCert),
    18 => OciReferrers(OciReferrers),
    19 => OciReferrersList(OciReferrersList),
    // 20 is ChunkData.
    21 => OciTags(OciTags),
    22 => OciTagList(OciTagList),
    23 => HoldsRequest(HoldsRequest),
    24 => Holds(Holds),
    25 => NodeStats(NodeStats),
}

impl From<ChunkData> for Message {
    fn from(m: ChunkData) -> Self {
        Message::ChunkData(m)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message kind.
    pub kind: u8,
    /// Payload length.
    pub len: u32,
}

fn header(kind: u8, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("frame payload fits u32");
    let mut h = [0u8; HEADER_LEN];
    h[..3].copy_from_slice(&MAGIC);
    h[3] = WIRE_VERSION;
    h[4] = kind;
    h[5] = 0;
    h[6..10].copy_from_slice(&len.to_be_bytes());
    h
}

/// Encode a message as one frame.
#[must_use]
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut body = Vec::new();
    msg.encode_body(&mut body);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header(msg.kind(), body.len()));
    out.extend_from_slice(&body);
    out
}

/// The header and id prefix of a [`ChunkData`] frame carrying `len` bytes of `id`: write it,
/// then the chunk bytes, to send a chunk without copying it.
#[must_use]
pub fn chunk_data_header(id: &ChunkId, len: usize) -> [u8; HEADER_LEN + 32] {
    let mut out = [0u8; HEADER_LEN + 32];
    out[..HEADER_LEN].copy_from_slice(&header(CHUNK_DATA_KIND, 32 + len));
    out[HEADER_LEN..].copy_from_slice(id.as_bytes());
    out
}

/// Validate a frame header.
///
/// # Errors
/// Bad magic, version, kind, flags or length.
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<FrameHeader, WireError> {
    let magic = [h[0], h[1], h[2]];
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if h[3] != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion(h[3]));
    }
    if !(1..=LAST_KIND).contains(&h[4]) && h[4] != CHUNK_DATA_KIND {
        return Err(WireError::UnknownKind(h[4]));
    }
    if h[5] != 0 {
        return Err(WireError::BadFlags(h[5]));
    }
    let len = u32::from_be_bytes([h[6], h[7], h[8], h[9]]);
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    Ok(FrameHeader { kind: h[4], len })
}

/// Decode a payload announced by `header`.
///
/// # Errors
/// The body does not decode as the announced kind, or has trailing bytes.
pub fn decode_body(header: FrameHeader, body: &[u8]) -> Result<Message, WireError> {
    if body.len() != header.len as usize {
        return Err(WireError::Truncated {
            need: header.len as usize,
            have: body.len(),
        });
    }
    Message::decode_body(header.kind, body)
}

/// Decode one whole frame from the start of `buf`; returns it with the bytes consumed.
///
/// # Errors
/// [`WireError::Truncated`] when `buf` holds less than one frame, or any decoding error.
pub fn decode(buf: &[u8]) -> Result<(Message, usize), WireError> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Err(WireError::Truncated {
            need: HEADER_LEN,
            have: buf.len(),
        });
    };
    let h = decode_header(h.try_into().expect("slice of HEADER_LEN"))?;
    let end = HEADER_LEN + h.len as usize;
    let Some(body) = buf.get(HEADER_LEN..end) else {
        return Err(WireError::Truncated {
            need: end,
            have: buf.len(),
        });
    };
    Ok((decode_body(h, body)?, end))
}

#[cfg(test)]
mod tests;
