//! The control stream: `Hello` → `Welcome`, then site configs and desired states from the
//! origin, and status reports from the edge (a full one after `Welcome`, then the changed
//! entries, coalesced over [`COALESCE`]). The edge asks for transfer holds after `Welcome` and
//! keeps the origin's latest `Holds`: the fetcher skips held blobs until released.
//!
//! State is only touched by messages that decoded; a malformed or unexpected frame ends the
//! stream with `ErrorMsg{BadRequest}` naming the problem, and the session reconnects.

use std::sync::Arc;
use std::time::Duration;

use sitecast_protocol::wire::{
    ArtifactStatus, DesiredState, ErrorCode, ErrorMsg, Hello, Holds, HoldsRequest, HttpsCert,
    HttpsCertRequest, ImageState, Message, StatusReport,
};
use sitecast_protocol::{SiteConfig, SOFTWARE_VERSION};
use sitecast_runtime::framed::{read_frame, write_frame};

use super::state::{plan, Shared};
use crate::core::Core;
use crate::error::{blocking, Error};

/// Longest a status change waits to be reported together with others.
pub(crate) const COALESCE: Duration = Duration::from_millis(250);
/// The shortest gap between two `NodeStats` sent because what the node serves changed.
const STATS_SOON: Duration = Duration::from_secs(2);

/// An established control stream.
pub(crate) struct Control {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

/// Load the persisted desired state and transfer statuses into `shared` (on start).
pub(crate) async fn load(core: &Arc<Core>, shared: &Arc<Shared>) -> Result<(), Error> {
    let catalog = core.catalog.clone();
    let (desired, transfers) = blocking("load state", move || {
        Ok((catalog.desired()?, catalog.transfers()?))
    })
    .await?;
    let existing = transfers
        .into_iter()
        .map(|t| (t.path.as_str().to_owned(), t))
        .collect();
    let planned = plan(&desired, &core.catalog.published(), &existing, false);
    let mut st = shared.lock();
    st.desired = desired;
    st.transfers = planned;
    st.gc_needed = true;
    Ok(())
}

/// Send `Hello` and wait for `Welcome`.
pub(crate) async fn hello(
    core: &Arc<Core>,
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
) -> Result<Control, Error> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = Hello {
        software: SOFTWARE_VERSION.to_owned(),
        config_revision: core.site_config().revision,
        desired_revision: shared.lock().desired.revision,
    };
    write_frame(&mut send, &hello.into()).await?;
    match read_frame(&mut recv).await? {
        Some(Message::Welcome(w)) => {
            tracing::info!(site = %w.site, node = %w.node, origin_version = %w.software, "connected to origin");
            Ok(Control { send, recv })
        }
        Some(Message::Error(e)) => Err(Error::Protocol(format!(
            "origin refused the session ({:?}): {}{}",
            e.code,
            e.message,
            if e.code == ErrorCode::Unauthorized {
                " — was this node or its site deleted? Remove <data_dir>/identity and enroll with a fresh join token"
            } else {
                ""
            }
        ))),
        Some(other) => Err(Error::Protocol(format!(
            "expected Welcome, got {}",
            other.name()
        ))),
        None => Err(Error::Protocol(
            "origin closed the control stream before Welcome".into(),
        )),
    }
}

async fn apply_config(core: &Arc<Core>, cfg: SiteConfig) -> Result<(), Error> {
    let catalog = core.catalog.clone();
    let stored = cfg.clone();
    blocking("save site config", move || {
        catalog.save_site_config(&stored)
    })
    .await?;
    tracing::info!(
        revision = cfg.revision,
        users = cfg.users.len(),
        grants = cfg.grants.len(),
        "site config applied"
    );
    core.set_site_config(cfg);
    Ok(())
}

async fn apply_desired(
    core: &Arc<Core>,
    shared: &Arc<Shared>,
    mut desired: DesiredState,
) -> Result<(), Error> {
    desired.artifacts.retain(|a| {
        let ok = !a.path.is_root();
        if !ok {
            tracing::warn!(blob = %a.blob.short(), "ignoring a desired artifact at the root path");
        }
        ok
    });
    let catalog = core.catalog.clone();
    let stored = desired.clone();
    let gone = blocking("save desired state", move || catalog.save_desired(&stored)).await?;
    for p in &gone {
        tracing::info!(path = %p, "unpublished: no longer desired");
    }
    let published = core.catalog.published();
    let changed: Vec<ArtifactStatus> = {
        let mut st = shared.lock();
        let newer = desired.revision != st.desired.revision;
        let planned = plan(&desired, &published, &st.transfers, newer);
        let changed: Vec<ArtifactStatus> = planned
            .values()
            .filter(|s| st.transfers.get(s.path.as_str()) != Some(*s))
            .cloned()
            .collect();
        if newer {
            // A new desired state (a push, an admin's retry) retries failures at once.
            st.failed_at.clear();
            st.failures.clear();
        } else {
            st.failed_at.retain(|k, _| planned.contains_key(k));
            st.failures.retain(|k, _| planned.contains_key(k));
        }
        st.dirty = planned.keys().cloned().collect();
        st.transfers = planned;
        st.desired = desired.clone();
        st.gc_needed = true;
        changed
    };
    tracing::info!(
        revision = desired.revision,
        artifacts = desired.artifacts.len(),
        changed = changed.len(),
        "desired state applied"
    );
    let catalog = core.catalog.clone();
    blocking("save transfers", move || {
        changed.iter().try_for_each(|s| catalog.save_transfer(s))
    })
    .await?;
    shared.report.notify_one();
    shared.work.notify_one();
    Ok(())
}

/// Replace the set of held blobs; a released one is picked up by the fetcher at once.
fn apply_holds(shared: &Shared, h: Holds) {
    let held: std::collections::HashSet<_> = h.blobs.into_iter().collect();
    let mut st = shared.lock();
    let released = st.held.difference(&held).count();
    let added = held.difference(&st.held).count();
    if released + added > 0 {
        tracing::info!(
            held = held.len(),
            released,
            "transfer holds applied (outside their transfer windows)"
        );
    }
    st.held = held;
    drop(st);
    shared.work.notify_one();
}

async fn apply_images(core: &Arc<Core>, state: ImageState) -> Result<(), Error> {
    let (catalog, stored) = (core.catalog.clone(), state.clone());
    blocking("save image state", move || {
        catalog.save_image_state(&stored)
    })
    .await?;
    tracing::info!(
        revision = state.revision,
        repositories = state.repos.len(),
        "image state applied"
    );
    crate::oci::publish::refresh(core).await
}

async fn apply_https(core: &Arc<Core>, cert: HttpsCert) -> Result<(), Error> {
    let c = core.clone();
    blocking("install the HTTPS certificate", move || match &c.https {
        Some(h) => h.apply(&cert),
        None => Err(Error::Protocol(
            "the origin sent an HTTPS certificate this edge did not ask for".into(),
        )),
    })
    .await
}

fn report(shared: &Shared, full: bool) -> Option<StatusReport> {
    let mut st = shared.lock();
    let keys: Vec<String> = if full {
        st.dirty.clear();
        st.transfers.keys().cloned().collect()
    } else {
        std::mem::take(&mut st.dirty).into_iter().collect()
    };
    let artifacts: Vec<ArtifactStatus> = keys
        .iter()
        .filter_map(|k| st.transfers.get(k).cloned())
        .collect();
    if !full && artifacts.is_empty() && st.reported_revision == Some(st.desired.revision) {
        return None;
    }
    st.reported_revision = Some(st.desired.revision);
    Some(StatusReport {
        desired_revision: st.desired.revision,
        artifacts,
    })
}

/// Run the established control stream until it fails; returns why it ended.
pub(crate) async fn run(core: Arc<Core>, shared: Arc<Shared>, control: Control) -> Error {
    let Control { mut send, mut recv } = control;
    // The reader answers (error, whether the origin sent something we refuse as bad input).
    let reader = async {
        loop {
            let msg = match read_frame(&mut recv).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    return (
                        Error::Protocol("origin finished the control stream".into()),
                        false,
                    )
                }
                Err(e) if e.is_malformed() => {
                    return (
                        Error::Protocol(format!("bad frame on control stream: {e}")),
                        true,
                    )
                }
                Err(e) => return (e.into(), false),
            };
            let outcome = match msg {
                Message::SiteConfig(m) => apply_config(&core, m.config).await,
                Message::DesiredState(d) => apply_desired(&core, &shared, d).await,
                Message::ImageState(s) => apply_images(&core, s).await,
                Message::Holds(h) => {
                    apply_holds(&shared, h);
                    Ok(())
                }
                Message::HttpsCert(c) if core.https.is_some() => {
                    match apply_https(&core, c).await {
                        Err(Error::Tls(m)) => {
                            let msg = format!("unusable HTTPS certificate from the origin: {m}");
                            return (Error::Protocol(msg), true);
                        }
                        r => r,
                    }
                }
                Message::Error(e) => {
                    let msg = format!("origin error ({:?}): {}", e.code, e.message);
                    return (Error::Protocol(msg), false);
                }
                other => {
                    let msg = format!("unexpected {} on the control stream", other.name());
                    return (Error::Protocol(msg), true);
                }
            };
            if let Err(e) = outcome {
                return (e, false);
            }
        }
    };
    let writer = async {
        // This edge honours transfer holds (an origin without them would refuse the kind).
        if let Err(e) = write_frame(&mut send, &HoldsRequest {}.into()).await {
            return Error::from(e);
        }
        if let Some(h) = &core.https {
            let req = HttpsCertRequest {
                csr_pem: h.csr_pem().to_owned(),
            };
            if let Err(e) = write_frame(&mut send, &req.into()).await {
                return Error::from(e);
            }
            tracing::debug!("HTTPS certificate requested");
        }
        let mut full = true;
        // When NodeStats were last sent, and how many artifacts they said it serves.
        let mut stats_sent: Option<(tokio::time::Instant, usize)> = None;
        // Every EVERY, and STATS_SOON after the last when what it serves changed.
        let stats_wake = |sent: Option<(tokio::time::Instant, usize)>| {
            sent.map(|(at, held)| {
                let changed = held != core.catalog.published().len();
                at + if changed {
                    STATS_SOON
                } else {
                    super::stats::EVERY
                }
            })
        };
        loop {
            let now = tokio::time::Instant::now();
            if stats_wake(stats_sent).is_none_or(|t| now >= t) {
                stats_sent = Some((now, core.catalog.published().len()));
                match super::stats::collect(&core, &shared).await {
                    Ok(s) => {
                        if let Err(e) = write_frame(&mut send, &s.into()).await {
                            return Error::from(e);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "measuring the node for the origin failed")
                    }
                }
            }
            if let Some(r) = report(&shared, full) {
                let n = r.artifacts.len();
                if let Err(e) = write_frame(&mut send, &r.into()).await {
                    return Error::from(e);
                }
                tracing::debug!(full, artifacts = n, "status report sent");
            }
            full = false;
            let wake = stats_wake(stats_sent).unwrap_or(now);
            tokio::select! {
                () = shared.report.notified() => tokio::time::sleep(COALESCE).await,
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    };
    let (err, bad_input) = tokio::select! {
        r = reader => r,
        e = writer => (e, false),
    };
    if bad_input {
        let msg = ErrorMsg {
            code: ErrorCode::BadRequest,
            message: err.to_string(),
        };
        let _ = write_frame(&mut send, &msg.into()).await;
        let _ = send.finish();
    }
    err
}
