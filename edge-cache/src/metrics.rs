//! Counters the edge exposes on its metrics listener (`/metrics`, `/healthz`).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use sitecast_runtime::prom::Prom;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::Core;
use crate::error::Error;

/// State of the session with the origin, as a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SessionState {
    /// No origin configured.
    Disabled = 0,
    /// Dialing or waiting to redial.
    Connecting = 1,
    /// Enrolling with a join token.
    Enrolling = 2,
    /// Control stream established.
    Connected = 3,
    /// The origin revoked this node; no more attempts until it is started with a fresh join
    /// token.
    Revoked = 4,
}

impl SessionState {
    fn name(self) -> &'static str {
        match self {
            SessionState::Disabled => "disabled",
            SessionState::Connecting => "connecting",
            SessionState::Enrolling => "enrolling",
            SessionState::Connected => "connected",
            SessionState::Revoked => "revoked",
        }
    }

    const ALL: [SessionState; 5] = [
        SessionState::Disabled,
        SessionState::Connecting,
        SessionState::Enrolling,
        SessionState::Connected,
        SessionState::Revoked,
    ];
}

/// The edge's counters (all monotonic except the session state).
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP responses by class: 2xx, 3xx, 4xx, 5xx.
    pub http_responses: [AtomicU64; 4],
    /// Body bytes sent to HTTP clients.
    pub http_bytes_served: AtomicU64,
    /// Chunks received from the origin and stored.
    pub chunks_fetched: AtomicU64,
    /// Chunk bytes received from the origin and stored.
    pub bytes_fetched: AtomicU64,
    /// Artifacts published (a new blob at a path).
    pub artifacts_published: AtomicU64,
    /// Artifact fetches that failed (disk full, verification, origin refusal).
    pub fetch_failures: AtomicU64,
    /// Chunks that failed verification on arrival.
    pub chunks_rejected: AtomicU64,
    /// FTP control connections accepted.
    pub ftp_sessions: AtomicU64,
    /// File bytes sent to FTP clients.
    pub ftp_bytes_served: AtomicU64,
    /// SSH connections accepted by the SFTP server.
    pub sftp_sessions: AtomicU64,
    /// Sessions with the origin that could not start or ended (each is retried).
    pub origin_session_failures: AtomicU64,
    /// File bytes sent to SFTP clients.
    pub sftp_bytes_served: AtomicU64,
    session: AtomicU8,
    /// Registry mirror counters per repository.
    repos: std::sync::Mutex<std::collections::BTreeMap<String, Arc<RepoCounters>>>,
}

/// Registry mirror counters of one repository.
#[derive(Debug, Default)]
pub struct RepoCounters {
    /// Manifest and blob requests answered from the site.
    pub hits: AtomicU64,
    /// Requests for something the site lacked (fetched on demand, or refused).
    pub misses: AtomicU64,
    /// Chunk bytes fetched from the origin on demand.
    pub bytes_on_demand: AtomicU64,
    /// Blob bytes sent to clients.
    pub bytes_served: AtomicU64,
}

impl RepoCounters {
    /// Count bytes fetched on demand.
    pub fn add_fetched(&self, n: u64) {
        self.bytes_on_demand.fetch_add(n, Ordering::Relaxed);
    }
}

impl Metrics {
    /// The counters of repository `repo` (created on first use).
    pub fn repo(&self, repo: &str) -> Arc<RepoCounters> {
        let mut m = self
            .repos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(repo.to_owned()).or_default().clone()
    }

    /// Count an HTTP response with this status.
    pub fn http_response(&self, status: u16) {
        let i = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.http_responses[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Set the session state gauge.
    pub fn set_session(&self, s: SessionState) {
        self.session.store(s as u8, Ordering::Relaxed);
    }

    /// The session state.
    #[must_use]
    pub fn session(&self) -> SessionState {
        SessionState::ALL
            .into_iter()
            .find(|s| *s as u8 == self.session.load(Ordering::Relaxed))
            .unwrap_or(SessionState::Disabled)
    }

    /// Render everything in Prometheus text format, with the gauges and counters kept
    /// elsewhere: published artifacts and argon2 verifications.
    #[must_use]
    pub fn render(
        &self,
        node: &str,
        published: usize,
        auth_verifications: u64,
        cache: &crate::chunk_cache::ChunkCache,
    ) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut p = Prom::new();
        for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            p.counter(
                "sitecast_edge_http_responses_total",
                "HTTP responses sent, by status class.",
                &[("node", node), ("class", class)],
                get(&self.http_responses[i]),
            );
        }
        p.counter(
            "sitecast_edge_http_bytes_served_total",
            "Body bytes served to HTTP clients.",
            &[("node", node)],
            get(&self.http_bytes_served),
        );
        p.counter(
            "sitecast_edge_chunks_fetched_total",
            "Chunks received from the origin, verified and stored.",
            &[("node", node)],
            get(&self.chunks_fetched),
        );
        p.counter(
            "sitecast_edge_bytes_fetched_total",
            "Chunk bytes received from the origin, verified and stored.",
            &[("node", node)],
            get(&self.bytes_fetched),
        );
        p.counter(
            "sitecast_edge_chunks_rejected_total",
            "Chunks from the origin that failed verification.",
            &[("node", node)],
            get(&self.chunks_rejected),
        );
        p.counter(
            "sitecast_edge_artifacts_published_total",
            "Artifacts published (a path switched to a complete, verified blob).",
            &[("node", node)],
            get(&self.artifacts_published),
        );
        p.counter(
            "sitecast_edge_fetch_failures_total",
            "Artifact fetches that failed (disk full, verification, origin refusal).",
            &[("node", node)],
            get(&self.fetch_failures),
        );
        p.counter(
            "sitecast_edge_origin_session_failures_total",
            "Sessions with the origin that could not start or that ended (each is retried).",
            &[("node", node)],
            get(&self.origin_session_failures),
        );
        let protocols = [
            ("ftp", &self.ftp_sessions, &self.ftp_bytes_served),
            ("sftp", &self.sftp_sessions, &self.sftp_bytes_served),
        ];
        for (proto, sessions, _) in protocols {
            p.counter(
                "sitecast_edge_sessions_total",
                "FTP control connections and SSH connections accepted, by protocol.",
                &[("node", node), ("protocol", proto)],
                get(sessions),
            );
        }
        for (proto, _, bytes) in protocols {
            p.counter(
                "sitecast_edge_file_bytes_served_total",
                "File bytes sent over FTP and SFTP, by protocol.",
                &[("node", node), ("protocol", proto)],
                get(bytes),
            );
        }
        p.counter(
            "sitecast_edge_password_verifications_total",
            "Argon2 password verifications (logins not answered from the cache).",
            &[("node", node)],
            auth_verifications,
        );
        #[allow(clippy::cast_precision_loss)]
        p.gauge(
            "sitecast_edge_published_artifacts",
            "Artifacts currently published.",
            &[("node", node)],
            published as f64,
        );
        let now = self.session();
        for s in SessionState::ALL {
            p.gauge(
                "sitecast_edge_session_state",
                "Session with the origin: 1 for the current state.",
                &[("node", node), ("state", s.name())],
                if s == now { 1.0 } else { 0.0 },
            );
        }
        p.counter(
            "sitecast_edge_chunk_cache_hits_total",
            "Chunk reads served from the in-memory cache.",
            &[("node", node)],
            get(&cache.hits),
        );
        p.counter(
            "sitecast_edge_chunk_cache_misses_total",
            "Chunk reads that went to the store (read and verified).",
            &[("node", node)],
            get(&cache.misses),
        );
        p.gauge(
            "sitecast_edge_chunk_cache_bytes",
            "Bytes of chunks held in the in-memory cache.",
            &[("node", node)],
            cache.bytes() as f64,
        );
        let repos: Vec<(String, Arc<RepoCounters>)> = self
            .repos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        type Field = fn(&RepoCounters) -> &AtomicU64;
        let families: [(&str, &str, Field); 4] = [
            (
                "sitecast_edge_oci_hits_total",
                "Registry mirror requests answered from the site, by repository.",
                |c| &c.hits,
            ),
            (
                "sitecast_edge_oci_misses_total",
                "Registry mirror requests for content the site lacked, by repository.",
                |c| &c.misses,
            ),
            (
                "sitecast_edge_oci_bytes_on_demand_total",
                "Chunk bytes fetched from the origin on demand, by repository.",
                |c| &c.bytes_on_demand,
            ),
            (
                "sitecast_edge_oci_bytes_served_total",
                "Blob bytes sent by the registry mirror, by repository.",
                |c| &c.bytes_served,
            ),
        ];
        for (name, help, field) in families {
            for (repo, c) in &repos {
                p.counter(
                    name,
                    help,
                    &[("node", node), ("repository", repo)],
                    get(field(c)),
                );
            }
        }
        p.finish()
    }
}

/// The metrics listener: `/metrics` and `/healthz`.
pub(crate) async fn serve(
    core: Arc<Core>,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let addr = listener.local_addr().ok();
    let core_header_timeout = core.cfg.http.header_timeout;
    let app = Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(core): axum::extract::State<Arc<Core>>| async move {
                    let body = core.metrics.render(
                        &core.cfg.node,
                        core.catalog.published().len(),
                        core.auth.verifications(),
                        &core.cache,
                    );
                    ([(CONTENT_TYPE, sitecast_runtime::prom::CONTENT_TYPE)], body).into_response()
                },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(core);
    let header_timeout = core_header_timeout;
    sitecast_runtime::https::serve(listener, app, None, header_timeout, cancel)
        .await
        .map_err(|e| Error::Task {
            name: "metrics server",
            reason: format!("{addr:?}: {e}"),
        })
}
