//! Rollouts (waves, rolling, halts, approvals, retries) against a real SQLite file.

use rusqlite::{params, Connection};
use sitecast_protocol::wire::ArtifactState;
use sitecast_protocol::BlobRecipe;

use super::pushes::NewPush;
use super::tests::{db, p, recipe, status, LATER};
use super::*;
use crate::error::{Error, Result};
use crate::rollout::Rollout;

fn setup(c: &mut Connection, names: &[&str], online: &[&str]) -> Result<BlobRecipe> {
    for (i, n) in names.iter().enumerate() {
        sites::create(c, n, &Labels::new(), None, &[], &[i as u8], LATER)?;
        if online.contains(n) {
            c.execute(
                "INSERT INTO nodes (site, name, cert_sha256, enrolled, online) VALUES (?1, 'n', ?2, 0, 1)",
                params![n, vec![i as u8; 32]],
            )?;
        }
    }
    let r = recipe(7, 200_000);
    artifacts::publish(c, &p("/fw/x.bin"), &r, 1)?;
    Ok(r)
}

fn push(c: &mut Connection, sites: &[&str], rollout: &str) -> Result<PushInfo> {
    let rollout: Rollout = serde_json::from_str(rollout).unwrap();
    rollout.check().unwrap();
    pushes::create(
        c,
        &NewPush {
            content: vec!["/fw/x.bin".into()],
            sites: sites.iter().map(|s| (*s).to_owned()).collect(),
            rollout: Some(rollout),
            ..NewPush::default()
        },
    )
}

fn states(c: &Connection, id: i64) -> Vec<(String, String)> {
    pushes::get(c, id)
        .unwrap()
        .unwrap()
        .sites
        .into_iter()
        .map(|s| (s.site, s.state))
        .collect()
}

fn state_of(c: &Connection, id: i64, site: &str) -> String {
    states(c, id).into_iter().find(|s| s.0 == site).unwrap().1
}

/// Report `state` for /fw/x.bin from `site`; the sites a rollout released because of it.
fn report(c: &mut Connection, site: &str, r: &BlobRecipe, state: ArtifactState) -> Vec<String> {
    let err = (state == ArtifactState::Failed).then_some("no space left on device");
    pushes::apply_report_completing(c, site, &status("/fw/x.bin", r, state, 100, err))
        .unwrap()
        .map(|m| m.released)
        .unwrap_or_default()
}

fn desires(c: &Connection, site: &str) -> bool {
    let (_, d) = pushes::desired_state(c, site).unwrap().unwrap();
    !d.is_empty()
}

#[test]
fn waves_start_on_success_halt_past_the_error_threshold_and_approval_goes_on() {
    let (_d, db) = db();
    db.blocking(|c| {
        let names = ["a", "b", "c", "d", "e", "f"];
        let r = setup(c, &names, &[])?;
        let rev = |c: &Connection, s: &str| sites::revisions(c, s).unwrap().unwrap().0;
        let before: Vec<u64> = names.iter().map(|s| rev(c, s)).collect();
        let id = push(
            c,
            &names,
            r#"{"waves": ["2", "2"], "success": "50%", "max_failures": 1}"#,
        )?
        .id;
        let info = pushes::get(c, id)?.unwrap();
        assert_eq!(
            info.sites.iter().map(|s| s.wave).collect::<Vec<_>>(),
            [1, 1, 2, 2, 3, 3].map(Some)
        );
        let ro = info.rollout.unwrap();
        assert_eq!((ro.mode, ro.wave, ro.waves, ro.released, ro.waiting), ("waves", Some(1), Some(3), 2, 4));
        assert_eq!(state_of(c, id, "a"), "pending");
        assert_eq!(state_of(c, id, "c"), "waiting_wave");
        // Nothing of the push reaches a waiting site: not its desired state, not its chunks,
        // not even a new desired revision.
        assert!(desires(c, "a") && !desires(c, "c"));
        assert!(!pushes::site_has_blob(c, "c", &r.blake3)?);
        assert!(rev(c, "a") > before[0]);
        assert_eq!(rev(c, "c"), before[2]);
        // A report for a site still waiting changes nothing.
        assert!(report(c, "c", &r, ArtifactState::Complete).is_empty());
        assert_eq!(state_of(c, id, "c"), "waiting_wave");

        // Half of wave 1 complete: wave 2 starts.
        assert!(report(c, "b", &r, ArtifactState::Failed).is_empty(), "1 failure is allowed");
        assert_eq!(report(c, "a", &r, ArtifactState::Complete), ["c", "d"]);
        assert!(desires(c, "c") && pushes::site_has_blob(c, "c", &r.blake3)?);
        // A second failure passes max_failures 1: halted, wave 3 never starts by itself.
        assert!(report(c, "c", &r, ArtifactState::Failed).is_empty());
        let info = pushes::get(c, id)?.unwrap();
        assert_eq!(info.state, "halted");
        let reason = info.rollout.unwrap().halt_reason.unwrap();
        assert!(reason.contains("2 sites failed, more than the 1 allowed") && reason.contains("b, c"), "{reason}");
        assert!(report(c, "d", &r, ArtifactState::Complete).is_empty());
        assert_eq!(state_of(c, id, "e"), "waiting_wave");
        assert!(!desires(c, "e"));

        // Approval accepts the two failures and goes on: wave 2 has 1 of 2 complete.
        assert_eq!(rollout::approve(c, id)?.unwrap(), ["e", "f"]);
        let ro = pushes::get(c, id)?.unwrap().rollout.unwrap();
        assert_eq!((ro.halted, ro.failures_accepted, ro.wave), (None, 2, Some(3)));
        assert!(matches!(rollout::approve(c, id), Err(Error::Conflict(m)) if m.contains("every wave has started")));
        // One more failure is within the budget again; a second halts again.
        report(c, "e", &r, ArtifactState::Failed);
        assert_ne!(pushes::get(c, id)?.unwrap().state, "halted");

        // Retry bumps the failed sites' revisions only.
        let (rb, ra) = (rev(c, "b"), rev(c, "a"));
        assert_eq!(rollout::retry(c, id)?.unwrap(), ["b", "c", "e"]);
        assert_eq!((rev(c, "b"), rev(c, "a")), (rb + 1, ra));
        report(c, "f", &r, ArtifactState::Complete);
        for s in ["b", "c", "e"] {
            report(c, s, &r, ArtifactState::Complete);
        }
        assert_eq!(pushes::get(c, id)?.unwrap().state, "complete");
        assert!(matches!(rollout::retry(c, id), Err(Error::Conflict(_))));
        assert_eq!(rollout::retry(c, 999)?, None);
        assert_eq!(rollout::approve(c, 999)?, None);
        Ok(())
    })
    .unwrap();
}

#[test]
fn approval_waves_wait_for_the_admin_and_pause_stops_a_rollout() {
    let (_d, db) = db();
    db.blocking(|c| {
        let r = setup(c, &["a", "b", "c"], &[])?;
        let id = push(c, &["a", "b", "c"], r#"{"waves": ["1"], "approval": true}"#)?.id;
        assert_eq!(pushes::get(c, id)?.unwrap().state, "in_progress");
        assert!(report(c, "a", &r, ArtifactState::Complete).is_empty());
        let info = pushes::get(c, id)?.unwrap();
        assert_eq!(info.state, "waiting_approval");
        assert!(info.rollout.unwrap().waiting_approval);
        // Paused, an approval is refused; resumed, it releases the rest.
        schedule::set_paused(c, id, true)?;
        assert!(matches!(rollout::approve(c, id), Err(Error::Conflict(m)) if m.contains("paused")));
        schedule::set_paused(c, id, false)?;
        assert_eq!(state_of(c, id, "b"), "waiting_wave");
        assert_eq!(rollout::approve(c, id)?.unwrap(), ["b", "c"]);
        assert_eq!(state_of(c, id, "b"), "pending");
        // A push without a rollout has nothing to approve.
        let plain = pushes::create(
            c,
            &NewPush {
                content: vec!["/fw/x.bin".into()],
                sites: vec!["a".into()],
                ..NewPush::default()
            },
        )?;
        assert!(matches!(rollout::approve(c, plain.id), Err(Error::Conflict(m)) if m.contains("no rollout")));
        assert!(pushes::get(c, plain.id)?.unwrap().sites[0].released.is_some());
        Ok(())
    })
    .unwrap();
}

#[test]
fn rolling_keeps_k_sites_going_connected_ones_first() {
    let (_d, db) = db();
    db.blocking(|c| {
        // "a" has no connected node: it goes last although it sorts first.
        let r = setup(c, &["a", "b", "c", "d"], &["b", "c", "d"])?;
        let id = push(c, &["a", "b", "c", "d"], r#"{"rolling": 2}"#)?.id;
        let released = |c: &Connection| -> Vec<String> {
            pushes::get(c, id)
                .unwrap()
                .unwrap()
                .sites
                .into_iter()
                .filter(|s| s.released.is_some())
                .map(|s| s.site)
                .collect()
        };
        assert_eq!(released(c), ["b", "c"]);
        assert_eq!(state_of(c, id, "a"), "queued");
        // Progress frees no slot; completion or failure does, one each.
        assert!(report(c, "b", &r, ArtifactState::Fetching).is_empty());
        assert_eq!(report(c, "b", &r, ArtifactState::Complete), ["d"]);
        assert_eq!(report(c, "c", &r, ArtifactState::Failed), ["a"]);
        assert!(report(c, "d", &r, ArtifactState::Complete).is_empty());
        let ro = pushes::get(c, id)?.unwrap().rollout.unwrap();
        assert_eq!((ro.mode, ro.wave, ro.released, ro.waiting, ro.failed), ("rolling", None, 4, 0, 1));
        assert!(matches!(rollout::approve(c, id), Err(Error::Conflict(m)) if m.contains("moves by itself")));
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_newer_push_waiting_for_its_wave_leaves_the_older_version_delivering() {
    let (_d, db) = db();
    db.blocking(|c| {
        let r1 = setup(c, &["a", "b"], &[])?;
        let old = pushes::create(
            c,
            &NewPush {
                content: vec!["/fw/x.bin".into()],
                sites: vec!["a".into(), "b".into()],
                ..NewPush::default()
            },
        )?
        .id;
        let r2 = recipe(8, 100_000);
        artifacts::publish(c, &p("/fw/x.bin"), &r2, 2)?;
        let new = push(c, &["a", "b"], r#"{"waves": ["1"]}"#)?.id;
        let blob =
            |c: &Connection, s: &str| pushes::desired_state(c, s).unwrap().unwrap().1[0].blob;
        assert_eq!(blob(c, "a"), r2.blake3);
        assert_eq!(
            blob(c, "b"),
            r1.blake3,
            "b keeps the old version until its wave"
        );
        assert_eq!(
            state_of(c, old, "b"),
            "pending",
            "the old push still delivers to b"
        );
        assert_eq!(state_of(c, old, "a"), "complete", "superseded at a");
        report(c, "a", &r2, ArtifactState::Complete);
        assert_eq!(blob(c, "b"), r2.blake3);
        assert_eq!(state_of(c, new, "b"), "pending");
        Ok(())
    })
    .unwrap();
}
