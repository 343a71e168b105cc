//! `sitecast-loadtest`: `run` (device fleet), `relay` (WAN impairment on UDP), `scenario`
//! (validate a WAN scenario and print it for the scripts).
//!
//! Exit codes: 0 success; 1 when a run had failed downloads (report still printed) or a
//! runtime error; 2 on bad usage or configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sitecast_loadtest::{
    read_env_file, resolve_items, run, run_relay, DataManifest, Error, Proto, RelayConfig, RunSpec,
    Scenario, Stop, Target,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "sitecast-loadtest",
    version,
    about = "Device-fleet load tool and WAN emulation for sitecast"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run N concurrent devices against an endpoint, verifying every SHA-256.
    Run(Box<RunArgs>),
    /// UDP relay with delay, jitter, loss and outages (for the QUIC path).
    Relay(RelayArgs),
    /// Validate a scenario file and print it as KEY=value lines.
    Scenario {
        /// Scenario TOML file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Protocol.
    #[arg(long, value_enum)]
    proto: Proto,
    /// Base URL (http://host:port[/prefix], ftp://host:port, sftp://host:port, registry http://…).
    /// Default: from --peers-env.
    #[arg(long)]
    url: Option<String>,
    /// A peers.env file (../shared/peers) supplying URL, credentials, keys for --proto.
    #[arg(long)]
    peers_env: Option<PathBuf>,
    /// User name (FTP: anonymous when absent).
    #[arg(long)]
    user: Option<String>,
    /// Password.
    #[arg(long)]
    password: Option<String>,
    /// SFTP private key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// SFTP known_hosts file.
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// SFTP: accept any host key.
    #[arg(long)]
    insecure_host_key: bool,
    /// SFTP: directory prepended to paths (peers without chroot).
    #[arg(long)]
    sftp_root: Option<String>,
    /// Path to fetch (repeatable; devices cycle through them). OCI: repo:tag or repo@digest.
    #[arg(long = "path", required = false)]
    paths: Vec<String>,
    /// Expected SHA-256 (hex) of the single --path.
    #[arg(long)]
    sha256: Option<String>,
    /// manifest.json of make-testdata.py with the expected digests.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Concurrent devices.
    #[arg(long, short = 'c', default_value_t = 10)]
    clients: usize,
    /// Total downloads (default: one per device unless --duration).
    #[arg(long, short = 'n', conflicts_with = "duration")]
    requests: Option<u64>,
    /// Run for this long (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// New connection and login for every download.
    #[arg(long)]
    fresh: bool,
    /// Retry not-found / refused downloads until this long after the start (campaigns).
    #[arg(long, value_parser = humantime::parse_duration)]
    wait_available: Option<Duration>,
    /// Time limit per download attempt.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// OCI platform to pick from an index.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Label in the report.
    #[arg(long, default_value = "")]
    label: String,
    /// Print the report as one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RelayArgs {
    /// Listen address.
    #[arg(long)]
    listen: SocketAddr,
    /// Upstream (origin QUIC) address.
    #[arg(long)]
    upstream: SocketAddr,
    /// One-way delay per packet.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    delay: Duration,
    /// Uniform jitter around the delay.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    jitter: Duration,
    /// Loss: a fraction (0.01) or a percentage (1%).
    #[arg(long, default_value = "0", value_parser = parse_loss)]
    loss: f64,
    /// Outage period.
    #[arg(long, value_parser = humantime::parse_duration)]
    outage_every: Option<Duration>,
    /// Outage length within each period.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    outage_for: Duration,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
}

fn parse_loss(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad loss {s:?}"))?;
    let v = v / scale;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("loss {s:?} is not within 0..100%"))
    }
}

fn target_from(a: &RunArgs) -> Result<Target, Error> {
    let env = match &a.peers_env {
        Some(p) => read_env_file(p)?,
        None => BTreeMap::new(),
    };
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let (url, user, password, key, known_hosts, root) = match a.proto {
        Proto::Http => (get("PEER_HTTP_URL"), None, None, None, None, None),
        Proto::Ftp => (
            get("PEER_FTP_URL"),
            get("PEER_FTP_USER"),
            get("PEER_FTP_PASS"),
            None,
            None,
            None,
        ),
        Proto::Sftp => (
            get("PEER_SFTP_URL"),
            get("PEER_SFTP_USER"),
            None,
            get("PEER_SFTP_KEY"),
            get("PEER_SFTP_KNOWN_HOSTS"),
            get("PEER_SFTP_ROOT"),
        ),
        Proto::Oci => (get("PEER_REGISTRY_URL"), None, None, None, None, None),
    };
    Ok(Target {
        proto: a.proto,
        url: a
            .url
            .clone()
            .or(url)
            .ok_or_else(|| Error::Config("give --url or --peers-env".into()))?,
        user: a.user.clone().or(user),
        password: a.password.clone().or(password),
        key: a.key.clone().or(key.map(PathBuf::from)),
        known_hosts: a.known_hosts.clone().or(known_hosts.map(PathBuf::from)),
        insecure_host_key: a.insecure_host_key,
        sftp_root: a.sftp_root.clone().or(root),
        platform: a.platform.clone(),
        fresh_connections: a.fresh,
        timeout: a.timeout,
    })
}

fn oci_default_path(a: &RunArgs) -> Option<String> {
    let env = read_env_file(a.peers_env.as_ref()?).ok()?;
    let repo = env.get("PEER_OCI_REPO")?;
    let tag = env.get("PEER_OCI_TAGS")?.split(',').next()?.to_string();
    Some(format!("{repo}:{tag}"))
}

async fn cmd_run(a: RunArgs) -> Result<ExitCode, Error> {
    let target = target_from(&a)?;
    let manifest = match &a.manifest {
        Some(p) => Some(DataManifest::load(p)?),
        None => None,
    };
    let mut paths = a.paths.clone();
    if paths.is_empty() && a.proto == Proto::Oci {
        paths.extend(oci_default_path(&a));
    }
    let items = resolve_items(a.proto, &paths, a.sha256.as_deref(), manifest.as_ref())?;
    let stop = match (a.requests, a.duration) {
        (_, Some(d)) => Stop::Duration(d),
        (Some(n), None) => Stop::Total(n),
        (None, None) => Stop::Total(a.clients as u64),
    };
    let report = run(RunSpec {
        target,
        items,
        clients: a.clients,
        stop,
        wait_available: a.wait_available,
        label: a.label.clone(),
    })
    .await?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| Error::Protocol(e.to_string()))?
        );
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn cmd_relay(a: RelayArgs) -> Result<ExitCode, Error> {
    let cfg = RelayConfig {
        listen: a.listen,
        upstream: a.upstream,
        delay: a.delay,
        jitter: a.jitter,
        loss: a.loss,
        outage_every: a.outage_every,
        outage_for: a.outage_for,
        seed: a.seed,
        ..Default::default()
    };
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run_relay(cfg, cancel.clone(), tx));
    let Ok(addr) = rx.await else {
        return match task.await {
            Ok(Err(e)) => Err(e),
            _ => Err(Error::Config("relay did not start".into())),
        };
    };
    println!(
        "{}",
        serde_json::json!({"event": "ready", "listen": addr.to_string()})
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();
    let stats = task
        .await
        .map_err(|e| Error::Config(format!("relay task: {e}")))??;
    println!(
        "{}",
        serde_json::json!({"event": "stopped", "stats": stats})
    );
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Run(a) => cmd_run(*a).await,
            Cmd::Relay(a) => cmd_relay(a).await,
            Cmd::Scenario { file } => {
                let s = Scenario::load(&file)?;
                print!("{}", s.to_env()?);
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(e, Error::Config(_)) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
