//! Catalog functions against a real SQLite file.

use sitecast_protocol::wire::{ArtifactState, ArtifactStatus, StatusReport};
use sitecast_protocol::{chunk_all, BlobRecipe, CatalogPath};

use super::pushes::NewPush;
use super::*;
use crate::util::now;

pub(super) fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("origin.db")).unwrap();
    (dir, db)
}

pub(super) fn recipe(seed: u8, len: usize) -> BlobRecipe {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect();
    chunk_all(&data).1
}

pub(super) fn p(s: &str) -> CatalogPath {
    CatalogPath::parse(s).unwrap()
}

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn status(
    path: &str,
    r: &BlobRecipe,
    state: ArtifactState,
    needed: u64,
    error: Option<&str>,
) -> StatusReport {
    StatusReport {
        desired_revision: 0,
        artifacts: vec![ArtifactStatus {
            path: p(path),
            blob: r.blake3,
            state,
            bytes_total: r.len,
            bytes_needed: needed,
            bytes_fetched: 0,
            error: error.map(str::to_owned),
        }],
    }
}

#[test]
fn recipes_round_trip_and_reject_unknown_versions() {
    let r = recipe(1, 300_000);
    let enc = artifacts::encode_recipe(&r);
    assert_eq!(artifacts::decode_recipe(&enc).unwrap(), r);
    let mut bad = enc.clone();
    bad[0] = 9;
    assert!(artifacts::decode_recipe(&bad).is_err());
    assert!(artifacts::decode_recipe(&[]).is_err());
}

#[test]
fn publish_replace_list_and_delete_with_gc_candidates() {
    let (_d, db) = db();
    let r1 = recipe(1, 400_000);
    let r2 = recipe(2, 200_000);
    db.blocking(|c| {
        let a = artifacts::publish(c, &p("/fw/a.bin"), &r1, 100)?;
        assert!(a.changed && a.replaced.is_none());
        assert_eq!(a.info.size, 400_000);
        assert_eq!(a.info.chunks, r1.chunks.len() as u64);
        assert_eq!(a.info.modified, "1970-01-01T00:01:40Z");
        let same = artifacts::publish(c, &p("/fw/a.bin"), &r1, 200)?;
        assert!(!same.changed);
        assert_eq!(same.info.modified, a.info.modified);
        let rep = artifacts::publish(c, &p("/fw/a.bin"), &r2, 300)?;
        assert_eq!(rep.replaced, Some(r1.blake3));
        artifacts::publish(c, &p("/fwx/b.bin"), &r1, 300)?;
        let under: Vec<_> = artifacts::list(c, &p("/fw"))?
            .into_iter()
            .map(|a| a.path)
            .collect();
        assert_eq!(under, vec!["/fw/a.bin"]);
        assert_eq!(artifacts::list(c, &CatalogPath::root())?.len(), 2);
        // r1 is still used by /fwx/b.bin.
        assert!(artifacts::delete_blob(c, &r1.blake3)?.is_empty());
        assert!(artifacts::recipe(c, &r1.blake3)?.is_some());
        let del = artifacts::delete(c, &p("/fwx/b.bin"))?.unwrap();
        assert_eq!(del.blob, r1.blake3);
        let freed = artifacts::delete_blob(c, &r1.blake3)?;
        let only_r1: std::collections::BTreeSet<_> = r1
            .chunks
            .iter()
            .map(|x| x.id)
            .filter(|id| r2.chunks.iter().all(|y| y.id != *id))
            .collect();
        assert!(!only_r1.is_empty());
        assert_eq!(
            freed.into_iter().collect::<std::collections::BTreeSet<_>>(),
            only_r1
        );
        assert!(artifacts::recipe(c, &r1.blake3)?.is_none());
        assert!(artifacts::delete(c, &p("/fwx/b.bin"))?.is_none());
        assert!(artifacts::chunk_referenced(c, &r2.chunks[0].id)?);
        Ok(())
    })
    .unwrap();
}

/// A join token expiry far in the future.
pub(super) const LATER: i64 = 4_000_000_000;

#[test]
fn sites_tokens_and_nodes() {
    let (_d, db) = db();
    db.blocking(|c| {
        let s = sites::create(
            c,
            "s1",
            &labels(&[("province", "gansu")]),
            Some(1000),
            &[],
            b"h1",
            LATER,
        )?;
        assert_eq!(s.labels.get("province").map(String::as_str), Some("gansu"));
        assert!(matches!(
            sites::create(c, "s1", &Labels::new(), None, &[], b"h2", LATER),
            Err(Error::Conflict(_))
        ));
        assert!(sites::check_name("site", "bad name").is_err());
        assert!(sites::check_name("site", "-x").is_err());
        assert_eq!(
            sites::site_for_token(c, b"h1")?,
            Some(("s1".to_owned(), Some(LATER)))
        );
        assert_eq!(
            sites::enroll(c, b"h1", "n1", b"fp1")?.as_deref(),
            Some("s1")
        );
        assert!(
            sites::enroll(c, b"h1", "n2", b"fp2")?.is_none(),
            "tokens are one-time"
        );
        // An expired token is refused, and stays unused.
        assert!(sites::set_join_token(
            c,
            "s1",
            b"h4",
            crate::util::now() - 1
        )?);
        assert!(sites::enroll(c, b"h4", "n2", b"fp2")?.is_none(), "expired");
        assert!(sites::site_for_token(c, b"h4")?.is_some());
        assert!(sites::set_join_token(c, "s1", b"h3", LATER)?);
        assert!(!sites::set_join_token(c, "nope", b"h3", LATER)?);
        sites::enroll(c, b"h3", "n2", b"fp2")?;
        assert_eq!(
            sites::node_by_cert(c, b"fp2")?,
            Some(("s1".into(), "n2".into()))
        );
        sites::node_seen(c, "s1", "n1", Some("127.0.0.1:9"), true)?;
        let s = sites::get(c, "s1")?.unwrap();
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.nodes[0].state, "online");
        assert_eq!(s.nodes[0].address.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(s.nodes[1].state, "offline");
        assert!(sites::delete(c, "s1")?);
        assert!(
            sites::node_by_cert(c, b"fp1")?.is_none(),
            "deleting a site revokes its nodes"
        );
        assert!(!sites::delete(c, "s1")?);
        Ok(())
    })
    .unwrap();
}

#[test]
fn site_config_selects_grants_by_site_labels_and_all() {
    let (_d, db) = db();
    db.blocking(|c| {
        sites::create(c, "a", &labels(&[("tier", "farm")]), None, &[], b"1", LATER)?;
        sites::create(c, "b", &Labels::new(), None, &[], b"2", LATER)?;
        let rev0 = sites::revisions(c, "a")?.unwrap().1;
        access::create_user(c, "u", Some("$argon2id$x"), &[])?;
        assert!(matches!(
            access::create_user(c, "u", None, &[]),
            Err(Error::Conflict(_))
        ));
        let g = |user: Option<&str>, prefix: &str, site: Option<&str>, l: Option<Labels>| {
            access::NewGrant {
                user: user.map(str::to_owned),
                prefix: p(prefix),
                site: site.map(str::to_owned),
                labels: l,
                read: true,
                list: false,
            }
        };
        access::create_grant(c, &g(Some("u"), "/a-only", Some("a"), None))?;
        access::create_grant(
            c,
            &g(Some("u"), "/farms", None, Some(labels(&[("tier", "farm")]))),
        )?;
        access::create_grant(c, &g(None, "/pub", None, None))?;
        assert!(matches!(
            access::create_grant(c, &g(Some("ghost"), "/", None, None)),
            Err(Error::NotFound(_))
        ));
        let ca = access::site_config(c, "a")?.unwrap();
        let cb = access::site_config(c, "b")?.unwrap();
        assert!(
            ca.revision > rev0,
            "config revision moves with users and grants"
        );
        assert_eq!(ca.grants.len(), 3);
        assert_eq!(cb.grants.len(), 1);
        assert_eq!(
            cb.grants[0].principal,
            sitecast_protocol::Principal::Anonymous
        );
        assert_eq!(ca.users[0].password_hash.as_deref(), Some("$argon2id$x"));
        assert!(access::delete_user(c, "u")?);
        assert_eq!(
            access::site_config(c, "a")?.unwrap().grants.len(),
            1,
            "a user's grants go with them"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn tokens_by_hash_unique_names_roles_and_revocation() {
    use super::tokens::{self, Role};
    let (_d, db) = db();
    db.blocking(|c| {
        tokens::set_named(c, "admin", b"t1")?;
        tokens::set_named(c, "admin", b"t2")?;
        assert_eq!(tokens::by_hash(c, b"t1")?, None);
        let admin = tokens::by_hash(c, b"t2")?.unwrap();
        assert_eq!((admin.name.as_str(), admin.role), ("admin", Role::Admin));
        tokens::add(c, "ci", b"t3", Role::Viewer, Some(5))?;
        let ci = tokens::by_hash(c, b"t3")?.unwrap();
        assert_eq!(ci.role, Role::Viewer);
        assert!(ci.expired(5) && !ci.expired(4));
        let e = tokens::add(c, "ci", b"t4", Role::Admin, None).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        let listed = tokens::list(c)?;
        assert_eq!(listed.len(), 2);
        assert!(listed[1].last_used.is_some(), "by_hash records the use");
        assert!(tokens::delete(c, "ci")?);
        assert!(!tokens::delete(c, "ci")?);
        assert_eq!(tokens::by_hash(c, b"t3")?, None);
        Ok(())
    })
    .unwrap();
}

#[test]
fn push_lifecycle_from_reports() {
    let (_d, db) = db();
    let r1 = recipe(1, 300_000);
    let r2 = recipe(2, 100_000);
    db.blocking(|c| {
        sites::create(c, "s1", &labels(&[("p", "g")]), None, &[], b"1", LATER)?;
        sites::create(
            c,
            "s2",
            &labels(&[("p", "g")]),
            Some(5000),
            &[],
            b"2",
            LATER,
        )?;
        sites::create(c, "s3", &Labels::new(), None, &[], b"3", LATER)?;
        artifacts::publish(c, &p("/fw/a.bin"), &r1, 1)?;
        artifacts::publish(c, &p("/fw/b.bin"), &r2, 1)?;
        {
            let mut bad = |np: NewPush| pushes::create(c, &np).unwrap_err();
            assert!(matches!(
                bad(NewPush {
                    content: vec!["/nothing".into()],
                    sites: vec!["s1".into()],
                    ..NewPush::default()
                }),
                Error::BadRequest(_)
            ));
            assert!(matches!(
                bad(NewPush {
                    content: vec!["/fw/".into()],
                    sites: vec![],
                    ..NewPush::default()
                }),
                Error::BadRequest(_)
            ));
            assert!(matches!(
                bad(NewPush {
                    content: vec!["/fw/".into()],
                    sites: vec!["zz".into()],
                    ..NewPush::default()
                }),
                Error::BadRequest(_)
            ));
            assert!(matches!(
                bad(NewPush {
                    content: vec!["/a/../b".into()],
                    sites: vec!["s1".into()],
                    ..NewPush::default()
                }),
                Error::BadPath { .. }
            ));
        }
        let rev_before = sites::revisions(c, "s1")?.unwrap().0;
        let push = pushes::create(
            c,
            &NewPush {
                content: vec!["/fw".into()],
                labels: Some(labels(&[("p", "g")])),
                max_rate: Some(1000),
                ..NewPush::default()
            },
        )?;
        assert_eq!(push.content, vec!["/fw/a.bin", "/fw/b.bin"]);
        assert_eq!(push.sites.len(), 2);
        assert_eq!(push.sites[0].bytes_total, 400_000);
        assert_eq!(push.state, "in_progress");
        assert!(sites::revisions(c, "s1")?.unwrap().0 > rev_before);
        assert_eq!(
            sites::revisions(c, "s3")?.unwrap().0,
            rev_before,
            "untargeted site unchanged"
        );
        let rate = |site: &str| -> Result<Option<u64>> {
            let g = super::schedule::gates(c, site, now())?.unwrap_or_default();
            sites::effective_rate(c, site, &g.pushes)
        };
        assert_eq!(rate("s1")?, Some(1000));
        assert_eq!(rate("s3")?, None);
        // A paused (held) push's cap no longer paces the site.
        super::schedule::set_paused(c, push.id, true)?;
        assert_eq!(rate("s1")?, None);
        super::schedule::set_paused(c, push.id, false)?;
        assert_eq!(rate("s1")?, Some(1000));
        let (_, desired) = pushes::desired_state(c, "s1")?.unwrap();
        assert_eq!(desired.len(), 2);
        assert!(pushes::site_has_blob(c, "s1", &r1.blake3)?);
        assert!(!pushes::site_has_blob(c, "s3", &r1.blake3)?);

        // s1: a fetching, then failed, then progress again, then complete.
        assert!(pushes::apply_report(
            c,
            "s1",
            &status("/fw/a.bin", &r1, ArtifactState::Fetching, 250_000, None)
        )?);
        let st = |c: &Connection, site: &str| {
            pushes::get(c, push.id)
                .unwrap()
                .unwrap()
                .sites
                .into_iter()
                .find(|s| s.site == site)
                .unwrap()
        };
        assert_eq!(st(c, "s1").state, "transferring");
        assert_eq!(st(c, "s1").bytes_needed, 250_000);
        pushes::apply_report(
            c,
            "s1",
            &status("/fw/b.bin", &r2, ArtifactState::Complete, 0, None),
        )?;
        pushes::apply_report(
            c,
            "s1",
            &status(
                "/fw/a.bin",
                &r1,
                ArtifactState::Failed,
                100,
                Some("disk full"),
            ),
        )?;
        let s = st(c, "s1");
        assert_eq!(s.state, "failed");
        assert!(s.error.as_deref().unwrap().contains("disk full"));
        assert_eq!(
            s.bytes_needed, 250_000,
            "bytes_needed freezes at the first non-zero report"
        );
        pushes::apply_report(
            c,
            "s1",
            &status("/fw/a.bin", &r1, ArtifactState::Fetching, 100, None),
        )?;
        assert_eq!(st(c, "s1").state, "transferring");
        pushes::add_sent(c, "s1", &r1.blake3, 1000, 42)?;
        pushes::apply_report(
            c,
            "s1",
            &status("/fw/a.bin", &r1, ArtifactState::Complete, 0, None),
        )?;
        let s = st(c, "s1");
        assert_eq!(
            (
                s.state.as_str(),
                s.payload_bytes,
                s.framing_bytes,
                s.bytes_sent
            ),
            ("complete", 1000, 42, 1042)
        );
        assert!(!pushes::apply_report(
            c,
            "s1",
            &status("/other", &r2, ArtifactState::Complete, 0, None)
        )?);

        // Pushing again what s1 holds complete: done at once, nothing needed, and the edge's
        // re-report of its first transfer's figure does not change that.
        let again = pushes::create(
            c,
            &NewPush {
                content: vec!["/fw/".into()],
                sites: vec!["s1".into()],
                ..NewPush::default()
            },
        )?;
        let s = &again.sites[0];
        assert_eq!((s.state.as_str(), s.bytes_needed), ("complete", 0));
        pushes::apply_report(
            c,
            "s1",
            &status("/fw/a.bin", &r1, ArtifactState::Complete, 250_000, None),
        )?;
        let s = pushes::get(c, again.id)?.unwrap().sites.remove(0);
        assert_eq!((s.state.as_str(), s.bytes_needed), ("complete", 0));

        // s2 fails: the push is failed once every site is done.
        pushes::apply_report(
            c,
            "s2",
            &status("/fw/b.bin", &r2, ArtifactState::Failed, 5, Some("boom")),
        )?;
        assert_eq!(pushes::get(c, push.id)?.unwrap().state, "in_progress");
        let s = st(c, "s2");
        assert_eq!(s.state, "transferring", "other artifacts still pending");
        assert!(
            s.error.as_deref().unwrap().contains("boom"),
            "the error shows meanwhile"
        );
        pushes::apply_report(
            c,
            "s2",
            &status("/fw/a.bin", &r1, ArtifactState::Complete, 0, None),
        )?;
        assert_eq!(pushes::get(c, push.id)?.unwrap().state, "failed");

        // A newer push of other content for the same path supersedes s2's pending b.bin.
        let r3 = recipe(3, 50_000);
        artifacts::publish(c, &p("/fw/b.bin"), &r3, 2)?;
        let push2 = pushes::create(
            c,
            &NewPush {
                content: vec!["/fw/b.bin".into()],
                sites: vec!["s2".into()],
                ..NewPush::default()
            },
        )?;
        assert_eq!(pushes::get(c, push.id)?.unwrap().state, "complete");
        let (_, desired) = pushes::desired_state(c, "s2")?.unwrap();
        let b = desired
            .iter()
            .find(|m| m.path.as_str() == "/fw/b.bin")
            .unwrap();
        assert_eq!(b.blob, r3.blake3, "newest push wins for a path");
        assert!(
            artifacts::blob_referenced(c, &r2.blake3)?,
            "still in s1's desired state"
        );

        // Deleting the artifact removes it from desired states and completes waiting pushes.
        let del = artifacts::delete(c, &p("/fw/b.bin"))?.unwrap();
        assert!(del.sites.contains(&"s2".to_owned()));
        assert_eq!(pushes::get(c, push2.id)?.unwrap().state, "complete");
        let (_, desired) = pushes::desired_state(c, "s2")?.unwrap();
        assert!(desired.iter().all(|m| m.path.as_str() != "/fw/b.bin"));
        assert_eq!(pushes::list(c)?.len(), 3);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_version_replaced_at_every_site_is_retired_and_collectable() {
    let (_d, db) = db();
    let (v1, v2, v3) = (recipe(1, 200_000), recipe(2, 200_000), recipe(3, 100_000));
    db.blocking(|c| {
        sites::create(c, "s1", &Labels::new(), None, &[], b"1", LATER)?;
        sites::create(c, "s2", &Labels::new(), None, &[], b"2", LATER)?;
        let push = |c: &mut Connection, sites: &[&str]| {
            pushes::create(
                c,
                &NewPush {
                    content: vec!["/fw/x.bin".into()],
                    sites: sites.iter().map(|s| (*s).to_owned()).collect(),
                    ..NewPush::default()
                },
            )
            .map(|p| p.id)
        };
        artifacts::publish(c, &p("/fw/x.bin"), &v1, 1)?;
        artifacts::publish(c, &p("/fw/other.bin"), &v3, 1)?;
        let p1 = push(c, &["s1", "s2"])?;
        assert_eq!(pushes::retire_shadowed(c, Some(p1))?, vec![]);

        // v2 replaces v1 at the origin and reaches s1 only: s2 still wants v1.
        artifacts::publish(c, &p("/fw/x.bin"), &v2, 2)?;
        let p2 = push(c, &["s1"])?;
        assert_eq!(pushes::retire_shadowed(c, Some(p2))?, vec![]);
        assert!(artifacts::blob_referenced(c, &v1.blake3)?);

        // Once v2 is pushed to s2 as well and complete at both, no site wants v1: retired,
        // and nothing references it. Not before: a cancelled p3 would fall back to v1.
        let p3 = push(c, &["s2"])?;
        assert_eq!(pushes::retire_shadowed(c, Some(p3))?, vec![]);
        let done = status("/fw/x.bin", &v2, ArtifactState::Complete, 0, None);
        assert_eq!(
            pushes::apply_report_completing(c, "s1", &done)?.map(|m| m.completed),
            Some(vec![p2])
        );
        assert_eq!(pushes::retire_shadowed(c, Some(p3))?, vec![]);
        assert_eq!(
            pushes::apply_report_completing(c, "s2", &done)?.map(|m| m.completed),
            Some(vec![p3])
        );
        assert_eq!(pushes::retire_shadowed(c, Some(p3))?, vec![v1.blake3]);
        assert!(!artifacts::blob_referenced(c, &v1.blake3)?);
        assert!(!artifacts::delete_blob(c, &v1.blake3)?.is_empty());
        // v2 is the current artifact and in both desired states; other.bin was never pushed.
        assert!(artifacts::blob_referenced(c, &v2.blake3)?);
        for s in ["s1", "s2"] {
            let (_, desired) = pushes::desired_state(c, s)?.unwrap();
            let x: Vec<_> = desired.iter().map(|m| (m.path.as_str(), m.blob)).collect();
            assert_eq!(x, vec![("/fw/x.bin", v2.blake3)], "{s}");
        }
        // The older pushes still show what they delivered; a sweep of every path finds
        // nothing more to retire.
        assert_eq!(pushes::get(c, p1)?.unwrap().content, vec!["/fw/x.bin"]);
        assert_eq!(pushes::retire_shadowed(c, None)?, vec![]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_cancelled_push_falls_back_to_the_older_version_and_a_deleted_site_keeps_its_history() {
    let (_d, db) = db();
    let (v1, v2) = (recipe(11, 150_000), recipe(12, 150_000));
    db.blocking(|c| {
        sites::create(c, "s1", &Labels::new(), None, &[], b"1", LATER)?;
        sites::create(c, "s2", &Labels::new(), None, &[], b"2", LATER)?;
        let push = |c: &mut Connection| {
            pushes::create(
                c,
                &NewPush {
                    content: vec!["/fw/x.bin".into()],
                    sites: vec!["s1".into(), "s2".into()],
                    ..NewPush::default()
                },
            )
            .map(|p| p.id)
        };
        let wanted = |c: &Connection, site: &str| {
            let (_, d) = pushes::desired_state(c, site).unwrap().unwrap();
            d.iter().map(|m| m.blob).collect::<Vec<_>>()
        };
        artifacts::publish(c, &p("/fw/x.bin"), &v1, 1)?;
        let p1 = push(c)?;
        for s in ["s1", "s2"] {
            let done = status("/fw/x.bin", &v1, ArtifactState::Complete, 150_000, None);
            pushes::apply_report_completing(c, s, &done)?;
        }
        artifacts::publish(c, &p("/fw/x.bin"), &v2, 2)?;
        let p2 = push(c)?;
        assert_eq!(wanted(c, "s1"), vec![v2.blake3]);
        // v2 completes at s2 only, then the push is cancelled.
        let done = status("/fw/x.bin", &v2, ArtifactState::Complete, 150_000, None);
        pushes::apply_report_completing(c, "s2", &done)?;
        let fetching = status("/fw/x.bin", &v2, ArtifactState::Fetching, 150_000, None);
        pushes::apply_report_completing(c, "s1", &fetching)?;
        let rev = sites::revisions(c, "s1")?.unwrap().0;
        assert_eq!(pushes::cancel(c, p2, "test")?, Some(vec!["s1".to_owned()]));
        assert!(
            sites::revisions(c, "s1")?.unwrap().0 > rev,
            "s1's edges are told"
        );
        assert_eq!(pushes::cancel(c, 999, "test")?, None);
        let info = pushes::get(c, p2)?.unwrap();
        assert_eq!(info.state, "cancelled");
        assert!(info.cancelled.is_some());
        let states: Vec<_> = info.sites.iter().map(|s| s.state.as_str()).collect();
        assert_eq!(states, vec!["cancelled", "complete"]);
        assert_eq!(wanted(c, "s1"), vec![v1.blake3], "back to what s1 had");
        assert_eq!(wanted(c, "s2"), vec![v2.blake3], "s2 keeps what it got");
        // A late report from s1 does not revive the cancelled push.
        pushes::apply_report_completing(c, "s1", &done)?;
        assert_eq!(pushes::get(c, p2)?.unwrap().sites[0].state, "cancelled");
        // v1 stays for s1; nothing is retired while s1 still wants it.
        assert_eq!(pushes::retire_shadowed(c, None)?, vec![]);

        // Deleting s1 keeps its rows as history, and a new s1 inherits nothing.
        assert!(sites::delete(c, "s1")?);
        let info = pushes::get(c, p1)?.unwrap();
        let s1 = info.sites.iter().find(|s| s.site == "s1").unwrap();
        assert_eq!(s1.state, "complete");
        assert!(s1.site_deleted.is_some());
        assert_eq!(info.state, "complete");
        sites::create(c, "s1", &Labels::new(), None, &[], b"3", LATER)?;
        assert_eq!(wanted(c, "s1"), Vec::<sitecast_protocol::BlobId>::new());
        assert!(!pushes::site_has_blob(c, "s1", &v1.blake3)?);
        // With s1 gone, v1 is wanted nowhere: retired.
        assert_eq!(pushes::retire_shadowed(c, None)?, vec![v1.blake3]);
        Ok(())
    })
    .unwrap();
}
