//! The long-running ctl commands' helpers: uploads with a progress bar, registry pushes'
//! reports, waiting on a push, and watching one live.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{output, seg, ApiError, Client, Output};

pub(super) async fn upload(
    c: &Client,
    out: Output,
    file: &std::path::Path,
    path: &str,
) -> Result<Value, ApiError> {
    let meta = std::fs::metadata(file)
        .map_err(|e| ApiError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    if !meta.is_file() {
        return Err(ApiError::Invalid(format!(
            "{} is not a regular file (a directory?): `artifact upload` takes one file",
            file.display()
        )));
    }
    let bar = progress_bar(meta.len(), "uploading");
    let b = bar.clone();
    let v = c.upload(file, path, move |n| b.inc(n)).await;
    bar.finish_and_clear();
    let v = v?;
    if out == Output::Text {
        println!(
            "uploaded {} ({} bytes, sha256 {})",
            v["path"].as_str().unwrap_or(path),
            v["size"],
            v["sha256"].as_str().unwrap_or("?")
        );
        for p in v["delivered_by"].as_array().into_iter().flatten() {
            println!("delivered by push {p} (a push following this path)");
        }
        let kept: Vec<&str> = v["kept_old_at"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !kept.is_empty() {
            println!(
                "sites keeping their old version until it is pushed to them: {}",
                kept.join(", ")
            );
        }
        for e in v["follow_errors"].as_array().into_iter().flatten() {
            eprintln!("warning: not delivered: {}", e.as_str().unwrap_or("?"));
        }
        return Ok(Value::Null);
    }
    Ok(v)
}

/// The ctl token, which the registry takes as its credential.
pub(super) fn registry_token(c: &Client) -> Result<String, ApiError> {
    c.token()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Transport("no token (--token or SITECAST_TOKEN)".into()))
}

/// Print what `push-layout`/`push-archive` pushed (text: one line per tag and the counts).
pub(super) fn push_report(out: Output, repo: &str, v: Value) -> Result<ExitCode, ApiError> {
    if out == Output::Text {
        for t in v["tags"].as_array().into_iter().flatten() {
            println!(
                "{repo}:{} {}",
                t["tag"].as_str().unwrap_or("-"),
                t["digest"].as_str().unwrap_or("")
            );
        }
        println!(
            "{} blobs uploaded ({} bytes), {} already stored",
            v["blobs_uploaded"], v["bytes_uploaded"], v["blobs_already_stored"]
        );
    } else {
        output::print(out, &v);
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// A spinner with a message, for waits whose size is not known (hidden off a terminal).
pub(super) fn progress_spinner(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let s = indicatif::ProgressBar::new_spinner();
    s.set_message(what.to_owned());
    s.enable_steady_tick(Duration::from_millis(200));
    s
}

/// Push totals: (bytes needed, bytes sent) summed over sites.
pub(super) fn push_progress(v: &Value) -> (u64, u64) {
    let sites = v["sites"].as_array().map(Vec::as_slice).unwrap_or_default();
    let sum = |k: &str| {
        sites
            .iter()
            .map(|s| s[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    (sum("bytes_needed"), sum("payload_bytes"))
}

pub(super) async fn wait_push(
    c: &Client,
    out: Output,
    id: &str,
    timeout: Option<Duration>,
) -> Result<ExitCode, ApiError> {
    let start = Instant::now();
    // Until every site has said what it lacks the total is unknown: a spinner says so, and
    // the byte bar is drawn only once its total is known.
    let spinner = progress_spinner("waiting for the sites to report what they lack");
    let mut bar: Option<indicatif::ProgressBar> = None;
    let path = format!("/api/v1/pushes/{}", seg(id));
    let mut v = c.get(&path).await?;
    loop {
        let (needed, sent) = push_progress(&v);
        let sites = v["sites"].as_array().map_or(0, Vec::len);
        let pending = v["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["state"] == "pending")
            .count();
        if bar.is_none() && pending == 0 {
            spinner.finish_and_clear();
            bar = Some(progress_bar(needed.max(sent), "pushing"));
        }
        match &bar {
            Some(b) => {
                b.set_length(needed.max(sent));
                b.set_position(sent);
            }
            None => spinner.set_message(format!(
                "waiting for {pending} of {sites} sites to report what they lack"
            )),
        }
        let finish = || {
            spinner.finish_and_clear();
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
        };
        match v["state"].as_str() {
            Some("complete") => {
                finish();
                output::print(out, &v);
                return Ok(ExitCode::SUCCESS);
            }
            Some("failed") => {
                finish();
                output::print(out, &v);
                eprintln!("error: push {id} failed");
                return Ok(ExitCode::FAILURE);
            }
            Some("halted") => {
                finish();
                output::print(out, &v);
                eprintln!(
                    "error: push {id} halted: {} (`ctl push approve {id}` accepts the failures and goes on)",
                    v["rollout"]["halt_reason"].as_str().unwrap_or("its error threshold was passed")
                );
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        if left == Some(Duration::ZERO) {
            finish();
            output::print(out, &v);
            eprintln!(
                "error: push {id} not complete after {}s",
                timeout.unwrap_or_default().as_secs()
            );
            return Ok(ExitCode::FAILURE);
        }
        let wait_ms = left.map_or(5000, |l| l.as_millis().min(5000));
        v = c.get(&format!("{path}?wait_ms={wait_ms}")).await?;
    }
}

/// `push watch`: a progress bar per site from the push's event stream (a line per state change
/// when stderr is not a terminal); exits 0 when the push completes, 1 when it fails or is
/// cancelled.
pub(super) async fn watch_push(c: &Client, out: Output, id: &str) -> Result<ExitCode, ApiError> {
    let tty = std::io::stderr().is_terminal();
    let multi = indicatif::MultiProgress::new();
    let mut bars: std::collections::BTreeMap<String, (indicatif::ProgressBar, String)> =
        std::collections::BTreeMap::new();
    let mut last = Value::Null;
    c.events(&format!("/api/v1/pushes/{}/events", seg(id)), |name, v| {
        for s in v["sites"].as_array().into_iter().flatten() {
            let site = s["site"].as_str().unwrap_or("?").to_owned();
            let state = s["state"].as_str().unwrap_or("?").to_owned();
            let total = s["bytes_needed"].as_u64().filter(|n| *n > 0);
            let sent = s["payload_bytes"].as_u64().unwrap_or(0);
            let (bar, shown) = bars.entry(site.clone()).or_insert_with(|| {
                let b = if tty {
                    multi.add(progress_bar(0, &site))
                } else {
                    indicatif::ProgressBar::hidden()
                };
                (b, String::new())
            });
            bar.set_length(total.unwrap_or(sent).max(sent));
            bar.set_position(sent);
            bar.set_message(format!("{site} {state}"));
            if *shown != state {
                if !tty {
                    let until = s["held_until"]
                        .as_str()
                        .map_or(String::new(), |t| format!(" until {t}"));
                    eprintln!(
                        "{site}: {state}{until} ({sent} of {} bytes)",
                        total.unwrap_or(0)
                    );
                }
                *shown = state;
            }
        }
        last = v.clone();
        name != "end"
    })
    .await?;
    for (bar, _) in bars.values() {
        bar.finish_and_clear();
    }
    output::print(out, &last);
    match last["state"].as_str() {
        Some("complete") => Ok(ExitCode::SUCCESS),
        other => {
            eprintln!("error: push {id} {}", other.unwrap_or("ended"));
            Ok(ExitCode::FAILURE)
        }
    }
}
