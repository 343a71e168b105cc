//! Rollouts (issue 11) on real processes: a rolling push keeps K sites transferring and never
//! waits for an unreachable one; a push in waves halts on its error threshold, delivers
//! nothing to the waves after it, goes on when approved, and a retry after the cause is
//! fixed completes it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn site_of<'a>(push: &'a Value, site: &str) -> &'a Value {
    push["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == site)
        .unwrap_or_else(|| panic!("no site {site} in {push}"))
}

fn state<'a>(push: &'a Value, site: &str) -> &'a str {
    site_of(push, site)["state"].as_str().unwrap_or("?")
}

/// Wait (at most 30 s) until every node of `site` is online at the origin.
fn wait_online(env: &TestEnv, origin: &Origin, site: &str) {
    let online = || {
        let s = origin.ctl_json(env, &["site", "show", site]);
        s["nodes"]
            .as_array()
            .is_some_and(|n| !n.is_empty() && n.iter().all(|n| n["state"] == "online"))
    };
    assert!(
        eventually(env.cap(Duration::from_secs(30)), online),
        "site {site} never came online"
    );
}

/// Sites a push is transferring to now: reached (released) and not finished.
fn active(push: &Value) -> usize {
    push["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            !s["released"].is_null() && !matches!(s["state"].as_str(), Some("complete" | "failed"))
        })
        .count()
}

#[test]
fn rolling_k_2_over_6_sites_finishes_the_5_reachable_without_waiting_for_the_dark_one() {
    let env = TestEnv::new("rolling", Duration::from_secs(180));
    let origin = Origin::start(&env);
    // "a-dark" sorts first but never connects: a slot must not wait for it.
    origin.create_site(&env, "a-dark", &[]);
    let mut edges = Vec::new();
    for i in 1..=5 {
        let site = format!("s{i}");
        let token = origin.create_site(&env, &site, &[]);
        edges.push(Edge::start(
            &env,
            origin.quic,
            Some(&token),
            &env.path(&site),
            &[],
        ));
    }
    for i in 1..=5 {
        wait_online(&env, &origin, &format!("s{i}"));
    }
    let file = env.path("fw.bin");
    write_random(&file, 61, 4 << 20);
    origin.upload(&env, &file, "/fw/fw.bin");
    // Paced so that transfers overlap and the bound on concurrency is visible.
    let id = origin.push(
        &env,
        &[
            "--content",
            "/fw/fw.bin",
            "--site",
            "a-dark",
            "s1",
            "s2",
            "s3",
            "s4",
            "s5",
            "--rolling",
            "2",
            "--max-rate",
            "40Mbit/s",
        ],
    );
    let most = std::cell::Cell::new(0);
    let v = origin.wait_push_until(
        &env,
        &id,
        Duration::from_secs(90),
        "the 5 reachable sites complete",
        |v| {
            most.set(most.get().max(active(v)));
            (1..=5).all(|i| state(v, &format!("s{i}")) == "complete")
        },
    );
    let most = most.get();
    assert!(
        most <= 2,
        "at most 2 sites transfer at once, saw {most}: {v:#}"
    );
    assert_eq!(
        active(&v),
        1,
        "the dark site holds the one slot left: {v:#}"
    );
    assert_eq!(state(&v, "a-dark"), "pending", "{v:#}");
    assert_eq!(v["state"], "in_progress");
    assert_eq!(v["rollout"]["mode"], "rolling");
    assert_eq!(v["rollout"]["waiting"], 0);
    // The dark site was reached last: connected sites go first.
    let released = |s: &str| site_of(&v, s)["released"].as_str().unwrap().to_owned();
    for i in 1..=5 {
        assert!(released("a-dark") >= released(&format!("s{i}")), "{v:#}");
    }
    origin.ctl_ok(&env, &["grant", "create", "--anonymous", "--path", "/fw"]);
    for e in &edges {
        let ok = || curl(&env, &[&e.url("/fw/fw.bin")]).status == 200;
        assert!(
            eventually(env.cap(Duration::from_secs(30)), ok),
            "{} does not serve it",
            e.node
        );
    }
    eprintln!("FIGURE rolling: K=2 over 6 sites, most transferring at once {most}");
}

#[test]
fn a_wave_halts_on_its_error_threshold_approval_releases_the_next_and_retry_completes() {
    const NAME: &str = "a_wave_halts_on_its_error_threshold";
    let env = TestEnv::new("waves", Duration::from_secs(180));
    // w2's edge keeps its data on a 1 MiB file system: a 3 MiB artifact fails there with
    // "no space left on device" until the file system grows.
    let fs = match Tmpfs::mount(&env, &env.path("w2"), "1m") {
        Ok(fs) => fs,
        Err(e) => return skip(NAME, &format!("needs a tmpfs mount: {e}")),
    };
    let origin = Origin::start(&env);
    // A minute between retries: a retry that waited for it would not finish in time below.
    let slow = env.path("slow-retry.toml");
    std::fs::write(&slow, "retry_failed = \"60s\"\n").unwrap();
    let slow = slow.to_str().unwrap();
    let mut edges = Vec::new();
    for site in ["w1", "w2", "w3", "w4"] {
        let token = origin.create_site(&env, site, &[]);
        edges.push(Edge::start(
            &env,
            origin.quic,
            Some(&token),
            &env.path(site),
            &["--config", slow],
        ));
    }
    origin.ctl_ok(&env, &["grant", "create", "--anonymous", "--path", "/fw"]);
    let file = env.path("fw.bin");
    write_random(&file, 62, 3 << 20);
    origin.upload(&env, &file, "/fw/fw.bin");

    // Bad policies: one clear answer naming the field, nothing created.
    for (args, why) in [
        (
            &["--waves", "1", "--rolling", "2"][..],
            "cannot be used with",
        ),
        (&["--waves", "0"][..], "rollout.waves[0] must be at least 1"),
        (&["--rolling", "x"][..], "expected a count"),
        (&["--max-failures", "1"][..], "needs waves or rolling"),
    ] {
        let mut a = vec!["push", "create", "--content", "/fw/fw.bin", "--site", "w1"];
        a.extend_from_slice(args);
        let out = origin.ctl(&env, &a);
        assert!(
            out.code != Some(0) && out.stderr.contains(why),
            "{args:?}: {out:?}"
        );
    }
    assert_eq!(
        origin.ctl_json(&env, &["push", "list"])["pushes"],
        Value::Array(vec![])
    );

    // Waves of one site each; no failure allowed.
    let id = origin.push(
        &env,
        &[
            "--content",
            "/fw/fw.bin",
            "--site",
            "w1",
            "w2",
            "w3",
            "w4",
            "--waves",
            "1,1",
            "--max-failures",
            "0",
        ],
    );
    let v = origin.wait_push_until(&env, &id, Duration::from_secs(60), "halted", |v| {
        v["state"] == "halted"
    });
    assert_eq!(state(&v, "w1"), "complete", "{v:#}");
    assert_eq!(state(&v, "w2"), "failed", "{v:#}");
    let why = site_of(&v, "w2")["error"].as_str().unwrap_or_default();
    assert!(why.contains("no space left on device"), "{why}");
    let reason = v["rollout"]["halt_reason"].as_str().unwrap();
    assert!(
        reason.contains("1 sites failed, more than the 0 allowed") && reason.contains("w2"),
        "{reason}"
    );
    // Nothing of the push reached the waves after the halt: w3 cannot serve it.
    assert_eq!(state(&v, "w3"), "waiting_wave");
    assert_eq!(curl(&env, &[&edges[2].url("/fw/fw.bin")]).status, 404);
    assert_eq!(curl(&env, &[&edges[0].url("/fw/fw.bin")]).status, 200);
    // `push wait` on a halted push says why and fails.
    let out = origin.ctl(&env, &["push", "wait", &id, "--timeout", "5"]);
    assert!(
        out.code == Some(1) && out.stderr.contains("halted"),
        "{out:?}"
    );

    // Approved: the failure is accepted, wave 3 starts, and wave 4 after it by itself.
    let v = origin.ctl_json(&env, &["push", "approve", &id]);
    assert_eq!(v["rollout"]["failures_accepted"], 1, "{v:#}");
    let v = origin.wait_push_until(
        &env,
        &id,
        Duration::from_secs(60),
        "w3 and w4 complete",
        |v| state(v, "w3") == "complete" && state(v, "w4") == "complete",
    );
    assert_eq!(v["state"], "failed", "w2 still failed: {v:#}");
    let out = origin.ctl(&env, &["push", "approve", &id]);
    assert!(
        out.code == Some(1) && out.stderr.contains("nothing to approve"),
        "{out:?}"
    );

    // The cause fixed, a retry completes it now, not at the edge's next backoff time (10 s,
    // then 20 s, …): the push's failed site gets a new desired revision and retries at once.
    fs.resize(&env, "20m");
    let retried = std::time::Instant::now();
    origin.ctl_ok(&env, &["push", "retry", &id]);
    // (`push wait` would stop at once: the push is failed until w2's edge retries.)
    let v = origin.wait_push_until(&env, &id, Duration::from_secs(60), "complete", |v| {
        v["state"] == "complete"
    });
    let took = retried.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the retry waited for the edge's backoff: {took:?}"
    );
    assert_eq!(v["state"], "complete");
    assert_eq!(curl(&env, &[&edges[1].url("/fw/fw.bin")]).status, 200);
    let out = origin.ctl(&env, &["push", "retry", &id]);
    assert!(
        out.code == Some(1) && out.stderr.contains("no failed site"),
        "{out:?}"
    );
    eprintln!("FIGURE waves: halted at w2, approved, retried after the fix: complete {took:?} after the retry");
    drop(edges);
}

#[test]
fn a_following_push_delivers_new_versions_and_an_upload_says_who_keeps_the_old_one() {
    let env = TestEnv::new("follow", Duration::from_secs(180));
    let origin = Origin::start(&env);
    let mut edges = Vec::new();
    for site in ["s1", "s2"] {
        let token = origin.create_site(&env, site, &[]);
        edges.push(Edge::start(
            &env,
            origin.quic,
            Some(&token),
            &env.path(site),
            &[],
        ));
    }
    origin.ctl_ok(&env, &["grant", "create", "--anonymous", "--path", "/"]);
    let version = |name: &str, seed: u64| {
        let f = env.path(name);
        write_random(&f, seed, 1 << 20);
        f
    };
    origin.upload(&env, &version("a1", 1), "/fw/a.bin");
    origin.upload(&env, &version("b1", 2), "/other/b.bin");
    let follow = origin.push(
        &env,
        &[
            "--content",
            "/fw/",
            "--site",
            "s1",
            "s2",
            "--follow",
            "--max-rate",
            "80Mbit/s",
        ],
    );
    origin.push_wait_ok(&env, &follow, 60);
    let plain = origin.push(&env, &["--content", "/other/b.bin", "--site", "s1"]);
    origin.push_wait_ok(&env, &plain, 60);

    // A new version under the followed prefix: delivered by a new push, nobody keeps v1.
    let a2 = version("a2", 3);
    let up = origin.upload(&env, &a2, "/fw/a.bin");
    let by = up["delivered_by"].as_array().cloned().unwrap_or_default();
    assert_eq!(by.len(), 1, "{up:#}");
    assert_eq!(up["kept_old_at"], serde_json::json!([]), "{up:#}");
    let id = by[0].to_string();
    let p = origin.push_wait_ok(&env, &id, 60);
    assert_eq!(p["followed_from"].to_string(), follow, "{p:#}");
    assert_eq!(p["content"], serde_json::json!(["/fw/a.bin"]));
    assert_eq!(p["max_rate"], 10_000_000, "the follower's settings: {p:#}");
    for e in &edges {
        let got = env.path(&format!("got-{}", e.node));
        let served = || {
            curl_to_file(&env, &[&e.url("/fw/a.bin")], &got).status == 200
                && std::fs::read(&got).ok() == std::fs::read(&a2).ok()
        };
        assert!(
            eventually(env.cap(Duration::from_secs(30)), served),
            "{} serves v2",
            e.node
        );
    }
    // The following push itself is complete (superseded by the version it delivered).
    assert_eq!(origin.push_show(&env, &follow)["state"], "complete");

    // A new version at a path nothing follows: s1 keeps its old one, and is told of.
    let up = origin.upload(&env, &version("b2", 4), "/other/b.bin");
    assert_eq!(up["delivered_by"], serde_json::json!([]), "{up:#}");
    assert_eq!(up["kept_old_at"], serde_json::json!(["s1"]), "{up:#}");
    let f = version("b3", 5);
    let out = origin.ctl_ok(
        &env,
        &["artifact", "upload", f.to_str().unwrap(), "/other/b.bin"],
    );
    assert!(
        out.contains("sites keeping their old version until it is pushed to them: s1"),
        "{out}"
    );
    // An unchanged upload sets nothing going.
    let up = origin.upload(&env, &a2, "/fw/a.bin");
    assert_eq!(up["delivered_by"], serde_json::json!([]), "{up:#}");
    // follow needs content.
    let out = origin.ctl(
        &env,
        &[
            "push", "create", "--image", "x/y:1", "--site", "s1", "--follow",
        ],
    );
    assert!(
        out.code == Some(1) && out.stderr.contains("follow needs content"),
        "{out:?}"
    );
}

#[test]
fn moving_a_channel_is_delivered_by_its_following_push_at_no_cost_for_staged_versions() {
    let env = TestEnv::new("channel", Duration::from_secs(180));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    let edge = Edge::start(&env, origin.quic, Some(&token), &env.path("s1"), &[]);
    origin.ctl_ok(&env, &["grant", "create", "--anonymous", "--path", "/"]);
    let (v20, v21) = (env.path("2.0"), env.path("2.1"));
    write_random(&v20, 20, 2 << 20);
    write_random(&v21, 21, 2 << 20);
    origin.upload(&env, &v20, "/fw/2.0/fw.bin");
    origin.upload(&env, &v21, "/fw/2.1/fw.bin");

    // Bad input: a version that does not exist, a channel onto itself, an upload's path.
    for (args, why) in [
        (
            &["/fw/stable/fw.bin", "/fw/9.9/fw.bin"][..],
            "no artifact at /fw/9.9/fw.bin",
        ),
        (
            &["/fw/2.0/fw.bin", "/fw/2.0/fw.bin"][..],
            "cannot point at itself",
        ),
        (
            &["/fw/2.1/fw.bin", "/fw/2.0/fw.bin"][..],
            "holds an uploaded artifact",
        ),
    ] {
        let mut a = vec!["channel", "set"];
        a.extend_from_slice(args);
        let out = origin.ctl(&env, &a);
        assert!(
            out.code == Some(1) && out.stderr.contains(why),
            "{args:?}: {out:?}"
        );
    }
    origin.ctl_ok(
        &env,
        &["channel", "set", "/fw/stable/fw.bin", "/fw/2.0/fw.bin"],
    );
    let follow = origin.push(
        &env,
        &["--content", "/fw/stable/", "--site", "s1", "--follow"],
    );
    origin.push_wait_ok(&env, &follow, 60);
    let serves = |want: &std::path::Path| {
        let got = env.path("got");
        let ok = || {
            curl_to_file(&env, &[&edge.url("/fw/stable/fw.bin")], &got).status == 200
                && std::fs::read(&got).ok() == std::fs::read(want).ok()
        };
        assert!(
            eventually(env.cap(Duration::from_secs(30)), ok),
            "the channel serves {want:?}"
        );
    };
    serves(&v20);
    // An upload to the channel's path is refused: channels move, they are not uploaded to.
    let out = origin.ctl(
        &env,
        &[
            "artifact",
            "upload",
            v21.to_str().unwrap(),
            "/fw/stable/fw.bin",
        ],
    );
    assert!(
        out.code == Some(1) && out.stderr.contains("is a channel"),
        "{out:?}"
    );

    // 2.1 staged at the site beforehand; moving the channel then costs no chunk bytes.
    let stage = origin.push(&env, &["--content", "/fw/2.1/", "--site", "s1"]);
    origin.push_wait_ok(&env, &stage, 60);
    let v = origin.ctl_json(
        &env,
        &["channel", "set", "/fw/stable/fw.bin", "/fw/2.1/fw.bin"],
    );
    let by = v["delivered_by"].as_array().cloned().unwrap_or_default();
    assert_eq!(by.len(), 1, "{v:#}");
    let moved = origin.push_wait_ok(&env, &by[0].to_string(), 60);
    assert_eq!(site_of(&moved, "s1")["payload_bytes"], 0, "{moved:#}");
    serves(&v21);
    let list = origin.ctl_json(&env, &["channel", "list"]);
    assert_eq!(list["channels"][0]["target"], "/fw/2.1/fw.bin", "{list:#}");
    // Setting it again to the same version changes nothing and delivers nothing.
    let v = origin.ctl_json(
        &env,
        &["channel", "set", "/fw/stable/fw.bin", "/fw/2.1/fw.bin"],
    );
    assert_eq!(v["delivered_by"], serde_json::json!([]), "{v:#}");
    eprintln!("FIGURE channel: moved to a staged version with 0 chunk bytes sent");
}
