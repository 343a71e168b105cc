//! `sitecast origin verify` and `sitecast edge verify`: flags, the data dir from the config
//! file, and the report on stdout. The checks live in `sitecast_origin::verify` and
//! `sitecast_edge::verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use sitecast_runtime::verify::{VerifyOptions, VerifyReport};

/// Flags of `verify` (both sides).
#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// TOML config file: only its `data_dir` is used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The data dir to check (default: the config's, else the built-in default).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Fix what can be fixed: remove corrupt, misnamed, temporary and unreferenced files;
    /// unpublish what cannot be served (the edge fetches it again).
    #[arg(long)]
    repair: bool,
    /// Also reassemble every blob and check its SHA-256 (reads the store twice).
    #[arg(long)]
    deep: bool,
    /// `text` (a summary) or `json` (the counts and problem lines).
    #[arg(long, value_enum, default_value = "text")]
    output: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy)]
pub(crate) enum Side {
    Origin,
    Edge,
}

fn data_dir(side: Side, args: &VerifyArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &args.data_dir {
        return Ok(d.clone());
    }
    Ok(match side {
        Side::Origin => {
            let cfg: sitecast_origin::OriginConfig =
                crate::serve::load_toml(args.config.as_ref(), false)?;
            cfg.data_dir
        }
        Side::Edge => {
            let cfg: sitecast_edge::EdgeConfig =
                crate::serve::load_toml(args.config.as_ref(), false)?;
            cfg.data_dir
        }
    })
}

/// Run the check; exit 0 when clean (or everything found was repaired), 1 otherwise.
pub(crate) fn run(side: Side, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let dir = data_dir(side, args)?;
    let opts = VerifyOptions {
        repair: args.repair,
        deep: args.deep,
    };
    let report: VerifyReport = match side {
        Side::Origin => sitecast_origin::verify(&dir, opts)
            .with_context(|| format!("verifying origin data dir {}", dir.display()))?,
        Side::Edge => sitecast_edge::verify(&dir, opts)
            .with_context(|| format!("verifying edge data dir {}", dir.display()))?,
    };
    let text = match args.output {
        Format::Text => report.render_text(),
        Format::Json => {
            let mut v = serde_json::to_value(&report).context("rendering the report")?;
            v["clean"] = report.clean().into();
            format!("{v}\n")
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the report to stdout")?;
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
