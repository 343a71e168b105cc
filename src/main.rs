//! `sitecast`: one binary for the origin, the edge, the admin client and the demo.
//!
//! Errors: library crates return their own typed errors; this binary wraps them with
//! `anyhow::Context` at the edges (startup, config files) and prints them once.

mod ctl;
mod demo;
mod demo_image;
mod rate;
mod serve;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Push software once per site over QUIC; serve it locally over HTTP.
#[derive(Parser)]
#[command(name = "sitecast", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cloud origin: REST API, catalog, QUIC server.
    Origin(serve::OriginArgs),
    /// Run an edge cache at a site: QUIC session to the origin, local HTTP server.
    Edge(serve::EdgeArgs),
    /// Admin client of the origin's REST API.
    Ctl(ctl::CtlArgs),
    /// Origin and one site on loopback with sample content, until Ctrl-C.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report_error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Origin(args) => serve::origin(args).await,
            Command::Edge(args) => serve::edge(args).await,
            Command::Ctl(args) => ctl::run(args).await,
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// A command line clap refused (or `--help`/`--version`). With `--output json` a usage error
/// is the error document on stdout like every other `ctl` failure (code `usage`, exit 2);
/// otherwise clap prints it as usual.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let help = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if help || !json_output_asked(std::env::args_os().skip(1)) {
        let _ = e.print();
        return ExitCode::from(if help { 0 } else { 2 });
    }
    let rendered = e.render().to_string();
    let first = rendered.split("\n\n").next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first).trim();
    let v = serde_json::json!({"error": {"code": "usage", "message": message, "status": null}});
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    ExitCode::from(2)
}

/// Whether the arguments ask for `--output json` (either spelling), before clap has parsed
/// them.
fn json_output_asked(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let mut prev_was_flag = false;
    for a in args {
        let a = a.to_string_lossy();
        if a == "--output=json" || (prev_was_flag && a == "json") {
            return true;
        }
        prev_was_flag = a == "--output";
    }
    false
}

/// `error: MESSAGE` on stderr, if stderr is still there (never a panic).
fn report_error(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "error: {message}");
}

/// Log to stderr, `RUST_LOG` or `info` by default; JSON when `SITECAST_LOG_FORMAT=json`.
///
/// A log line that cannot be written (stderr closed: `sitecast edge 2>&1 | head`) is dropped.
/// tracing-subscriber would otherwise report it with `eprintln!`, which panics on a closed
/// stderr, and a panic in the task that logs "shutting down" left the process deaf to SIGTERM.
pub(crate) fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("SITECAST_LOG_FORMAT").as_deref() == Ok("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Cancel `token` on SIGINT or SIGTERM.
pub(crate) fn cancel_on_signals(token: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = tokio::signal::ctrl_c().await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}
