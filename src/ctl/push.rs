//! `sitecast ctl push`: create pushes (schedule, windows, priority, waves or rolling), show,
//! steer (pause, resume, approve, retry, cancel) and follow them (watch, wait).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::progress::{wait_push, watch_push};
use super::{labels_json, output, parse_label, seg, ApiError, Client, Output};

#[derive(Subcommand)]
pub(super) enum PushCmd {
    /// Push content to sites, now or later, inside transfer windows; prints the push id.
    Create {
        /// Artifact paths or prefixes (repeatable).
        #[arg(long, num_args = 1.., required_unless_present = "images")]
        content: Vec<String>,
        /// Images (repeatable): `REPO:TAG`, `REPO@sha256:…`, or `REPO:PATTERN` with `*`/`?`
        /// (`REPO:*` is every tag), e.g. `docker.io/library/nginx:1.27`.
        #[arg(long = "image", num_args = 1..)]
        images: Vec<String>,
        /// Target sites by name (repeatable).
        #[arg(
            long = "site",
            num_args = 1..,
            required_unless_present_any = ["labels", "selector"],
            conflicts_with = "labels"
        )]
        sites: Vec<String>,
        /// Target sites by label k=v (repeatable; all must match).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Bandwidth limit per site (e.g. 5Mbit/s).
        #[arg(long, value_parser = crate::rate::parse_rate)]
        max_rate: Option<u64>,
        /// Start no earlier than this RFC 3339 time, e.g. 2026-12-05T01:00:00+08:00.
        #[arg(long = "at")]
        start_at: Option<String>,
        /// A transfer window in each site's own time zone, e.g. '* 01:00 4h' (repeatable);
        /// a transfer still running when it closes pauses and continues in the next one.
        #[arg(long = "window")]
        windows: Vec<String>,
        /// Target sites by a label expression, e.g. 'province=gansu,tier!=hub' or
        /// 'region in (north,west)' (with --label, both must match).
        #[arg(long, conflicts_with = "sites")]
        selector: Option<String>,
        /// Where pushes compete for a site, an unfinished one of higher priority holds the
        /// others (strict): -1000..=1000, default 0.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i64,
        #[command(flatten)]
        rollout: Box<RolloutArgs>,
        /// Follow the content: a version uploaded later to a path it covers is delivered to
        /// these sites by a new push with the same settings.
        #[arg(long)]
        follow: bool,
    },
    /// Show a push with per-site progress.
    Show { id: String },
    /// List pushes.
    List,
    /// Cancel a push at every site where it is not complete: their edges stop fetching it and
    /// keep (or go back to) what an earlier push gave them.
    Cancel { id: String },
    /// Pause a push at every site where it is unfinished: running transfers stop at a chunk
    /// boundary and keep what arrived.
    Pause { id: String },
    /// Resume a paused push from where each site stopped.
    Resume { id: String },
    /// Approve a push rolling out in waves: its next wave starts now; a halted rollout accepts
    /// the failures so far and goes on.
    Approve { id: String },
    /// Retry a push at its failed sites now (instead of at their next backoff time).
    Retry { id: String },
    /// Watch a push live (its event stream): a progress bar per site with rate and ETA; exit 0
    /// when it completes, 1 when it fails or is cancelled.
    Watch { id: String },
    /// Wait until a push completes (exit 0) or fails or times out (exit 1).
    Wait {
        id: String,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
}

/// How a push reaches its sites: every site at once unless `--waves` or `--rolling`.
#[derive(Args)]
pub(super) struct RolloutArgs {
    /// Roll out in waves of these sizes, in site-name order: counts or percentages of the
    /// push's sites, comma-separated (e.g. '5,20%'); the sites left over form a last wave.
    #[arg(long, value_delimiter = ',', conflicts_with = "rolling")]
    waves: Vec<String>,
    /// Of a wave, how many must be complete before the next starts by itself (a count or a
    /// percentage; default 100%).
    #[arg(long = "wave-success", requires = "waves")]
    success: Option<String>,
    /// Each next wave waits for `ctl push approve ID`.
    #[arg(long, requires = "waves")]
    approval: bool,
    /// Keep at most this many sites (or this percentage) transferring at once; the next
    /// starts as soon as one finishes.
    #[arg(long)]
    rolling: Option<String>,
    /// Halt the rollout when more sites than this (a count or a percentage) have failed.
    #[arg(long = "max-failures")]
    max_failures: Option<String>,
}

impl RolloutArgs {
    /// The `rollout` object of `POST /pushes` (null for every site at once).
    fn json(&self) -> Value {
        if self.waves.is_empty() && self.rolling.is_none() && self.max_failures.is_none() {
            return Value::Null;
        }
        let mut r = json!({});
        if !self.waves.is_empty() {
            r["waves"] = json!(self.waves);
        }
        for (k, v) in [
            ("rolling", &self.rolling),
            ("success", &self.success),
            ("max_failures", &self.max_failures),
        ] {
            if let Some(v) = v {
                r[k] = json!(v);
            }
        }
        if self.approval {
            r["approval"] = json!(true);
        }
        r
    }
}

/// Run one `ctl push` command.
pub(super) async fn run(c: &Client, out: Output, cmd: PushCmd) -> Result<ExitCode, ApiError> {
    let v = match cmd {
        PushCmd::Create {
            content,
            images,
            sites,
            labels,
            max_rate,
            start_at,
            windows,
            priority,
            selector,
            rollout,
            follow,
        } => {
            let labels = if labels.is_empty() {
                Value::Null
            } else {
                labels_json(&labels)?
            };
            let v = c
                .post(
                    "/api/v1/pushes",
                    &json!({"content": content, "images": images, "sites": sites, "labels": labels,
                        "max_rate": max_rate, "start_at": start_at, "windows": windows,
                        "priority": priority, "selector": selector,
                        "rollout": rollout.json(), "follow": follow}),
                )
                .await?;
            if out == Output::Text {
                println!("{}", output::id_text(&v["id"]));
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        PushCmd::Show { id } => c.get(&format!("/api/v1/pushes/{}", seg(&id))).await?,
        PushCmd::List => c.get("/api/v1/pushes").await?,
        PushCmd::Pause { id } => {
            c.post(&format!("/api/v1/pushes/{}/pause", seg(&id)), &json!({}))
                .await?
        }
        PushCmd::Resume { id } => {
            c.post(&format!("/api/v1/pushes/{}/resume", seg(&id)), &json!({}))
                .await?
        }
        PushCmd::Approve { id } => {
            c.post(&format!("/api/v1/pushes/{}/approve", seg(&id)), &json!({}))
                .await?
        }
        PushCmd::Retry { id } => {
            c.post(&format!("/api/v1/pushes/{}/retry", seg(&id)), &json!({}))
                .await?
        }
        PushCmd::Cancel { id } => {
            c.post(&format!("/api/v1/pushes/{}/cancel", seg(&id)), &json!({}))
                .await?
        }
        PushCmd::Watch { id } => return watch_push(c, out, &id).await,
        PushCmd::Wait { id, timeout } => {
            return wait_push(c, out, &id, timeout.map(Duration::from_secs)).await;
        }
    };
    output::print(out, &v);
    Ok(ExitCode::SUCCESS)
}
