//! I/O pieces shared by the sitecast origin and edge.
//!
//! - [`chunks`]: the content-addressed chunk store (a narrow trait, a disk and a memory
//!   implementation, and one conformance suite run against both);
//! - [`sqlite`]: opening a SQLite database in WAL mode with numbered migrations;
//! - [`framed`]: reading and writing [`sitecast_protocol::wire`] frames on QUIC streams;
//! - [`tls`]: the names and token format both sides of the QUIC session agree on;
//! - [`prom`]: a small Prometheus text-format writer.
//!
//! # Errors
//! Each module has its own error type; [`chunks::StoreError`] classifies itself
//! ([`chunks::StoreError::is_no_space`], [`chunks::StoreError::is_retryable`]) so callers decide
//! from the value, not from strings.

pub mod chunks;
pub mod framed;
pub mod prom;
pub mod sqlite;
pub mod tls;
