//! sitecast origin: ingest, catalog, sites, pushes, REST API and QUIC server.
//!
//! The origin packages uploaded artifacts into content-addressed chunks (FastCDC + BLAKE3),
//! keeps its catalog in SQLite, and serves edges over QUIC with mutual TLS from its own CA. The
//! contract with the edge and the CLI is docs/internals.md; the REST API is docs/rest-api.md.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sitecast_origin::Error> {
//! use sitecast_origin::{run, OriginConfig};
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let (tx, rx) = tokio::sync::oneshot::channel();
//! let server = tokio::spawn(run(OriginConfig::local("/tmp/origin"), cancel.clone(), tx));
//! let ready = rx.await.expect("origin started");
//! println!("api on {}, quic on {}", ready.api, ready.quic);
//! cancel.cancel();
//! server.await.expect("joined")?;
//! # Ok(()) }
//! ```
//!
//! # Errors
//! One error type, [`Error`], classified by [`Error::is_retryable`] and [`Error::is_no_space`];
//! see the `error` module docs for the policy.

mod api;
mod ca;
mod config;
mod core;
mod db;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod ingest;
mod quic;
mod rates;
mod registry;
mod rollout;
mod schedule;
mod selector;
mod server;
mod upstream;
mod util;
mod verify;

pub use config::{
    parse_size, Congestion, HttpsOptions, OriginConfig, QuicOptions, RateLimitPer, RateLimitRule,
    UpstreamConfig,
};
pub use db::{
    ArtifactInfo, GrantInfo, NodeInfo, PushArtifactInfo, PushInfo, PushSiteInfo, SiteInfo, UserInfo,
};
pub use error::{Error, Result};
pub use server::{run, OriginReady};
pub use verify::verify;

/// The REST API's OpenAPI 3.1 document (pretty JSON), exactly as `GET /api/v1/openapi.json`
/// serves it; generated from the handlers and their types (docs/rest-api.md).
#[must_use]
pub fn openapi_json() -> &'static str {
    api::document_json()
}
