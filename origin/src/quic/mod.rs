//! The QUIC server edges dial: enrollment, control streams, recipes and chunks.
//!
//! Each connection's handshake finishes inside its own task. A connection without a client
//! certificate may only enroll; one with a certificate must belong to an enrolled node
//! (recognised by the certificate's SHA-256), otherwise it is closed with a reason. Every
//! bidirectional stream is dispatched by its first frame. A malformed or unexpected frame gets
//! `ErrorMsg { BadRequest }` naming the problem, then the stream is finished and its receive
//! side stopped; the connection and all state are untouched. Every byte written to a site's
//! streams is counted (payload vs framing) for `/metrics` and push progress.

use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Incoming, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use sitecast_protocol::wire::{ErrorCode, ErrorMsg, Message};
use sitecast_runtime::framed::{read_frame, write_frame, FrameError};
use sitecast_runtime::tls::cert_fingerprint;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Congestion;
use crate::core::Core;
use crate::db;
use crate::error::{Error, Result};

mod control;
mod data;
mod enroll;
mod images;
pub(crate) mod pace;

/// Application close code: the client certificate is not an enrolled node's.
pub(crate) const CLOSE_UNKNOWN_NODE: u32 = 2;
/// Application close code: the node was revoked (the reason names when and why); an edge
/// stops retrying until it is started with a fresh join token.
pub(crate) const CLOSE_REVOKED: u32 = 3;
/// Application close code: the origin is shutting down.
pub(crate) const CLOSE_SHUTDOWN: u32 = 1;

/// Build the QUIC endpoint bound to `cfg.quic_listen`.
pub(crate) fn endpoint(core: &Core) -> Result<quinn::Endpoint> {
    let tls = core.ca.server_tls()?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let q = &core.cfg.quic;
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        q.idle_timeout
            .try_into()
            .map_err(|_| Error::Config("quic.idle_timeout too large".into()))?,
    ));
    t.send_window(q.send_window);
    t.packet_threshold(q.reordering_threshold);
    match q.congestion {
        Congestion::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        }
        Congestion::Cubic => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()))
        }
        Congestion::NewReno => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()))
        }
    };
    t.max_concurrent_bidi_streams(VarInt::from_u32(q.max_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    sc.transport_config(Arc::new(t));
    let addr = core.cfg.quic_listen;
    quinn::Endpoint::server(sc, addr).map_err(|source| Error::Bind { addr, source })
}

/// Accept connections until `cancel`, then close the endpoint.
pub(crate) async fn serve(
    core: Arc<Core>,
    endpoint: quinn::Endpoint,
    cancel: CancellationToken,
) -> Result<()> {
    loop {
        let incoming = tokio::select! {
            () = cancel.cancelled() => break,
            i = endpoint.accept() => i,
        };
        let Some(incoming) = incoming else { break };
        let core = Arc::clone(&core);
        let cancel = cancel.clone();
        let remote = incoming.remote_address();
        tokio::spawn(
            async move { connection(core, incoming, cancel).await }
                .instrument(tracing::info_span!("quic", %remote, site = tracing::field::Empty, node = tracing::field::Empty)),
        );
    }
    endpoint.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"origin shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(())
}

async fn connection(core: Arc<Core>, incoming: Incoming, cancel: CancellationToken) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    let peer = conn
        .peer_identity()
        .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|v| v.first().cloned());
    match peer {
        None => enroll::connection(core, conn).await,
        Some(cert) => {
            let fp = cert_fingerprint(&cert).to_vec();
            let f = fp.clone();
            let node = core
                .db
                .call(move |c| {
                    Ok(match db::sites::node_by_cert(c, &f)? {
                        Some(n) => Ok(n),
                        None => Err(db::sites::revocation(c, &f)?),
                    })
                })
                .await;
            match node {
                Ok(Ok((site, node))) => node_connection(core, conn, site, node, fp, cancel).await,
                Ok(Err(Some(why))) => {
                    tracing::info!(reason = %why, "refused a revoked node");
                    conn.close(
                        VarInt::from_u32(CLOSE_REVOKED),
                        revoked_reason(&why).as_bytes(),
                    );
                }
                Ok(Err(None)) => {
                    tracing::info!("rejected a certificate of no enrolled node");
                    conn.close(
                        VarInt::from_u32(CLOSE_UNKNOWN_NODE),
                        b"unknown node certificate: the node or its site was deleted; enroll again with a new join token",
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "node lookup failed");
                    conn.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"origin internal error");
                }
            }
        }
    }
}

/// The close reason a revoked edge gets (and logs).
fn revoked_reason(why: &str) -> String {
    format!("{why}; to enroll it again, start it with a fresh join token (sitecast ctl site join-token SITE)")
}

async fn node_connection(
    core: Arc<Core>,
    conn: Connection,
    site: String,
    node: String,
    fingerprint: Vec<u8>,
    cancel: CancellationToken,
) {
    let span = tracing::Span::current();
    span.record("site", site.as_str());
    span.record("node", node.as_str());
    let addr = conn.remote_address().to_string();
    if let Err(e) = core.node_presence(&site, &node, Some(addr), true).await {
        tracing::warn!(error = %e, "recording node online failed");
    }
    tracing::info!("node connected");
    let peer = Peer {
        site: Arc::from(site.as_str()),
        node: Arc::from(node.as_str()),
        honors_holds: Arc::default(),
    };
    let mut revocations = core.node_revocations.subscribe();
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => {
                conn.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"origin shutting down");
                break;
            }
            r = revocations.changed() => {
                if r.is_err() {
                    continue;
                }
                let fp = fingerprint.clone();
                let why = core.db.call(move |c| {
                    Ok(match db::sites::node_by_cert(c, &fp)? {
                        Some(_) => None,
                        None => Some(db::sites::revocation(c, &fp)?.unwrap_or_else(|| "node revoked".into())),
                    })
                }).await;
                match why {
                    Ok(Some(why)) => {
                        tracing::info!(reason = %why, "closing the session of a revoked node");
                        conn.close(VarInt::from_u32(CLOSE_REVOKED), revoked_reason(&why).as_bytes());
                        break;
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "checking for revocation failed");
                        continue;
                    }
                }
            }
            s = conn.accept_bi() => s,
        };
        match stream {
            Ok((send, recv)) => {
                let (core, peer, cancel) = (Arc::clone(&core), peer.clone(), cancel.clone());
                tokio::spawn(
                    async move { stream_task(core, peer, send, recv, cancel).await }
                        .in_current_span(),
                );
            }
            Err(e) => {
                tracing::info!(reason = %e, "node disconnected");
                break;
            }
        }
    }
    if let Err(e) = core.node_presence(&site, &node, None, false).await {
        tracing::warn!(error = %e, "recording node offline failed");
    }
}

/// The authenticated node a stream belongs to.
#[derive(Clone)]
pub(crate) struct Peer {
    pub(crate) site: Arc<str>,
    pub(crate) node: Arc<str>,
    /// The edge sent `HoldsRequest` on this connection: it gets `Holds`, and held chunk
    /// streams end with `ErrorCode::Held` rather than `Internal`.
    pub(crate) honors_holds: Arc<std::sync::atomic::AtomicBool>,
}

async fn stream_task(
    core: Arc<Core>,
    peer: Peer,
    send: SendStream,
    mut recv: RecvStream,
    cancel: CancellationToken,
) {
    let first = match read_frame(&mut recv).await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) if e.is_malformed() => {
            reject(
                &core,
                Some(&peer),
                send,
                recv,
                ErrorCode::BadRequest,
                e.to_string(),
            )
            .await;
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, "stream failed before its first frame");
            return;
        }
    };
    let res = match first {
        Message::Hello(h) => control::run(&core, &peer, send, recv, h, cancel).await,
        Message::RecipeRequest(r) => data::recipe(&core, &peer, send, recv, r).await,
        Message::ChunkRequest(r) => data::chunks(&core, &peer, send, recv, r).await,
        Message::OciResolve(r) => images::resolve(&core, &peer, send, recv, r).await,
        Message::OciBlobRequest(r) => images::blob(&core, &peer, send, recv, r).await,
        Message::OciReferrers(r) => images::referrers(&core, &peer, send, recv, r).await,
        Message::OciTags(r) => images::tags(&core, &peer, send, recv, r).await,
        Message::Enroll(_) => {
            let msg =
                "this connection is already authenticated; enroll without a client certificate"
                    .to_owned();
            reject(&core, Some(&peer), send, recv, ErrorCode::BadRequest, msg).await;
            Ok(())
        }
        other => {
            let msg = format!("unexpected {} as the first frame of a stream", other.name());
            reject(&core, Some(&peer), send, recv, ErrorCode::BadRequest, msg).await;
            Ok(())
        }
    };
    if let Err(e) = res {
        match e {
            Error::Frame(FrameError::Read(_) | FrameError::Write(_)) => {
                tracing::debug!(error = %e, "stream ended")
            }
            e => tracing::warn!(error = %e, "stream failed"),
        }
    }
}

/// Answer a stream with an error and close it (finish our side, stop theirs).
pub(crate) async fn reject(
    core: &Core,
    peer: Option<&Peer>,
    mut send: SendStream,
    mut recv: RecvStream,
    code: ErrorCode,
    message: String,
) {
    tracing::info!(?code, %message, "rejecting stream");
    let msg = Message::Error(ErrorMsg { code, message });
    if let Ok(n) = write_frame(&mut send, &msg).await {
        if let Some(p) = peer {
            core.count_sent(&p.site, None, 0, n as u64);
        }
    }
    let _ = send.finish();
    let _ = recv.stop(VarInt::from_u32(u32::from(code_num(code))));
}

fn code_num(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::BadToken => 1,
        ErrorCode::Unauthorized => 2,
        ErrorCode::NotFound => 3,
        ErrorCode::BadRequest => 4,
        ErrorCode::Internal => 5,
        ErrorCode::Held => 6,
    }
}
