//! `sitecast origin` and `sitecast edge`: load config, apply flags, run until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sitecast_edge::EdgeConfig;
use sitecast_origin::OriginConfig;
use tokio_util::sync::CancellationToken;

use crate::verify::{Side, VerifyArgs};

/// Flags of `sitecast origin` (they override the config file).
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct OriginArgs {
    #[command(subcommand)]
    command: Option<OriginCommand>,
    /// TOML config file (every field optional; see the README).
    #[arg(long, env = "SITECAST_ORIGIN_CONFIG")]
    config: Option<PathBuf>,
    /// Where the catalog, chunks and CA live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// REST API listen address.
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// QUIC listen address (UDP).
    #[arg(long)]
    quic_listen: Option<SocketAddr>,
    /// OCI registry listen address.
    #[arg(long)]
    registry_listen: Option<SocketAddr>,
    /// Read `--config` only if the file exists (defaults otherwise), as the systemd unit
    /// does; without this flag a missing config file is an error.
    #[arg(long, requires = "config")]
    config_optional: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Validate the configuration (file and flags), print the effective configuration as TOML
    /// and exit: status 0 if it is valid, 1 with the reason if not.
    #[arg(long, conflicts_with = "print_config")]
    check_config: bool,
}

/// `sitecast origin <command>`.
#[derive(Subcommand)]
enum OriginCommand {
    /// Check that the catalog and the chunk store agree (origin stopped); `--repair` fixes.
    Verify(VerifyArgs),
    /// Print the REST API's OpenAPI 3.1 document (JSON), as `GET /api/v1/openapi.json` serves
    /// it; needs no data dir or running origin.
    Openapi,
}

/// `sitecast edge <command>`.
#[derive(Subcommand)]
enum EdgeCommand {
    /// Check that the catalog and the chunk store agree (edge stopped); `--repair` fixes.
    Verify(VerifyArgs),
}

/// Flags of `sitecast edge` (they override the config file).
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct EdgeArgs {
    #[command(subcommand)]
    command: Option<EdgeCommand>,
    /// TOML config file (every field optional; see the README).
    #[arg(long, env = "SITECAST_EDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the catalog, chunks and identity live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Origin QUIC address, HOST:PORT.
    #[arg(long, env = "SITECAST_ORIGIN")]
    origin: Option<String>,
    /// One-time join token from `sitecast ctl site create` (needed only to enroll).
    #[arg(long, env = "SITECAST_JOIN_TOKEN")]
    join_token: Option<String>,
    /// This node's name within its site (default: the host name).
    #[arg(long)]
    node: Option<String>,
    /// HTTP listen address for devices.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Listen address for /metrics and /healthz.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// FTP control listen address for devices.
    #[arg(long)]
    ftp_listen: Option<SocketAddr>,
    /// SFTP (SSH) listen address for devices.
    #[arg(long)]
    sftp_listen: Option<SocketAddr>,
    /// OCI registry mirror listen address for kubelets and containerd.
    #[arg(long)]
    oci_listen: Option<SocketAddr>,
    /// Read `--config` only if the file exists (defaults otherwise), as the systemd unit
    /// does; without this flag a missing config file is an error.
    #[arg(long, requires = "config")]
    config_optional: bool,
    /// Print the effective configuration as TOML and exit (the join token is left out).
    #[arg(long)]
    print_config: bool,
    /// Validate the configuration (file, environment and flags), print the effective
    /// configuration as TOML (without the join token) and exit: status 0 if it is valid, 1
    /// with the reason if not.
    #[arg(long, conflicts_with = "print_config")]
    check_config: bool,
}

/// The config file at `path` (defaults without one). A missing file is an error unless
/// `optional`.
pub(crate) fn load_toml<T: serde::de::DeserializeOwned + Default>(
    path: Option<&PathBuf>,
    optional: bool,
) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no config file; using the defaults");
            return Ok(T::default());
        }
        Err(e) => return Err(e).with_context(|| format!("reading config file {}", path.display())),
    };
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The effective configuration as TOML on stdout; with `checked`, a line on stderr saying it
/// is valid.
fn print_config<T: serde::Serialize>(cfg: &T, checked: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let text = toml::to_string(cfg).context("rendering the configuration")?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the configuration to stdout")?;
    if checked {
        let _ = writeln!(std::io::stderr(), "the configuration is valid");
    }
    Ok(())
}

fn print_ready(v: &serde_json::Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

pub(crate) async fn origin(args: OriginArgs) -> anyhow::Result<ExitCode> {
    crate::init_tracing();
    match &args.command {
        Some(OriginCommand::Verify(v)) => return crate::verify::run(Side::Origin, v),
        Some(OriginCommand::Openapi) => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", sitecast_origin::openapi_json())?;
            out.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let mut cfg: OriginConfig = load_toml(args.config.as_ref(), args.config_optional)?;
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(a) = args.api_listen {
        cfg.api_listen = a;
    }
    if let Some(a) = args.quic_listen {
        cfg.quic_listen = a;
    }
    if let Some(a) = args.registry_listen {
        cfg.registry_listen = a;
    }
    let cfg = cfg.validate().context("invalid origin configuration")?;
    if args.print_config || args.check_config {
        print_config(&cfg, args.check_config)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cancel = CancellationToken::new();
    crate::cancel_on_signals(cancel.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(sitecast_origin::run(cfg, cancel.clone(), tx));
    if let Ok(r) = rx.await {
        print_ready(&serde_json::json!({
            "event": "ready",
            "api": r.api.to_string(),
            "quic": r.quic.to_string(),
            "registry": r.registry.to_string(),
            "admin_token_file": r.admin_token_file,
            "https": r.https,
        }));
    }
    server.await.context("origin task panicked")??;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn edge(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    crate::init_tracing();
    if let Some(EdgeCommand::Verify(v)) = &args.command {
        return crate::verify::run(Side::Edge, v);
    }
    let mut cfg: EdgeConfig = load_toml(args.config.as_ref(), args.config_optional)?;
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(o) = args.origin {
        cfg.origin = Some(o);
    }
    if let Some(t) = args.join_token {
        cfg.join_token = Some(t);
    }
    if let Some(n) = args.node {
        cfg.node = n;
    }
    if let Some(a) = args.http_listen {
        cfg.http_listen = a;
    }
    if let Some(a) = args.metrics_listen {
        cfg.metrics_listen = a;
    }
    if let Some(a) = args.ftp_listen {
        cfg.ftp.listen = a;
    }
    if let Some(a) = args.sftp_listen {
        cfg.sftp.listen = a;
    }
    if let Some(a) = args.oci_listen {
        cfg.oci.listen = a;
    }
    let cfg = cfg.validate().context("invalid edge configuration")?;
    if args.print_config || args.check_config {
        let mut shown = cfg.clone();
        shown.join_token = None;
        print_config(&shown, args.check_config)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cancel = CancellationToken::new();
    crate::cancel_on_signals(cancel.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(sitecast_edge::run(cfg, cancel.clone(), tx));
    if let Ok(r) = rx.await {
        let mut line = serde_json::json!({
            "event": "ready",
            "http": r.http.to_string(),
            "metrics": r.metrics.to_string(),
            "node": r.node,
        });
        if let Some(a) = r.ftp {
            line["ftp"] = a.to_string().into();
        }
        if let Some(a) = r.sftp {
            line["sftp"] = a.to_string().into();
        }
        if let Some(a) = r.oci {
            line["oci"] = a.to_string().into();
        }
        print_ready(&line);
    }
    server.await.context("edge task panicked")??;
    Ok(ExitCode::SUCCESS)
}
