//! The session with the origin: enrollment, the control stream, and reconciling to the
//! desired state (see docs/internals.md, "QUIC, TLS and enrollment" and "Streams").
//!
//! Tasks:
//! - the **connection loop** ([`Session::run`]) dials the origin forever, with exponential
//!   backoff and jitter between `reconnect_min` and `reconnect_max` (reset after a session
//!   that reached `Welcome`; a rejected join token waits `reconnect_max`). Attempts start at
//!   most the backoff apart, counted from the start of the failed one, and a handshake with
//!   no answer is given up after `connect_timeout`, so a returning origin is reached within
//!   `max(reconnect_max, connect_timeout)`. Failed attempts are logged with their reason at
//!   most every 10 s (each report counts the ones it stands for). Without an identity
//!   it enrolls first with the join token. Once `Welcome` arrives it publishes the connection
//!   to the fetcher and runs the control stream until the connection ends;
//! - the **control stream** ([`control`]) applies `SiteConfigMsg` (persisted, then swapped in)
//!   and `DesiredState` (persisted with unpublishing, then planned) and sends status reports;
//! - the **fetcher** ([`fetch`]) lives across connections: it picks one artifact at a time,
//!   fetches what is missing over the current connection, verifies, publishes, and collects
//!   unreferenced chunks. A lost connection leaves the artifact `fetching`; it resumes on the
//!   next connection asking only for chunks still missing.

mod control;
mod fetch;
mod state;
mod stats;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sitecast_protocol::wire::{Enroll, ErrorCode, Message};
use sitecast_runtime::framed::{read_frame, write_frame};
use sitecast_runtime::tls::{JoinToken, ORIGIN_SERVER_NAME};
use tokio_util::sync::CancellationToken;

pub(crate) use self::fetch::collect_garbage;
pub(crate) use self::state::batches;
use self::state::Shared;
use self::tls::IdentityDir;
pub use self::tls::PinnedCaVerifier;
use crate::core::Core;
use crate::error::{blocking, Error};
use crate::metrics::SessionState;

/// The origin session of one edge node (see the module docs).
pub struct Session {
    core: Arc<Core>,
    cancel: CancellationToken,
    shared: Arc<Shared>,
    endpoint: Option<(bool, quinn::Endpoint)>,
    /// Whether a join token given beside an enrolled identity was tried (once per start).
    reenroll_checked: bool,
}

/// What one connection attempt ended with.
enum Ended {
    /// The session reached `Welcome` and later ended.
    AfterWelcome(Error),
    /// The attempt failed before `Welcome`.
    Before(Error),
    /// Cancelled.
    Cancelled,
}

impl Session {
    /// A session for `core`, stopping when `cancel` fires.
    #[must_use]
    pub fn new(core: Arc<Core>, cancel: CancellationToken) -> Self {
        Self {
            core,
            cancel,
            shared: Arc::new(Shared::default()),
            endpoint: None,
            reenroll_checked: false,
        }
    }

    /// Run until cancelled. Every failure to reach or talk to the origin is logged and
    /// retried (local ones, such as an unreadable identity, at `reconnect_max`): the edge
    /// keeps serving whatever happens to the session.
    ///
    /// # Errors
    /// Only if the persisted reconcile state cannot be loaded at start.
    pub async fn run(mut self) -> Result<(), Error> {
        control::load(&self.core, &self.shared).await?;
        let fetcher = tokio::spawn(fetch::run(
            self.core.clone(),
            self.shared.clone(),
            self.core.uplink.subscribe(),
            self.cancel.clone(),
        ));
        let q = self.core.cfg.quic.clone();
        let mut attempt: u32 = 0;
        let mut failures = FailureLog::default();
        let result = loop {
            self.core.metrics.set_session(SessionState::Connecting);
            let started = tokio::time::Instant::now();
            let ended = self.connect_once().await;
            if let Ended::AfterWelcome(e) | Ended::Before(e) = &ended {
                if let Some(why) = revoked(e) {
                    tracing::error!(reason = %why,
                        "the origin revoked this node: it keeps serving what it holds and no \
                         longer dials the origin; start it with a fresh join token \
                         (--join-token) to enroll again");
                    self.core.uplink.send_replace(None);
                    self.core.metrics.set_session(SessionState::Revoked);
                    self.cancel.cancelled().await;
                    break Ok(());
                }
            }
            let wait = match ended {
                Ended::Cancelled => break Ok(()),
                Ended::AfterWelcome(e) => {
                    tracing::warn!(error = %e, "origin session ended; reconnecting");
                    attempt = 0;
                    failures = FailureLog::default();
                    // Measured from now, not from when the session started.
                    started.elapsed() + q.reconnect_min
                }
                Ended::Before(Error::BadToken(msg)) => {
                    tracing::error!(reason = %msg, retry_in = ?q.reconnect_max,
                        "the origin rejected the join token; create a fresh one with \
                         `sitecast ctl site join-token <site>` and restart the edge with it");
                    q.reconnect_max
                }
                Ended::Before(e) if !e.is_retryable() => {
                    // Local trouble (identity files, configuration): retrying soon will not
                    // help, but the edge keeps serving and tries again now and then.
                    tracing::error!(error = %e, retry_in = ?q.reconnect_max,
                        "cannot start a session with the origin");
                    q.reconnect_max
                }
                Ended::Before(e) => {
                    // Attempts start `wait` apart (the failed one's own time included), so a
                    // returning origin is reached within max(reconnect_max, connect_timeout).
                    let wait = backoff(q.reconnect_min, q.reconnect_max, attempt);
                    attempt = attempt.saturating_add(1);
                    failures.report(&e, wait.saturating_sub(started.elapsed()));
                    wait
                }
            };
            self.core.uplink.send_replace(None);
            self.core.metrics.set_session(SessionState::Connecting);
            self.core
                .metrics
                .origin_session_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                () = self.cancel.cancelled() => break Ok(()),
                () = tokio::time::sleep_until(started + wait) => {}
            }
        };
        self.core.uplink.send_replace(None);
        if let Some((_, ep)) = &self.endpoint {
            ep.close(0u32.into(), b"edge stopping");
        }
        if result.is_err() {
            fetcher.abort();
        }
        let fetched = fetcher.await;
        match (result, fetched) {
            (Err(e), _) => Err(e),
            (Ok(()), Ok(r)) => r,
            (Ok(()), Err(e)) if e.is_cancelled() => Ok(()),
            (Ok(()), Err(e)) => Err(Error::Task {
                name: "fetcher",
                reason: e.to_string(),
            }),
        }
    }

    async fn connect_once(&mut self) -> Ended {
        let cancel = self.cancel.clone();
        let r = tokio::select! {
            () = cancel.cancelled() => return Ended::Cancelled,
            r = self.dial_and_welcome() => r,
        };
        let (conn, control) = match r {
            Ok(x) => x,
            Err(e) => return Ended::Before(e),
        };
        self.core.metrics.set_session(SessionState::Connected);
        self.core.uplink.send_replace(Some(conn.clone()));
        self.shared.work.notify_one();
        let e = tokio::select! {
            () = self.cancel.cancelled() => {
                conn.close(0u32.into(), b"edge stopping");
                return Ended::Cancelled;
            }
            r = control::run(self.core.clone(), self.shared.clone(), control) => r,
        };
        conn.close(0u32.into(), b"control stream ended");
        Ended::AfterWelcome(e)
    }

    fn origin(&self) -> String {
        self.core.cfg.origin.clone().unwrap_or_default()
    }

    async fn resolve(&self) -> Result<SocketAddr, Error> {
        let origin = self.origin();
        let connect_err = |reason: String| Error::Connect {
            origin: origin.clone(),
            reason,
        };
        let mut addrs = tokio::net::lookup_host(origin.as_str())
            .await
            .map_err(|e| connect_err(format!("cannot resolve: {e}")))?;
        let first = addrs.next();
        first.ok_or_else(|| connect_err("name resolves to no address".into()))
    }

    fn endpoint(&mut self, v6: bool) -> Result<quinn::Endpoint, Error> {
        if let Some((is_v6, ep)) = &self.endpoint {
            if *is_v6 == v6 {
                return Ok(ep.clone());
            }
        }
        let bind: SocketAddr = if v6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let ep =
            quinn::Endpoint::client(bind).map_err(|source| Error::Bind { addr: bind, source })?;
        self.endpoint = Some((v6, ep.clone()));
        Ok(ep)
    }

    async fn handshake(&mut self, cfg: quinn::ClientConfig) -> Result<quinn::Connection, Error> {
        let addr = self.resolve().await?;
        let ep = self.endpoint(addr.is_ipv6())?;
        let origin = self.origin();
        let connecting = ep
            .connect_with(cfg, addr, ORIGIN_SERVER_NAME)
            .map_err(|e| Error::Connect {
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
        let limit = self.core.cfg.quic.connect_timeout;
        match tokio::time::timeout(limit, connecting).await {
            Ok(r) => r.map_err(|e| Error::Connect {
                origin,
                reason: e.to_string(),
            }),
            Err(_) => Err(Error::Connect {
                origin,
                reason: format!(
                    "no answer within {} (is the origin down, or UDP blocked on the way?)",
                    humantime::format_duration(limit)
                ),
            }),
        }
    }

    /// Enroll if needed, connect with the node certificate, and complete Hello → Welcome.
    async fn dial_and_welcome(&mut self) -> Result<(quinn::Connection, control::Control), Error> {
        let data_dir = self.core.cfg.data_dir.clone();
        let ids = IdentityDir::new(&data_dir);
        let identity = {
            let ids = IdentityDir::new(&data_dir);
            blocking("load identity", move || {
                IdentityDir::recover(&data_dir);
                ids.load()
            })
            .await?
        };
        let identity = match identity {
            Some(id) if !self.reenroll_checked => self.maybe_reenroll(id).await?,
            other => other,
        };
        let identity = match identity {
            Some(id) => id,
            None => {
                self.enroll(ids).await?;
                let ids = IdentityDir::new(&self.core.cfg.data_dir);
                blocking("load identity", move || ids.load())
                    .await?
                    .ok_or_else(|| Error::Tls("identity missing right after enrollment".into()))?
            }
        };
        let cfg = tls::node_config(identity, &self.core.cfg.quic)?;
        let conn = self.handshake(cfg).await?;
        let control = control::hello(&self.core, &self.shared, &conn).await?;
        Ok((conn, control))
    }

    /// With a join token configured that this identity was not enrolled with, enroll again
    /// into a staged identity and, once the origin confirmed, replace the current one and
    /// return it; the current one is kept when the origin refuses the token (e.g. because it
    /// was already used).
    async fn maybe_reenroll(&mut self, id: tls::Identity) -> Result<Option<tls::Identity>, Error> {
        let data_dir = self.core.cfg.data_dir.clone();
        let Some(token) = self.core.cfg.join_token.clone() else {
            self.reenroll_checked = true;
            return Ok(Some(id));
        };
        if IdentityDir::new(&data_dir).enrolled_with(&token) {
            self.reenroll_checked = true;
            return Ok(Some(id));
        }
        let staged = IdentityDir::staging(&data_dir);
        let _ = std::fs::remove_dir_all(data_dir.join("identity.new"));
        tracing::info!(
            "a join token this identity was not enrolled with is given: enrolling again"
        );
        match self.enroll(staged).await {
            Ok(()) => {
                let d = data_dir.clone();
                blocking("replace identity", move || {
                    IdentityDir::staging(&d).replace(&d)
                })
                .await?;
                self.reenroll_checked = true;
                tracing::info!("enrolled again; the previous identity is replaced");
                let d = data_dir.clone();
                blocking("load identity", move || IdentityDir::new(&d).load()).await
            }
            Err(Error::BadToken(msg)) => {
                self.reenroll_checked = true;
                tracing::warn!(reason = %msg,
                    "the origin refused the join token; keeping the enrolled identity");
                let _ = std::fs::remove_dir_all(data_dir.join("identity.new"));
                Ok(Some(id))
            }
            Err(e) => Err(e),
        }
    }

    async fn enroll(&mut self, ids: IdentityDir) -> Result<(), Error> {
        let Some(token_text) = self.core.cfg.join_token.clone() else {
            return Err(Error::Config(
                "this edge is not enrolled and has no join_token (--join-token) to enroll with"
                    .into(),
            ));
        };
        let token: JoinToken = token_text
            .parse()
            .map_err(|e: sitecast_runtime::tls::JoinTokenError| Error::Config(e.to_string()))?;
        self.core.metrics.set_session(SessionState::Enrolling);
        let node = self.core.cfg.node.clone();
        let (ids, csr_pem) = blocking("create csr", move || {
            let csr = ids.csr(&node)?;
            Ok((ids, csr))
        })
        .await?;
        let cfg = tls::enroll_config(token.ca_sha256, &self.core.cfg.quic)?;
        let conn = self.handshake(cfg).await?;
        tracing::info!(origin = %self.origin(), node = %self.core.cfg.node, "enrolling with the join token");
        let (mut send, mut recv) = conn.open_bi().await?;
        let msg_token = token_text.clone();
        let msg = Enroll {
            token: token_text,
            node: self.core.cfg.node.clone(),
            csr_pem,
        };
        write_frame(&mut send, &msg.into()).await?;
        let _ = send.finish();
        let answer = read_frame(&mut recv).await?;
        conn.close(0u32.into(), b"enrolled");
        match answer {
            Some(Message::Enrolled(e)) => {
                let site = e.site.clone();
                let token = msg_token;
                blocking("store identity", move || {
                    ids.store(&e.cert_pem, &e.ca_pem)?;
                    ids.record_token(&token)
                })
                .await?;
                tracing::info!(site = %site, node = %self.core.cfg.node, "enrolled");
                Ok(())
            }
            Some(Message::Error(e)) if e.code == ErrorCode::BadToken => {
                Err(Error::BadToken(e.message))
            }
            Some(Message::Error(e)) => Err(Error::Protocol(format!(
                "enrollment refused ({:?}): {}",
                e.code, e.message
            ))),
            Some(other) => Err(Error::Protocol(format!(
                "unexpected {} in answer to Enroll",
                other.name()
            ))),
            None => Err(Error::Protocol(
                "origin closed the enrollment stream without an answer".into(),
            )),
        }
    }
}

/// The reason the origin gave for closing the connection because this node is revoked (or
/// its certificate is no enrolled node's any more), if `e` is that close.
fn revoked(e: &Error) -> Option<String> {
    use sitecast_runtime::framed::FrameError;
    let c = match e {
        Error::Connection(c)
        | Error::Frame(FrameError::Read(quinn::ReadError::ConnectionLost(c)))
        | Error::Frame(FrameError::Write(quinn::WriteError::ConnectionLost(c))) => c,
        _ => return None,
    };
    match c {
        quinn::ConnectionError::ApplicationClosed(a)
            if matches!(a.error_code.into_inner(), 2 | 3) =>
        {
            Some(String::from_utf8_lossy(&a.reason).into_owned())
        }
        _ => None,
    }
}

/// Failed attempts to reach the origin, logged with their reason at most once per
/// [`FailureLog::EVERY`] (each report counts the attempts it stands for), so a short
/// `reconnect_max` never floods the log and a long outage is never silent.
#[derive(Default)]
struct FailureLog {
    last: Option<tokio::time::Instant>,
    unreported: u32,
}

impl FailureLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn report(&mut self, e: &Error, retry_in: Duration) {
        let due = self.last.is_none_or(|t| t.elapsed() >= Self::EVERY);
        if due {
            let earlier = std::mem::take(&mut self.unreported);
            self.last = Some(tokio::time::Instant::now());
            if earlier == 0 {
                tracing::warn!(error = %e, retry_in = ?retry_in, "cannot reach the origin");
            } else {
                tracing::warn!(error = %e, retry_in = ?retry_in, unreported_failures = earlier,
                    "cannot reach the origin (still)");
            }
        } else {
            self.unreported += 1;
            tracing::debug!(error = %e, retry_in = ?retry_in, "cannot reach the origin");
        }
    }
}

/// Exponential backoff with jitter: `min · 2^attempt`, capped at `max`, then a uniformly
/// random value in its upper half (never below `min`).
pub(crate) fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.min(20)).min(max);
    let low = (exp / 2).max(min);
    if low >= exp {
        return exp;
    }
    rand::thread_rng().gen_range(low..=exp)
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests;

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(30));
        assert_eq!(backoff(min, max, 0), min);
        for attempt in 0..40 {
            let d = backoff(min, max, attempt);
            assert!(d >= min && d <= max, "{attempt}: {d:?}");
        }
        let d = backoff(min, max, 3);
        assert!(
            d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
            "{d:?}"
        );
        assert!(backoff(min, max, 30) >= Duration::from_secs(15));
    }
}
