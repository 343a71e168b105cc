//! I/O pieces shared by the sitecast origin and edge.
//!
//! - [`chunks`]: the content-addressed chunk store (a narrow trait, a disk and a memory
//!   implementation, and one conformance suite run against both);
//! - [`datadir`]: the data directory, private and locked by one process;
//! - [`sqlite`]: opening a SQLite database in WAL mode with numbered migrations;
//! - [`framed`]: reading and writing [`sitecast_protocol::wire`] frames on QUIC streams;
//! - [`tls`]: the names and token format both sides of the QUIC session agree on;
//! - [`password`]: argon2 password checks, at most one per CPU at a time;
//! - [`prom`]: a small Prometheus text-format writer;
//! - [`size`]: byte sizes in configuration files (`4194304` or `"4MiB"`);
//! - [`verify`]: the report (and the per-blob check) of `origin verify` / `edge verify`.
//!
//! # Errors
//! Each module has its own error type; [`chunks::StoreError`] classifies itself
//! ([`chunks::StoreError::is_no_space`], [`chunks::StoreError::is_retryable`]) so callers decide
//! from the value, not from strings.

pub mod chunks;
pub mod datadir;
pub mod framed;
pub mod https;
pub mod password;
pub mod prom;
pub mod size;
pub mod sqlite;
pub mod tls;
pub mod verify;
