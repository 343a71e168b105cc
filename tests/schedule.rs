//! Scheduling (issue 11) on real processes: a push waits for its start time and for the
//! transfer windows of the push and of the site, read in the site's own time zone; a transfer
//! still running when a window closes pauses at a chunk boundary and continues when one opens,
//! with nothing sent twice; a held push does not block the site's other pushes.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// Asia/Kolkata is UTC+05:30 all year (no DST), so the test can read the site's clock.
const TZ: &str = "Asia/Kolkata";
const TZ_OFFSET: u64 = 5 * 3600 + 30 * 60;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A daily window opening `from_now` seconds from now (site time, minute precision, so
/// `from_now` should be a whole number of hours away from the edges it tests) lasting `len`.
fn window(from_now: i64, len: &str) -> String {
    let local = (unix_now() + TZ_OFFSET).cast_signed() + from_now;
    let day = local.rem_euclid(86_400);
    format!("* {:02}:{:02} {len}", day / 3600, day / 60 % 60)
}

fn site_of<'a>(push: &'a Value, site: &str) -> &'a Value {
    push["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == site)
        .unwrap_or_else(|| panic!("no site {site} in {push}"))
}

/// `ctl ARGS` fails (exit 1) saying `why`.
fn refused(env: &TestEnv, origin: &Origin, args: &[&str], why: &str) {
    let out = origin.ctl(env, args);
    assert!(out.code == Some(1) && out.stderr.contains(why), "{out:?}");
}

/// Wait (at most 30 s) until the edge's log says `what`.
fn wait_log(env: &TestEnv, edge: &Edge, what: &str) {
    let said = || std::fs::read_to_string(edge.log()).is_ok_and(|l| l.contains(what));
    assert!(
        eventually(env.cap(Duration::from_secs(30)), said),
        "the edge never logged {what:?}"
    );
}

#[test]
fn pushes_wait_for_their_start_and_windows_and_pause_without_resending() {
    let env = TestEnv::new("schedule", Duration::from_secs(180));
    let origin = Origin::start(&env);

    // Bad input: one clear answer, nothing created.
    refused(
        &env,
        &origin,
        &["site", "create", "x", "--time-zone", "Mars/Olympus"],
        "IANA",
    );
    let token = origin.create_site(&env, "farm", &["--time-zone", TZ]);
    let site = origin.ctl_json(&env, &["site", "show", "farm"]);
    assert_eq!(site["time_zone"], TZ, "{site}");
    for f in ["a", "b", "c"] {
        let file = env.path(&format!("{f}.bin"));
        write_random(&file, u64::from(f.as_bytes()[0]), 6 << 20);
        origin.upload(&env, &file, &format!("/fw/{f}.bin"));
    }
    refused(
        &env,
        &origin,
        &[
            "push",
            "create",
            "--content",
            "/fw/a.bin",
            "--site",
            "farm",
            "--window",
            "funday",
        ],
        "mon-fri 01:00 4h",
    );
    assert_eq!(
        origin.ctl_json(&env, &["push", "list"])["pushes"],
        Value::Array(vec![])
    );

    let edge = Edge::start(&env, origin.quic, Some(&token), &env.path("edge"), &[]);

    // A: its own window opens in two hours; it waits and is never fetched.
    let closed = window(2 * 3600, "1h");
    let a = origin.push(
        &env,
        &[
            "--content",
            "/fw/a.bin",
            "--site",
            "farm",
            "--window",
            &closed,
        ],
    );
    let v = origin.push_show(&env, &a);
    assert_eq!(v["windows"][0], closed, "{v}");
    let s = site_of(&v, "farm");
    assert_eq!(s["state"], "waiting_window", "{v}");
    assert!(s["held_until"].is_string(), "{v}");
    wait_log(&env, &edge, "transfer holds applied");

    // B: no window, starts in 2 s; it is `scheduled`, then completes although A is held.
    let start = (unix_now() + 2).cast_signed();
    let at =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(start.cast_unsigned()))
            .to_string();
    let b = origin.push(
        &env,
        &["--content", "/fw/b.bin", "--site", "farm", "--at", &at],
    );
    let v = origin.push_show(&env, &b);
    assert_eq!(site_of(&v, "farm")["state"], "scheduled", "{v}");
    let v = origin.push_wait_ok(&env, &b, 60);
    assert!(unix_now().cast_signed() >= start, "{v}");
    let v = origin.push_show(&env, &a);
    let s = site_of(&v, "farm");
    assert_eq!(
        (s["state"].as_str(), s["payload_bytes"].as_u64()),
        (Some("waiting_window"), Some(0)),
        "a held push sends nothing: {v}"
    );

    // C: paced at 1 MiB/s inside the site's windows; the site's window is closed while it
    // runs: it pauses, then continues once the window reopens, sending each chunk once.
    origin.ctl_ok(
        &env,
        &["site", "set", "farm", "--window", &window(-3600, "3h")],
    );
    let c = origin.push(
        &env,
        &[
            "--content",
            "/fw/c.bin",
            "--site",
            "farm",
            "--max-rate",
            "8Mbit/s",
        ],
    );
    origin.wait_push_until(&env, &c, Duration::from_secs(30), "1 MiB of c sent", |v| {
        site_of(v, "farm")["payload_bytes"].as_u64() > Some(1 << 20)
    });
    // The origin's own rate and ETA: near the 1,000,000 B/s cap, the rest of 6 MiB in seconds.
    let v = origin.wait_push_until(&env, &c, Duration::from_secs(10), "a rate", |v| {
        site_of(v, "farm")["rate"].as_u64().is_some_and(|r| r > 0)
    });
    let (rate, eta) = (
        site_of(&v, "farm")["rate"].as_u64().unwrap(),
        site_of(&v, "farm")["eta_seconds"].as_u64(),
    );
    assert!((500_000..=1_600_000).contains(&rate), "rate {rate}: {v:#}");
    assert!(
        eta.is_some_and(|e| (1..=30).contains(&e)),
        "eta {eta:?}: {v:#}"
    );
    assert_eq!(
        v["rate"].as_u64(),
        Some(rate),
        "one site: the push's rate is its"
    );
    eprintln!("FIGURE rate: {rate} B/s at an 8 Mbit/s cap, eta {eta:?} s");
    origin.ctl_ok(&env, &["site", "set", "farm", "--window", &closed]);
    let v = origin.wait_push_until(&env, &c, Duration::from_secs(10), "c held", |v| {
        site_of(v, "farm")["state"] == "waiting_window"
    });
    wait_log(&env, &edge, "transfer paused");
    let paused = origin.push_show(&env, &c);
    let sent = site_of(&paused, "farm")["payload_bytes"].as_u64().unwrap();
    assert!(sent < 6 << 20, "{v}");
    // Nothing moves while the window is closed (a bounded look: absence has no event).
    std::thread::sleep(Duration::from_millis(1500));
    let still = origin.push_show(&env, &c);
    assert_eq!(
        site_of(&still, "farm")["payload_bytes"].as_u64(),
        Some(sent),
        "bytes were sent outside the window: {still}"
    );
    origin.ctl_ok(&env, &["site", "set", "farm", "--no-windows"]);
    let done = origin.push_wait_ok(&env, &c, 60);
    let s = site_of(&done, "farm");
    let (needed, payload) = (
        s["bytes_needed"].as_u64().unwrap(),
        s["payload_bytes"].as_u64().unwrap(),
    );
    assert!(
        payload > sent && payload <= needed,
        "every chunk sent once across the pause: sent {payload} for {needed} needed: {done}"
    );
    // A keeps waiting for its own window.
    let v = origin.push_show(&env, &a);
    assert_eq!(site_of(&v, "farm")["state"], "waiting_window", "{v}");
}

/// Pause and resume, and strict priority: a paused push, or one below a push of higher
/// priority, is held at the site (cut at a chunk boundary) and continues from there, with
/// nothing re-sent; `push watch` and the event streams follow it.
#[test]
fn paused_or_outranked_pushes_stop_at_a_chunk_and_resume_from_there() {
    let env = TestEnv::new("priority", Duration::from_secs(120));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "farm", &[]);
    for (f, len) in [("low", 6 << 20), ("high", 2 << 20)] {
        let file = env.path(&format!("{f}.bin"));
        write_random(&file, len as u64, len);
        origin.upload(&env, &file, &format!("/fw/{f}.bin"));
    }
    refused(
        &env,
        &origin,
        &[
            "push",
            "create",
            "--content",
            "/fw/high.bin",
            "--site",
            "farm",
            "--priority",
            "1001",
        ],
        "-1000..=1000",
    );
    let edge = Edge::start(&env, origin.quic, Some(&token), &env.path("edge"), &[]);
    let low = origin.push(
        &env,
        &[
            "--content",
            "/fw/low.bin",
            "--site",
            "farm",
            "--max-rate",
            "8Mbit/s",
        ],
    );
    origin.wait_push_until(
        &env,
        &low,
        Duration::from_secs(30),
        "1 MiB of low sent",
        |v| site_of(v, "farm")["payload_bytes"].as_u64() > Some(1 << 20),
    );
    // Paused by the admin: held at the site, cut at a chunk boundary; resumed from there.
    let v = origin.ctl_json(&env, &["push", "pause", &low]);
    assert_eq!(
        (v["state"].as_str(), site_of(&v, "farm")["state"].as_str()),
        (Some("paused"), Some("paused")),
        "{v}"
    );
    wait_log(&env, &edge, "transfer paused");
    let v = origin.ctl_json(&env, &["push", "resume", &low]);
    assert!(v["paused"].is_null() && v["state"] == "in_progress", "{v}");
    // The all-pushes stream shows the one in progress (curl gives up after 2 s: it never ends).
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sN", "--max-time", "2", "-H"])
        .arg(format!("Authorization: Bearer {}", origin.token))
        .arg(format!("{}/api/v1/events", origin.url()));
    let o = run_cmd(&env, cmd, Duration::from_secs(10));
    assert!(
        o.stdout.contains("event: push") && o.stdout.contains(&format!("\"id\":{low},")),
        "{o:?}"
    );
    let high = origin.push(
        &env,
        &[
            "--content",
            "/fw/high.bin",
            "--site",
            "farm",
            "--priority",
            "10",
        ],
    );
    let v = origin.push_show(&env, &high);
    assert_eq!(v["priority"], 10, "{v}");
    origin.wait_push_until(&env, &low, Duration::from_secs(10), "low held", |v| {
        site_of(v, "farm")["state"] == "waiting_priority"
    });
    // `ctl push watch` follows the push's event stream to its end.
    let out = origin.ctl(&env, &["--output", "json", "push", "watch", &high]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["state"], "complete", "{v}");
    assert!(out.stderr.contains("farm: complete"), "{out:?}");
    let v = origin.push_show(&env, &low);
    assert_ne!(v["state"], "complete", "high went first: {v}");
    let done = origin.push_wait_ok(&env, &low, 60);
    let s = site_of(&done, "farm");
    assert!(
        s["payload_bytes"].as_u64() <= s["bytes_needed"].as_u64(),
        "nothing of low sent twice: {done}"
    );
    // The raw stream: the current state, then `end` once it is final.
    let r = curl(
        &env,
        &[
            "-N",
            "-H",
            &format!("Authorization: Bearer {}", origin.token),
            &format!("{}/api/v1/pushes/{low}/events", origin.url()),
        ],
    );
    let text = r.text();
    assert!(
        r.status == 200 && text.contains("event: push") && text.contains("event: end"),
        "{text}"
    );
    // The node reports its disk and what it holds; `site show` lists it.
    let mut last = Value::Null;
    let reported = eventually(env.cap(Duration::from_secs(20)), || {
        last = origin.ctl_json(&env, &["site", "show", "farm"]);
        let st = &last["nodes"][0]["stats"];
        st["artifacts_held"].as_u64() >= Some(2)
            && st["artifacts_pending"] == 0
            && st["store_bytes"].as_u64() >= Some(8 << 20)
    });
    let st = &last["nodes"][0]["stats"];
    assert!(
        reported
            && st["disk_total"].as_u64() > st["disk_free"].as_u64()
            && st["disk_free"].as_u64() > Some(0)
            && st["at"].is_string(),
        "{last}"
    );
    // A disk quota: a push that would take the site's content past it is refused, whole.
    refused(
        &env,
        &origin,
        &["site", "set", "farm", "--quota", "0"],
        "more than 0 bytes",
    );
    let v = origin.ctl_json(&env, &["site", "set", "farm", "--quota", "7MiB"]);
    assert_eq!(v["quota"], 7 << 20, "{v}");
    let pushes = origin.ctl_json(&env, &["push", "list"])["pushes"]
        .as_array()
        .unwrap()
        .len();
    let args = [
        "push",
        "create",
        "--content",
        "/fw/low.bin",
        "--site",
        "farm",
    ];
    let why = "farm would hold 8388608 bytes, its quota is 7340032";
    refused(&env, &origin, &args, why);
    let now = origin.ctl_json(&env, &["push", "list"])["pushes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(now, pushes, "a refused push leaves nothing");
    origin.ctl_ok(&env, &["site", "set", "farm", "--no-quota"]);
    assert!(origin.ctl(&env, &args).ok());
    refused(&env, &origin, &["push", "watch", "999"], "not found");
}

#[test]
fn a_bandwidth_cap_paces_a_transfer_to_within_15_percent_of_its_rate() {
    let env = TestEnv::new("cap", Duration::from_secs(120));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    let _edge = Edge::start(&env, origin.quic, Some(&token), &env.path("edge"), &[]);
    let file = env.path("fw.bin");
    write_random(&file, 0xCA9, 8 << 20);
    origin.upload(&env, &file, "/fw/fw.bin");
    // 16 Mbit/s = 2,000,000 bytes/s: 8 MiB of chunks (plus framing) in about 4.2 s.
    let cap = 2_000_000.0;
    let start = std::time::Instant::now();
    let id = origin.push(
        &env,
        &[
            "--content",
            "/fw/fw.bin",
            "--site",
            "s1",
            "--max-rate",
            "16Mbit/s",
        ],
    );
    let v = origin.push_wait_ok(&env, &id, 60);
    let took = start.elapsed().as_secs_f64();
    let sent = site_of(&v, "s1")["bytes_sent"].as_u64().unwrap() as f64;
    let ideal = sent / cap;
    assert!(
        took >= ideal && took <= 1.15 * ideal,
        "{sent} bytes at {cap} B/s should take {ideal:.2} s to {:.2} s, took {took:.2} s",
        1.15 * ideal
    );
    eprintln!(
        "FIGURE cap: {sent} bytes at 16 Mbit/s in {took:.2} s ({:.3} × the ideal)",
        took / ideal
    );
}
