//! Starting and supervising the origin: open state, bind listeners, announce readiness, run the
//! API server, the QUIC server and the accounting flusher as named tasks until cancelled.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sitecast_runtime::chunks::{DiskChunkStore, DiskOptions};
use sitecast_runtime::https::TlsIdentity;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ca::{write_private, Ca};
use crate::config::OriginConfig;
use crate::core::Core;
use crate::db::{self, Db};
use crate::error::{Error, Result};
use crate::util::{hash_secret, random_secret};

/// Where a running origin listens; sent once every listener is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginReady {
    /// REST API address.
    pub api: SocketAddr,
    /// QUIC address.
    pub quic: SocketAddr,
    /// OCI registry address.
    pub registry: SocketAddr,
    /// The admin token file.
    pub admin_token_file: PathBuf,
    /// Whether the API and registry listeners serve HTTPS.
    pub https: bool,
}

/// Read the admin token from `path`, creating the file with a fresh token if missing.
fn admin_token(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let t = t.trim().to_owned();
            if t.is_empty() {
                return Err(Error::Config(format!(
                    "admin token file {} is empty",
                    path.display()
                )));
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // New directories only 0700; an existing one (e.g. /etc/sitecast) is left alone.
                std::os::unix::fs::DirBuilderExt::mode(
                    std::fs::DirBuilder::new().recursive(true),
                    0o700,
                )
                .create(dir)
                .map_err(|e| Error::io("create", dir, e))?;
            }
            let t = random_secret();
            write_private(path, format!("{t}\n").as_bytes())?;
            tracing::info!(file = %path.display(), "wrote a new admin token");
            Ok(t)
        }
        Err(e) => Err(Error::io("read", path, e)),
    }
}

fn open(cfg: OriginConfig) -> Result<Arc<Core>> {
    // `run` created the directory (0700) when it locked it.
    let dir = &cfg.data_dir;
    let db = Db::open(&dir.join("origin.db"))?;
    db.blocking(|c| db::sites::all_offline(c))?;
    let store = DiskChunkStore::open(
        dir.join("chunks"),
        DiskOptions {
            fsync: cfg.fsync,
            ..DiskOptions::default()
        },
    )?;
    let ca = Ca::load_or_create(&dir.join("ca"))?;
    let token = admin_token(&cfg.admin_token_path())?;
    let hash = hash_secret(&token);
    db.blocking(|c| db::tokens::set_named(c, "admin", &hash))?;
    let pull = crate::upstream::PullThrough::new(&cfg.registry_upstreams)?;
    let limits = crate::api::ratelimit::RateLimits::new(&cfg.rate_limits)?;
    Ok(Core::new(cfg, db, store, ca, pull, limits))
}

/// Run the origin until `cancel`; `ready` receives the bound addresses once listening.
///
/// # Errors
/// Invalid configuration, unusable data directory, a listener that cannot bind, or a task
/// that fails while running.
pub async fn run(
    cfg: OriginConfig,
    cancel: CancellationToken,
    ready: oneshot::Sender<OriginReady>,
) -> Result<()> {
    let cfg = cfg.validate()?;
    // Held until `run` returns: a second origin on this data dir is refused at once.
    let _lock = sitecast_runtime::datadir::DataDirLock::acquire(&cfg.data_dir, "sitecast origin")?;
    let core = tokio::task::spawn_blocking(move || open(cfg)).await??;
    // Versions replaced before a crash (or by a version without this sweep) are collected now.
    if let Err(e) = core.collect_replaced(None).await {
        tracing::warn!(error = %e, "collecting replaced versions at start failed");
    }
    // Chunks of uploads a crash interrupted are collected in the background (a large store
    // takes a while to list; running uploads pin theirs).
    {
        let core = Arc::clone(&core);
        tokio::task::spawn_blocking(move || match core.collect_orphans() {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                chunks = n,
                "removed chunks of uploads interrupted by a crash"
            ),
            Err(e) => tracing::warn!(error = %e, "removing chunks of interrupted uploads failed"),
        });
    }
    let api_addr = core.cfg.api_listen;
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|source| Error::Bind {
            addr: api_addr,
            source,
        })?;
    let reg_addr = core.cfg.registry_listen;
    let reg_listener = tokio::net::TcpListener::bind(reg_addr)
        .await
        .map_err(|source| Error::Bind {
            addr: reg_addr,
            source,
        })?;
    let https = https_identity(&core)?;
    let endpoint = crate::quic::endpoint(&core)?;
    let info = OriginReady {
        api: listener.local_addr().map_err(|source| Error::Bind {
            addr: api_addr,
            source,
        })?,
        quic: endpoint.local_addr().map_err(|source| Error::Bind {
            addr: core.cfg.quic_listen,
            source,
        })?,
        registry: reg_listener.local_addr().map_err(|source| Error::Bind {
            addr: reg_addr,
            source,
        })?,
        admin_token_file: core.cfg.admin_token_path(),
        https: https.is_some(),
    };
    tracing::info!(api = %info.api, quic = %info.quic, registry = %info.registry, data_dir = %core.cfg.data_dir.display(), "origin listening");
    let _ = ready.send(info);

    let tasks_cancel = cancel.child_token();
    let mut tasks: JoinSet<(&'static str, Result<()>)> = JoinSet::new();
    serve_http(
        &mut tasks,
        "api",
        listener,
        crate::api::router(Arc::clone(&core)),
        https.clone(),
        &tasks_cancel,
    );
    serve_http(
        &mut tasks,
        "registry",
        reg_listener,
        crate::registry::router(Arc::clone(&core)),
        https,
        &tasks_cancel,
    );
    {
        let (core, c) = (Arc::clone(&core), tasks_cancel.clone());
        tasks.spawn(async move { ("quic", crate::quic::serve(core, endpoint, c).await) });
    }
    {
        let (core, c) = (Arc::clone(&core), tasks_cancel.clone());
        tasks.spawn(async move { ("accounting", flusher(core, c).await) });
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((name, Ok(()))) => {
                if !tasks_cancel.is_cancelled() {
                    tracing::error!(task = name, "task stopped unexpectedly; shutting down");
                    result = result.and(Err(Error::Task(name.to_owned())));
                }
            }
            Ok((name, Err(e))) => {
                tracing::error!(task = name, error = %e, "task failed; shutting down");
                result = result.and(Err(e));
            }
            Err(e) => {
                tracing::error!(error = %e, "task panicked; shutting down");
                result = result.and(Err(Error::from(e)));
            }
        }
        tasks_cancel.cancel();
    }
    if let Err(e) = core.flush_accounting().await {
        tracing::warn!(error = %e, "final accounting flush failed");
    }
    tracing::info!("origin stopped");
    result
}

/// Serve `app` on `listener` (HTTPS with `tls`) as the task `name` until `cancel`.
fn serve_http(
    tasks: &mut JoinSet<(&'static str, Result<()>)>,
    name: &'static str,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<TlsIdentity>,
    cancel: &CancellationToken,
) {
    let c = cancel.clone();
    tasks.spawn(async move {
        let r = sitecast_runtime::https::serve(
            listener,
            app,
            tls.as_ref(),
            sitecast_runtime::https::HEADER_TIMEOUT,
            c,
        )
        .await
        .map_err(|e| Error::io("serve", name, e));
        (name, r)
    });
}

/// The certificate of the API and registry listeners: the operator's files, or one issued
/// from the origin's CA for `tls.names`; `None` for plain HTTP (warned about unless both
/// listeners are on loopback).
fn https_identity(core: &Core) -> Result<Option<TlsIdentity>> {
    let t = &core.cfg.tls;
    let identity = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            Some(TlsIdentity::from_files(cert, key).map_err(|e| Error::Tls(format!("tls: {e}")))?)
        }
        _ if !t.names.is_empty() => {
            let (chain, key) = core.ca.issue_https(&t.names)?;
            Some(
                TlsIdentity::from_pem(chain.as_bytes(), key.as_bytes())
                    .map_err(|e| Error::Tls(format!("tls: {e}")))?,
            )
        }
        _ => None,
    };
    let loopback =
        core.cfg.api_listen.ip().is_loopback() && core.cfg.registry_listen.ip().is_loopback();
    if identity.is_none() && !loopback {
        tracing::warn!(
            api = %core.cfg.api_listen,
            registry = %core.cfg.registry_listen,
            "the REST API and registry are plain HTTP: tokens and passwords cross the network in the clear; set [tls] cert/key or tls.names"
        );
    }
    Ok(identity)
}

async fn flusher(core: Arc<Core>, cancel: CancellationToken) -> Result<()> {
    let mut tick = tokio::time::interval(core.cfg.accounting_flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if let Err(e) = core.flush_accounting().await {
                    tracing::warn!(error = %e, "accounting flush failed; retrying");
                    continue;
                }
                match core.db.call(|c| crate::db::pushes::sent_unfinished(c)).await {
                    Ok(rows) => core.rates.record(rows, std::time::Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "sampling transfer rates failed"),
                }
            }
        }
    }
}
