//! The control stream: `Hello` → `Welcome`, `SiteConfigMsg`, `DesiredState`; afterwards a new
//! `SiteConfigMsg` / `DesiredState` whenever the site's revisions move, while the edge's
//! `StatusReport`s update push progress. An edge that sends `HttpsCertRequest` gets `HttpsCert`
//! for its site's HTTPS names, again whenever they change, and a renewed one every
//! [`HTTPS_RENEW`] while the stream lasts. An edge that sends `HoldsRequest` gets `Holds`: the
//! desired blobs outside their transfer windows, again whenever a change or the clock (the
//! next window edge or start time) moves them.
//!
//! Frames from the edge are read by a separate task and handed over a channel, because reading
//! a frame is not cancel-safe and the loop also waits for revision changes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use sitecast_protocol::wire::{
    DesiredState, ErrorCode, Hello, Holds, HttpsCert, Message, SiteConfigMsg, Welcome,
};
use sitecast_protocol::{BlobId, SOFTWARE_VERSION};
use sitecast_runtime::framed::{read_frame, write_frame, FrameError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{reject, Peer};
use crate::core::Core;
use crate::db;
use crate::error::{Error, Result};

/// How long an issued edge HTTPS certificate (valid one year) serves before a new one is sent.
pub(crate) const HTTPS_RENEW: Duration = Duration::from_secs(180 * 24 * 3600);

/// The edge's HTTPS certificate request and what was last issued for it.
#[derive(Default)]
struct Https {
    csr: Option<String>,
    /// The names of the last certificate sent.
    names: Option<Vec<String>>,
    renew_at: Option<tokio::time::Instant>,
}

pub(super) async fn run(
    core: &Arc<Core>,
    peer: &Peer,
    mut send: SendStream,
    mut recv: RecvStream,
    hello: Hello,
    cancel: CancellationToken,
) -> Result<()> {
    tracing::info!(software = %hello.software, config = hello.config_revision, desired = hello.desired_revision, "control stream opened");
    let welcome = Message::Welcome(Welcome {
        site: peer.site.to_string(),
        node: peer.node.to_string(),
        software: SOFTWARE_VERSION.to_owned(),
    });
    write(core, peer, &mut send, &welcome).await?;
    let (site, node, software) = (
        peer.site.to_string(),
        peer.node.to_string(),
        hello.software.clone(),
    );
    core.db
        .call(move |c| db::sites::node_software(c, &site, &node, &software))
        .await?;
    let mut changes = core.site_changes.subscribe();
    let mut sent = (0u64, 0u64);
    if !send_updates(core, peer, &mut send, &mut sent).await? {
        return Ok(());
    }
    let (tx, mut rx) = mpsc::channel::<Result<Option<Message>, FrameError>>(4);
    let reader = tokio::spawn(async move {
        loop {
            let r = read_frame(&mut recv).await;
            let stop = !matches!(r, Ok(Some(_)));
            if tx.send(r).await.is_err() || stop {
                return recv;
            }
        }
    });
    let mut https = Https::default();
    let mut holds = HoldsSent::default();
    let outcome = loop {
        let (renew_at, holds_at) = (https.renew_at, holds.recheck_at);
        tokio::select! {
            () = cancel.cancelled() => break Ok(None),
            c = changes.changed() => {
                if c.is_err() {
                    break Ok(None);
                }
                // Holds first, so a new push outside its window is never fetched in between.
                send_holds(core, peer, &mut send, &mut holds).await?;
                if !send_updates(core, peer, &mut send, &mut sent).await? {
                    break Ok(None);
                }
                send_https(core, peer, &mut send, &mut https, false).await?;
            }
            () = sleep_until(renew_at), if renew_at.is_some() => {
                send_https(core, peer, &mut send, &mut https, true).await?;
            }
            () = sleep_until(holds_at), if holds_at.is_some() => {
                send_holds(core, peer, &mut send, &mut holds).await?;
            }
            frame = rx.recv() => match frame {
                Some(Ok(Some(Message::NodeStats(s)))) => {
                    let (site, node) = (peer.site.to_string(), peer.node.to_string());
                    core.db.call(move |c| db::sites::node_stats(c, &site, &node, &s)).await?;
                }
                Some(Ok(Some(Message::HoldsRequest(_)))) => {
                    peer.honors_holds.store(true, Ordering::Relaxed);
                    holds.asked = true;
                    send_holds(core, peer, &mut send, &mut holds).await?;
                }
                Some(Ok(Some(Message::HttpsCertRequest(r)))) => {
                    https.csr = Some(r.csr_pem);
                    match send_https(core, peer, &mut send, &mut https, true).await {
                        Err(Error::BadRequest(m)) => break Ok(Some(m)),
                        r => r?,
                    }
                }
                Some(Ok(Some(Message::StatusReport(r)))) => {
                    core.flush_accounting().await?;
                    let site = peer.site.to_string();
                    let changed = core.db.call(move |c| {
                        db::pushes::apply_report_completing(c, &site, &r)
                    }).await?;
                    if let Some(moved) = changed {
                        core.pushes_changed();
                        if !moved.released.is_empty() {
                            core.sites_changed(); // a rollout reached more sites
                        }
                        // A push finishing here may release the lower priorities it held.
                        send_holds(core, peer, &mut send, &mut holds).await?;
                        for push in moved.completed {
                            if let Err(e) = core.collect_replaced(Some(push)).await {
                                tracing::warn!(error = %e, push, "collecting the versions a completed push replaced failed");
                            }
                        }
                    }
                    let (site, node) = (peer.site.to_string(), peer.node.to_string());
                    core.db.call(move |c| db::sites::node_seen(c, &site, &node, None, true)).await?;
                }
                Some(Ok(Some(other))) => break Ok(Some(format!("unexpected {} on the control stream", other.name()))),
                Some(Err(e)) if e.is_malformed() => break Ok(Some(e.to_string())),
                Some(Ok(None)) | None => break Ok(None),
                Some(Err(e)) => break Err(Error::from(e)),
            }
        }
    };
    drop(rx);
    match outcome {
        Ok(Some(problem)) => {
            if let Ok(recv) = reader.await {
                reject(core, Some(peer), send, recv, ErrorCode::BadRequest, problem).await;
            }
            Ok(())
        }
        Ok(None) => {
            reader.abort();
            let _ = send.finish();
            Ok(())
        }
        Err(e) => {
            reader.abort();
            Err(e)
        }
    }
}

/// What was last sent as `Holds` to an edge that asked for them.
#[derive(Default)]
struct HoldsSent {
    asked: bool,
    last: Option<Vec<BlobId>>,
    /// When the clock alone may change them (the next window edge or start time).
    recheck_at: Option<tokio::time::Instant>,
}

/// Send the edge its site's held blobs if it asked for them and they changed since the last
/// `Holds`; note when to look again.
async fn send_holds(
    core: &Core,
    peer: &Peer,
    send: &mut SendStream,
    holds: &mut HoldsSent,
) -> Result<()> {
    if !holds.asked {
        return Ok(());
    }
    let site = peer.site.to_string();
    let now_ms = crate::util::now_millis();
    let Some(gates) = core
        .db
        .call(move |c| db::schedule::gates(c, &site, now_ms / 1000))
        .await?
    else {
        return Ok(());
    };
    holds.recheck_at = gates.next.map(|at| {
        let ms = (at * 1000 - now_ms).max(0);
        tokio::time::Instant::now() + Duration::from_millis(ms.unsigned_abs())
    });
    let blobs: Vec<BlobId> = gates.blobs.into_iter().collect();
    if holds.last.as_ref() == Some(&blobs) {
        return Ok(());
    }
    tracing::info!(held = blobs.len(), pushes = ?gates.pushes.keys().collect::<Vec<_>>(), "sending transfer holds");
    write(
        core,
        peer,
        send,
        &Message::Holds(Holds {
            blobs: blobs.clone(),
        }),
    )
    .await?;
    holds.last = Some(blobs);
    Ok(())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Send the edge an HTTPS certificate for its site's names if it asked for one and (unless
/// `force`) the names moved since the last one. `BadRequest` if its CSR is unusable.
async fn send_https(
    core: &Core,
    peer: &Peer,
    send: &mut SendStream,
    https: &mut Https,
    force: bool,
) -> Result<()> {
    let Some(csr) = &https.csr else {
        return Ok(());
    };
    let site = peer.site.to_string();
    let Some(names) = core
        .db
        .call(move |c| db::sites::https_names(c, &site))
        .await?
    else {
        return Ok(());
    };
    if !force && https.names.as_ref() == Some(&names) {
        return Ok(());
    }
    let chain_pem = if names.is_empty() {
        tracing::warn!(
            "this edge asks for an HTTPS certificate but its site lists no HTTPS names (ctl site https-names)"
        );
        String::new()
    } else {
        core.ca.sign_https_csr(csr, &names)?
    };
    tracing::info!(names = ?names, "HTTPS certificate issued");
    let msg = Message::HttpsCert(HttpsCert {
        names: names.clone(),
        chain_pem,
    });
    write(core, peer, send, &msg).await?;
    https.names = Some(names);
    https.renew_at = Some(tokio::time::Instant::now() + HTTPS_RENEW);
    Ok(())
}

async fn write(core: &Core, peer: &Peer, send: &mut SendStream, msg: &Message) -> Result<()> {
    let n = write_frame(send, msg).await?;
    core.count_sent(&peer.site, None, 0, n as u64);
    Ok(())
}

/// Send config / desired state if their revisions moved past what was sent. False if the site
/// no longer exists (the stream should end).
async fn send_updates(
    core: &Core,
    peer: &Peer,
    send: &mut SendStream,
    sent: &mut (u64, u64),
) -> Result<bool> {
    let site = peer.site.to_string();
    let Some((desired_rev, config_rev)) = core
        .db
        .call(move |c| db::sites::revisions(c, &site))
        .await?
    else {
        return Ok(false);
    };
    if config_rev != sent.1 {
        let site = peer.site.to_string();
        if let Some(config) = core
            .db
            .call(move |c| db::access::site_config(c, &site))
            .await?
        {
            sent.1 = config.revision;
            write(
                core,
                peer,
                send,
                &Message::SiteConfig(SiteConfigMsg { config }),
            )
            .await?;
        }
    }
    if desired_rev != sent.0 {
        let site = peer.site.to_string();
        if let Some((revision, artifacts)) = core
            .db
            .call(move |c| db::pushes::desired_state(c, &site))
            .await?
        {
            sent.0 = revision;
            tracing::debug!(
                revision,
                artifacts = artifacts.len(),
                "sending desired state"
            );
            write(
                core,
                peer,
                send,
                &Message::DesiredState(DesiredState {
                    revision,
                    artifacts,
                }),
            )
            .await?;
            let site = peer.site.to_string();
            if let Some(images) = core
                .db
                .call(move |c| db::images::site_state(c, &site, revision))
                .await?
            {
                write(core, peer, send, &Message::ImageState(images)).await?;
            }
        }
    }
    Ok(true)
}
