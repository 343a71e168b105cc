//! sitecast-loadtest: a device-fleet load tool and WAN emulation helpers.
//!
//! - [`run`]: N concurrent simulated devices download items over HTTP, FTP, SFTP or OCI from any
//!   server (sitecast's edge or a reference "peer": nginx, vsftpd, OpenSSH, the CNCF registry),
//!   verify every SHA-256 and produce a [`Report`] (throughput, latency percentiles, errors by
//!   kind, time to complete).
//! - [`run_relay`]: a UDP relay adding delay, jitter, loss and outages on the QUIC path.
//! - [`Scenario`]: WAN scenario files for the `wan/` scripts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sitecast_loadtest::Error> {
//! use std::time::Duration;
//! use sitecast_loadtest::{resolve_items, run, Proto, RunSpec, Stop, Target};
//! let target = Target {
//!     proto: Proto::Http, url: "http://127.0.0.1:18080".into(), user: None, password: None,
//!     key: None, known_hosts: None, insecure_host_key: false, sftp_root: None,
//!     platform: "linux/amd64".into(), fresh_connections: false, timeout: Duration::from_secs(60),
//! };
//! let items = resolve_items(Proto::Http, &["fw/a.bin".into()], Some(&"0".repeat(64)), None)?;
//! let report = run(RunSpec { target, items, clients: 4, stop: Stop::Total(40),
//!                            wait_available: None, label: "demo".into() }).await?;
//! println!("{}", report.to_text());
//! # Ok(()) }
//! ```

pub(crate) mod error;
pub(crate) mod proto;
pub(crate) mod relay;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod scenario;
pub(crate) mod target;

pub use error::{Error, Result};
pub use relay::{run_relay, DirStats, RelayConfig, RelayStats};
pub use report::{Percentiles, Report};
pub use run::{run, RunSpec, Stop};
pub use scenario::{parse_rate, RelaySettings, Scenario, Site, SiteSpec};
pub use target::{
    read_env_file, resolve_items, DataManifest, Item, ManifestFile, Proto, Target, Verifier,
};
