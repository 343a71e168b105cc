//! End-to-end tests of the site's OCI registry mirror (issue 8): `sitecast origin` and
//! `sitecast edge` on loopback, images pushed to the origin's registry with skopeo, pushed to
//! the site over QUIC (or fetched on demand), and pulled from the edge with skopeo, curl and a
//! private containerd.

mod common;

use std::path::Path;
use std::time::Duration;

use common::containerd::{Containerd, Fallback};
use common::mirror::{origin_creds, publish, site, site_with_edge_config};
use common::oci::{
    digest, pull_to_dir, push_layout, skopeo, skopeo_ok, write_layout, Layout, Upstream,
};
use common::*;

const KIB: usize = 1 << 10;

/// Every file of a `skopeo copy … dir:` folder is named by its digest and hashes to it.
fn check_dir(out: &Path, expect: &[String]) {
    for d in expect {
        let hex = d.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(out.join(hex))
            .unwrap_or_else(|e| panic!("{d} missing from {}: {e}", out.display()));
        assert_eq!(
            digest(&bytes),
            *d,
            "blob {d} pulled from the edge has other bytes"
        );
    }
}

fn edge_metric(env: &TestEnv, edge: &Edge, name: &str, repo: &str) -> f64 {
    let text = curl(env, &[&format!("http://{}/metrics", edge.metrics)]).text();
    prom_sum(&text, name, &[("repository", repo)]).unwrap_or(0.0)
}

#[test]
fn pushed_images_are_pulled_from_the_edge_byte_exact() {
    let env = TestEnv::new("mirror-push", Duration::from_secs(240));
    let (origin, edge) = site(&env);
    // Everything granted to anonymous devices: the image blobs must still not show as files.
    origin.ctl_ok(&env, &["grant", "create", "--anonymous", "--path", "/"]);
    let oci = edge.oci.expect("edge serves the mirror");
    let single = publish(
        &env,
        &origin,
        1,
        &[300 * KIB, 40 * KIB],
        &["amd64"],
        "docker.io/library/hello",
        "1",
    );
    let multi = publish(
        &env,
        &origin,
        2,
        &[200 * KIB],
        &["amd64", "arm64"],
        "docker.io/library/multi",
        "2",
    );

    // Before any push the site serves nothing of these tags from its own store; the push
    // sends both images (every platform of the index).
    let id = origin.push(
        &env,
        &[
            "--image",
            "docker.io/library/hello:1",
            "library/multi:2",
            "--site",
            "s1",
        ],
    );
    let push = origin.push_wait_ok(&env, &id, 120);
    let s = push_site(&push, "s1");
    let total: u64 = single
        .blobs
        .iter()
        .chain(&multi.blobs)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(u64_field(s, "bytes_total"), total, "{push:#}");
    let needed = u64_field(s, "bytes_needed");
    assert!(
        needed > 0 && needed <= total,
        "bytes_needed {needed} of {total}: {push:#}"
    );
    eprintln!(
        "image push: bytes_total {total}, bytes_needed {needed}, bytes_sent {}",
        u64_field(s, "bytes_sent")
    );
    let images: Vec<&str> = push["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        images,
        vec![
            format!("docker.io/library/hello:1@{}", single.top),
            format!("docker.io/library/multi:2@{}", multi.top)
        ],
        "{push:#}"
    );
    assert!(
        push["content"].as_array().unwrap().is_empty(),
        "image blobs are not listed as files: {push:#}"
    );

    // The file protocols do not show image blobs, even with a grant on everything.
    let r = curl(&env, &[&edge.url("/.oci/")]);
    assert!(
        r.status == 404 || r.status == 401,
        "/.oci/ over HTTP: {}",
        r.status
    );
    let layer_hex = &single.platforms[0].2[0]["sha256:".len()..];
    let blob_path = format!("/.oci/sha256/{layer_hex}");
    let r = curl(&env, &[&edge.url(&blob_path)]);
    assert_eq!(r.status, 404, "an image blob by path over HTTP");
    let got = env.path("ftp-blob");
    let o = common::clients::ftpget(&env, &edge, None, &blob_path, &got);
    assert!(
        !o.ok() && o.stderr.contains("550"),
        "an image blob over FTP: {o:?}"
    );
    assert_eq!(std::fs::metadata(&got).map_or(0, |m| m.len()), 0);
    let ftp = edge.ftp.unwrap();
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "--max-time", "20", "-l", &format!("ftp://{ftp}/")]);
    let o = run_cmd(&env, c, Duration::from_secs(30));
    assert!(o.ok(), "FTP listing of /: {o:?}");
    assert!(!o.stdout.contains(".oci"), "FTP lists {:?}", o.stdout);
    let o = common::clients::sftp_batch(
        &env,
        &edge,
        None,
        &format!("ls -a /\nget {blob_path} sftp-blob\n"),
        env.dir(),
    );
    assert!(
        !o.stdout
            .lines()
            .any(|l| !l.starts_with("sftp>") && l.contains(".oci")),
        "SFTP lists: {o:?}"
    );
    assert!(o.stderr.contains("not found"), "{o:?}");
    assert!(
        !o.ok() && !env.path("sftp-blob").exists(),
        "an image blob over SFTP: {o:?}"
    );

    // skopeo against the edge: byte-exact manifest, every digest verified. No `ns`: the
    // default registry (docker.io) is assumed, as for `docker pull edge/library/hello:1`.
    let src = format!("docker://{oci}/library/hello:1");
    let raw = skopeo_ok(&env, &["inspect", "--raw", "--tls-verify=false", &src]);
    assert_eq!(
        digest(raw.as_bytes()),
        single.top,
        "manifest rewritten by the edge"
    );
    let out = env.path("pulled-single");
    pull_to_dir(&env, None, &src, None, &out);
    check_dir(&out, &single.platforms[0].2);
    // The index resolves per platform.
    let out = env.path("pulled-arm");
    let src = format!("docker://{oci}/library/multi:2");
    pull_to_dir(&env, None, &src, Some("arm64"), &out);
    let arm = multi.platforms.iter().find(|p| p.0 == "arm64").unwrap();
    check_dir(&out, &arm.2);
    let m = std::fs::read(out.join("manifest.json")).unwrap();
    assert_eq!(digest(&m), arm.1, "arm64 manifest from the index");

    // Every answer came from the site; nothing was fetched on demand.
    let repo = "docker.io/library/hello";
    assert!(edge_metric(&env, &edge, "sitecast_edge_oci_hits_total", repo) >= 3.0);
    assert_eq!(
        edge_metric(&env, &edge, "sitecast_edge_oci_bytes_on_demand_total", repo),
        0.0
    );

    // Spec answers: HEAD by tag carries the digest; unknown tag / blob / repo; Range; tags
    // list; catalog; a digest of another repository is not served here.
    let base = format!("http://{oci}/v2/library/hello");
    let r = curl(&env, &["-I", &format!("{base}/manifests/1?ns=docker.io")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(single.top.as_str()));
    assert_eq!(r.header("content-type"), Some(common::oci::MT_MANIFEST));
    let layer = &single.platforms[0].2[0];
    let r = curl(
        &env,
        &["-H", "Range: bytes=10-19", &format!("{base}/blobs/{layer}")],
    );
    assert_eq!(r.status, 206, "{:?}", r.headers);
    assert_eq!(r.body.len(), 10);
    let tags = curl(&env, &[&format!("{base}/tags/list")]).json();
    assert_eq!(tags["tags"], serde_json::json!(["1"]), "{tags}");
    // Accept negotiation: a client that takes no index type gets the linux/amd64 manifest of
    // the index (by its own digest and media type); one that takes an index gets the index.
    let multi_base = format!("http://{oci}/v2/library/multi");
    let amd = multi.platforms.iter().find(|p| p.0 == "amd64").unwrap();
    for method in ["-I", "-G"] {
        let r = curl(
            &env,
            &[
                method,
                "-H",
                &format!("Accept: {}", common::oci::MT_MANIFEST),
                &format!("{multi_base}/manifests/2"),
            ],
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("docker-content-digest"), Some(amd.1.as_str()));
        assert_eq!(r.header("content-type"), Some(common::oci::MT_MANIFEST));
        if method == "-G" {
            assert_eq!(digest(&r.body), amd.1, "the amd64 manifest's bytes");
        }
    }
    let r = curl(
        &env,
        &[
            "-H",
            "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
            &format!("{multi_base}/manifests/2"),
        ],
    );
    assert_eq!(
        digest(&r.body),
        multi.top,
        "an index to a client that takes one"
    );
    let cat = curl(&env, &[&format!("http://{oci}/v2/_catalog")]).json();
    assert_eq!(
        cat["repositories"],
        serde_json::json!(["docker.io/library/hello", "docker.io/library/multi"]),
        "{cat}"
    );
    let other_layer = &multi.platforms[0].2[0];
    let r = curl(&env, &[&format!("{base}/blobs/{other_layer}")]);
    assert_eq!(r.status, 404, "a blob of another repository: {}", r.text());
    assert!(r.text().contains("BLOB_UNKNOWN"), "{}", r.text());
    let r = curl(&env, &[&format!("{base}/manifests/nope")]);
    assert_eq!(r.status, 404);
    assert!(r.text().contains("MANIFEST_UNKNOWN"), "{}", r.text());
    let r = curl(
        &env,
        &[&format!("http://{oci}/v2/library/nothing/tags/list")],
    );
    assert_eq!(r.status, 404);
    assert!(r.text().contains("NAME_UNKNOWN"), "{}", r.text());
    let r = curl(&env, &["-X", "PUT", &format!("{base}/manifests/2")]);
    assert_eq!(r.status, 405, "the mirror is read-only");
    let r = curl(&env, &[&format!("http://{oci}/v2/Bad..Name/manifests/1")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("NAME_INVALID"), "{}", r.text());
}

#[test]
fn an_image_nobody_pushed_is_fetched_on_demand_once() {
    let env = TestEnv::new("mirror-demand", Duration::from_secs(240));
    let (origin, edge) = site(&env);
    let oci = edge.oci.unwrap();
    let l = publish(
        &env,
        &origin,
        3,
        &[2 << 20, 64 * KIB],
        &["amd64"],
        "docker.io/library/ondemand",
        "1",
    );
    let size: u64 = l.blobs.iter().map(|(_, n)| n).sum();
    let src = format!("docker://{oci}/library/ondemand:1");
    let out = env.path("pulled-1");
    pull_to_dir(&env, None, &src, None, &out);
    check_dir(&out, &l.platforms[0].2);
    let repo = "docker.io/library/ondemand";
    let fetched = edge_metric(&env, &edge, "sitecast_edge_oci_bytes_on_demand_total", repo);
    assert!(
        fetched >= (2 << 20) as f64 && fetched <= size as f64 * 1.02,
        "on demand {fetched} of {size}"
    );
    eprintln!("on-demand pull: {fetched} bytes fetched for an image of {size}");
    // A second pull (and one by digest) is answered from the site.
    let out = env.path("pulled-2");
    pull_to_dir(
        &env,
        None,
        &format!("docker://{oci}/library/ondemand@{}", l.top),
        None,
        &out,
    );
    check_dir(&out, &l.platforms[0].2);
    assert_eq!(
        edge_metric(&env, &edge, "sitecast_edge_oci_bytes_on_demand_total", repo),
        fetched,
        "the second pull fetched again"
    );
    // Something the origin does not have either: a spec 404, quickly.
    let t = std::time::Instant::now();
    let o = skopeo(
        &env,
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{oci}/library/absent:1"),
        ],
    );
    assert!(!o.ok());
    assert!(
        o.stderr.contains("manifest unknown") || o.stderr.contains("MANIFEST_UNKNOWN"),
        "{}",
        o.stderr
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a miss took {:?}",
        t.elapsed()
    );
}

/// An origin whose `docker.io/` repositories pull through from a CNCF registry, a site `s1`
/// with anonymous pulls, and its edge.
fn site_with_upstream(env: &TestEnv) -> (Upstream, Origin, Edge) {
    let upstream = Upstream::start(env);
    let origin = Origin::start_with_config(
        env,
        &format!(
            "[[registry_upstreams]]\nprefix = \"docker.io/\"\nurl = \"http://{}\"\n",
            upstream.addr
        ),
    );
    let token = origin.create_site(env, "s1", &[]);
    origin.ctl_ok(env, &["grant", "create", "--anonymous", "--path", "/oci"]);
    let edge = Edge::start(env, origin.quic, Some(&token), &env.path("edge"), &[]);
    (upstream, origin, edge)
}

/// Write a layout and push it to the CNCF upstream as `path:tag`.
fn publish_upstream(
    env: &TestEnv,
    up: &Upstream,
    seed: u64,
    layers: &[usize],
    path: &str,
    tag: &str,
) -> Layout {
    let dir = env.path(&format!("up-layout-{seed}"));
    let l = write_layout(&dir, seed, layers, &["amd64"], tag);
    push_layout(
        env,
        None,
        &dir,
        tag,
        &format!("docker://{}/{path}:{tag}", up.addr),
        false,
    );
    l
}

fn blob_gets(up: &Upstream, path: &str, l: &Layout) -> Vec<usize> {
    l.blobs
        .iter()
        .filter(|(d, _)| l.platforms[0].2.contains(d))
        .map(|(d, _)| up.gets(&format!("/v2/{path}/blobs/{d}")))
        .collect()
}

#[test]
fn containerd_pulls_pushed_and_unpushed_images_through_the_edge_and_pushed_ones_offline() {
    let env = TestEnv::new("mirror-containerd", Duration::from_secs(280));
    let (upstream, mut origin, edge) = site_with_upstream(&env);
    let oci = edge.oci.unwrap();
    let pushed = publish(
        &env,
        &origin,
        11,
        &[512 * KIB, 64 * KIB],
        &["amd64"],
        "docker.io/library/pushed",
        "1",
    );
    let id = origin.push(
        &env,
        &["--image", "docker.io/library/pushed:1", "--site", "s1"],
    );
    origin.push_wait_ok(&env, &id, 120);
    let remote = publish_upstream(&env, &upstream, 12, &[768 * KIB], "library/remote", "1");

    let ctrd = Containerd::start(&env);
    // The stock mirror configuration; a miss at the edge must not reach the internet.
    ctrd.write_hosts("docker.io", &format!("http://{oci}"), Fallback::Refused);

    // A pushed image: every answer from the site.
    ctrd.pull_ok(&env, "docker.io/library/pushed:1");
    assert_eq!(
        ctrd.image_digest(&env, "docker.io/library/pushed:1")
            .as_deref(),
        Some(pushed.top.as_str())
    );
    let c = ctrd
        .check(&env, "docker.io/library/pushed:1")
        .expect("image listed");
    assert!(c.is_complete(), "{c:?}");
    assert_eq!(
        edge_metric(
            &env,
            &edge,
            "sitecast_edge_oci_misses_total",
            "docker.io/library/pushed"
        ),
        0.0
    );

    // Not pushed, not at the origin: edge -> origin -> CNCF upstream, each blob fetched once.
    ctrd.pull_ok(&env, "docker.io/library/remote:1");
    assert_eq!(
        ctrd.image_digest(&env, "docker.io/library/remote:1")
            .as_deref(),
        Some(remote.top.as_str())
    );
    assert!(ctrd
        .check(&env, "docker.io/library/remote:1")
        .unwrap()
        .is_complete());
    let gets = blob_gets(&upstream, "library/remote", &remote);
    assert!(gets.iter().all(|n| *n == 1), "upstream blob GETs {gets:?}");

    // The origin gone: pushed images still pull (content removed from containerd first), an
    // image cached on demand too, and a miss fails within the bound instead of hanging.
    origin.kill();
    ctrd.remove(&env, "docker.io/library/pushed:1");
    ctrd.remove(&env, "docker.io/library/remote:1");
    ctrd.pull_ok(&env, "docker.io/library/pushed:1");
    assert!(ctrd
        .check(&env, "docker.io/library/pushed:1")
        .unwrap()
        .is_complete());
    ctrd.pull_ok(&env, "docker.io/library/remote:1");
    let t = std::time::Instant::now();
    let o = ctrd.pull(&env, "docker.io/library/never:1");
    assert!(!o.ok(), "pulling an unknown image succeeded: {}", o.stdout);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a miss offline took {:?}",
        t.elapsed()
    );
    let r = curl(
        &env,
        &[&format!(
            "http://{oci}/v2/library/never/manifests/1?ns=docker.io"
        )],
    );
    assert_eq!(r.status, 404);
    // Killed, the origin is either known to be gone or does not answer within the bound.
    let text = r.text();
    assert!(
        text.contains("MANIFEST_UNKNOWN")
            && (text.contains("offline") || text.contains("did not answer")),
        "{text}"
    );
}

#[test]
fn fifty_concurrent_pulls_of_an_unpushed_image_cross_the_wan_once() {
    let env = TestEnv::new("mirror-fifty", Duration::from_secs(280));
    let (upstream, origin, edge) = site_with_upstream(&env);
    let oci = edge.oci.unwrap();
    let l = publish_upstream(
        &env,
        &upstream,
        21,
        &[3 << 20, 1 << 20],
        "library/busy",
        "1",
    );
    let size: u64 = l.blobs.iter().map(|(_, n)| n).sum();
    let src = format!("docker://{oci}/library/busy:1");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (env, src, l) = (&env, &src, &l);
                s.spawn(move || {
                    let out = env.path(&format!("pull-{i}"));
                    pull_to_dir(env, None, src, None, &out);
                    check_dir(&out, &l.platforms[0].2);
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a pull failed");
        }
    });
    let text = curl(&env, &[&format!("{}/metrics", origin.url())]).text();
    let sent = prom_sum(
        &text,
        "sitecast_origin_sent_bytes_total",
        &[("site", "s1"), ("kind", "payload")],
    )
    .unwrap_or(0.0);
    eprintln!("50 concurrent on-demand pulls: origin sent {sent} payload bytes for an image of {size} ({:.4} x)", sent / size as f64);
    assert!(
        sent <= size as f64 * 1.02,
        "origin sent {sent} bytes for an image of {size}"
    );
    let gets = blob_gets(&upstream, "library/busy", &l);
    assert!(gets.iter().all(|n| *n == 1), "upstream blob GETs {gets:?}");
}

const ALICE: (&str, &str) = ("alice", "alice-pw-1");
const BOB: (&str, &str) = ("bob", "bob-pw-2");

#[test]
fn mirror_access_uses_the_site_grants_with_basic_bearer_tokens_and_a_429_before_hashing() {
    let env = TestEnv::new("mirror-auth", Duration::from_secs(240));
    let origin = Origin::start(&env);
    let token = origin.create_site(&env, "s1", &[]);
    origin.ctl_ok(&env, &["user", "create", ALICE.0, "--password", ALICE.1]);
    origin.ctl_ok(&env, &["user", "create", BOB.0, "--password", BOB.1]);
    origin.ctl_ok(
        &env,
        &[
            "grant",
            "create",
            "--user",
            ALICE.0,
            "--path",
            "/oci/docker.io/library",
            "--site",
            "s1",
        ],
    );
    let edge = Edge::start(&env, origin.quic, Some(&token), &env.path("edge"), &[]);
    let oci = edge.oci.unwrap();
    let l = publish(
        &env,
        &origin,
        41,
        &[100 * KIB],
        &["amd64"],
        "docker.io/library/private",
        "1",
    );
    let id = origin.push(
        &env,
        &["--image", "docker.io/library/private:1", "--site", "s1"],
    );
    origin.push_wait_ok(&env, &id, 120);
    // The site config (users, grants) reaches the edge with or before the push.
    let url = format!("http://{oci}/v2/library/private/manifests/1?ns=docker.io");
    let alice = format!("{}:{}", ALICE.0, ALICE.1);

    // Anonymous: 401 with the bearer challenge naming the realm, service and scope.
    let r = curl(&env, &["-I", &url]);
    assert_eq!(r.status, 401);
    let challenge = r
        .headers
        .iter()
        .find(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no Bearer challenge: {:?}", r.headers));
    assert!(
        challenge.contains(&format!("realm=\"http://{oci}/token\""))
            && challenge.contains("service=\"sitecast-edge\"")
            && challenge.contains("scope=\"repository:library/private:pull\""),
        "{challenge}"
    );
    let r = curl(&env, &[&format!("http://{oci}/v2/")]);
    assert_eq!(
        r.status, 401,
        "/v2/ without credentials when nothing is anonymous"
    );

    // Basic: alice is granted, bob is not (403 DENIED), a wrong password is 401.
    assert_eq!(curl(&env, &["-u", &alice, &url]).status, 200);
    let r = curl(&env, &["-u", &format!("{}:{}", BOB.0, BOB.1), &url]);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("DENIED"), "{}", r.text());
    assert_eq!(curl(&env, &["-u", "alice:wrong", &url]).status, 401);

    // Token GET with Basic, and the OAuth2 POST containerd sends first.
    let scope = "scope=repository%3Alibrary%2Fprivate%3Apull&service=sitecast-edge";
    let t = curl(
        &env,
        &["-u", &alice, &format!("http://{oci}/token?{scope}")],
    )
    .json();
    let bearer = format!(
        "Authorization: Bearer {}",
        t["token"].as_str().expect("token")
    );
    assert!(t["expires_in"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(curl(&env, &["-H", &bearer, &url]).status, 200);
    let other = format!("http://{oci}/v2/library/other/manifests/1");
    assert_eq!(
        curl(&env, &["-H", &bearer, &other]).status,
        401,
        "token scoped to one repository"
    );
    let form = format!(
        "grant_type=password&username={}&password={}&client_id=containerd-client&{scope}",
        ALICE.0, ALICE.1
    );
    let t = curl(&env, &["-d", &form, &format!("http://{oci}/token")]).json();
    let bearer2 = format!(
        "Authorization: Bearer {}",
        t["access_token"].as_str().expect("token")
    );
    assert_eq!(curl(&env, &["-H", &bearer2, &url]).status, 200);
    let forged = format!("{}x", &bearer2);
    assert_eq!(curl(&env, &["-H", &forged, &url]).status, 401);
    // An anonymous token does not grant what anonymous may not do.
    let t = curl(&env, &[&format!("http://{oci}/token?{scope}")]).json();
    let anon = format!("Authorization: Bearer {}", t["token"].as_str().unwrap());
    assert_eq!(curl(&env, &["-H", &anon, &url]).status, 401);

    // Real clients: skopeo follows the bearer flow; containerd with --user POSTs for a token.
    let out = env.path("pulled-auth");
    pull_to_dir(
        &env,
        Some(&alice),
        &format!("docker://{oci}/library/private:1"),
        None,
        &out,
    );
    check_dir(&out, &l.platforms[0].2);
    let ctrd = Containerd::start(&env);
    ctrd.write_hosts("docker.io", &format!("http://{oci}"), Fallback::Refused);
    let o = ctrd.pull(&env, "docker.io/library/private:1");
    assert!(
        !o.ok(),
        "an anonymous containerd pull of a private image succeeded"
    );
    let o = ctrd.pull_args(&env, "docker.io/library/private:1", &["--user", &alice]);
    assert!(
        o.ok(),
        "containerd pull as alice: {}\n{}",
        o.stdout,
        o.stderr
    );
    assert!(ctrd
        .check(&env, "docker.io/library/private:1")
        .unwrap()
        .is_complete());

    // Failed logins from one address: after the limit, 429 with Retry-After, and the refused
    // attempts do not reach argon2.
    let metrics = format!("http://{}/metrics", edge.metrics);
    for _ in 0..10 {
        curl(&env, &["-u", "alice:bad", &url]);
    }
    let before = prom_sum(
        &curl(&env, &[&metrics]).text(),
        "sitecast_edge_password_verifications_total",
        &[],
    )
    .unwrap();
    let r = curl(&env, &["-u", "alice:bad2", &url]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.text().contains("TOOMANYREQUESTS") && r.header("retry-after").is_some(),
        "{:?}",
        r.headers
    );
    let r = curl(
        &env,
        &["-u", "alice:bad3", &format!("http://{oci}/token?{scope}")],
    );
    assert_eq!(r.status, 429, "the token endpoint shares the limit");
    let after = prom_sum(
        &curl(&env, &[&metrics]).text(),
        "sitecast_edge_password_verifications_total",
        &[],
    )
    .unwrap();
    assert_eq!(before, after, "a refused login was hashed");
}

#[test]
fn a_moved_tag_costs_its_new_layer_referrers_are_listed_and_manifests_prefetch_layers() {
    let env = TestEnv::new("mirror-update", Duration::from_secs(240));
    let (origin, edge) = site(&env);
    let oci = edge.oci.unwrap();
    let cr = origin_creds(&origin);
    let repo = "docker.io/library/app";
    let push_version = |seeds: &[(u64, usize)], dir: &str| -> Layout {
        let d = env.path(dir);
        let l = common::oci::write_layout_seeded(&d, seeds, &["amd64"], "1");
        push_layout(
            &env,
            Some(&cr),
            &d,
            "1",
            &format!("docker://{}/{repo}:1", origin.registry),
            false,
        );
        let id = origin.push(&env, &["--image", &format!("{repo}:1"), "--site", "s1"]);
        let p = origin.push_wait_ok(&env, &id, 120);
        let s = push_site(&p, "s1");
        eprintln!(
            "push of {repo}:1 ({dir}): bytes_total {}, bytes_needed {}, bytes_sent {}",
            u64_field(s, "bytes_total"),
            u64_field(s, "bytes_needed"),
            u64_field(s, "bytes_sent")
        );
        l
    };
    let base = format!("http://{oci}/v2/library/app");
    let v1 = push_version(&[(1, 2 << 20), (2, 128 * KIB)], "v1");
    let r = curl(&env, &["-I", &format!("{base}/manifests/1")]);
    assert_eq!(r.header("docker-content-digest"), Some(v1.top.as_str()));
    // v2 keeps the 2 MiB layer and changes the small one: the site is sent about the new layer.
    let v2 = push_version(&[(1, 2 << 20), (3, 128 * KIB)], "v2");
    let r = curl(&env, &["-I", &format!("{base}/manifests/1")]);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(v2.top.as_str()),
        "the tag moved after the push completed"
    );
    let pushes = origin.ctl_json(&env, &["push", "list"]);
    let second = &pushes["pushes"][0];
    let s = push_site(second, "s1");
    let new_bytes: u64 = v2
        .blobs
        .iter()
        .filter(|b| !v1.blobs.contains(b))
        .map(|(_, n)| n)
        .sum();
    let needed = u64_field(s, "bytes_needed");
    assert!(
        needed <= new_bytes + 4096 && needed * 10 < u64_field(s, "bytes_total"),
        "v2 needed {needed}, new blobs {new_bytes}: {second:#}"
    );
    // v1 is still pullable by digest (its blobs stay pinned by the first push).
    let r = curl(&env, &["-I", &format!("{base}/manifests/{}", v1.top)]);
    assert_eq!(r.status, 200);

    // A referrer of v2 (an SBOM-like artifact) pushed with it, listed by the edge.
    let reg = format!("http://{}/v2/{repo}", origin.registry);
    let empty = "{}";
    let empty_digest = digest(empty.as_bytes());
    let r = curl(
        &env,
        &[
            "-u",
            &cr,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            empty,
            &format!("{reg}/blobs/uploads/?digest={empty_digest}"),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let put_referrer = |artifact_type: &str, kind: &str| -> String {
        let referrer = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": common::oci::MT_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2}],
            "subject": {"mediaType": common::oci::MT_MANIFEST, "digest": v2.top, "size": v2.top_bytes.len()},
            "annotations": {"org.example.kind": kind},
        }))
        .unwrap();
        let rd = digest(&referrer);
        let body = env.path(&format!("referrer-{kind}.json"));
        std::fs::write(&body, &referrer).unwrap();
        let r = curl(
            &env,
            &[
                "-u",
                &cr,
                "-X",
                "PUT",
                "-H",
                &format!("Content-Type: {}", common::oci::MT_MANIFEST),
                "--data-binary",
                &format!("@{}", body.display()),
                &format!("{reg}/manifests/{rd}"),
            ],
        );
        assert_eq!(r.status, 201, "{}", r.text());
        rd
    };
    let rd = put_referrer("application/vnd.example.sbom", "sbom");
    let id = origin.push(&env, &["--image", &format!("{repo}@{rd}"), "--site", "s1"]);
    origin.push_wait_ok(&env, &id, 60);
    let list = curl(&env, &[&format!("{base}/referrers/{}", v2.top)]);
    assert_eq!(
        list.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    let v = list.json();
    assert_eq!(v["manifests"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["manifests"][0]["digest"], rd.as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(v["manifests"][0]["annotations"]["org.example.kind"], "sbom");
    let v = curl(
        &env,
        &[&format!(
            "{base}/referrers/{}?artifactType=application/other",
            v2.top
        )],
    )
    .json();
    assert_eq!(v["manifests"].as_array().map(Vec::len), Some(0), "{v}");
    // A signature attached at the origin later and never pushed: listed at the edge while the
    // site is online (the origin's referrers with the site's), filtered alike, and not twice.
    let sig = put_referrer("application/vnd.example.signature", "signature");
    let v = curl(&env, &[&format!("{base}/referrers/{}", v2.top)]).json();
    let mut listed: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut want = vec![rd.as_str(), sig.as_str()];
    want.sort_unstable();
    assert_eq!(listed, want, "{v}");
    let v = curl(
        &env,
        &[&format!(
            "{base}/referrers/{}?artifactType=application/vnd.example.signature",
            v2.top
        )],
    )
    .json();
    assert_eq!(v["manifests"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["manifests"][0]["digest"], sig.as_str());
    assert_eq!(
        v["manifests"][0]["annotations"]["org.example.kind"],
        "signature"
    );

    // A platform manifest fetched on demand prefetches its layers: they arrive without being
    // asked for, and the blob requests that follow are hits.
    let pre = publish(
        &env,
        &origin,
        51,
        &[1 << 20],
        &["amd64"],
        "docker.io/library/pre",
        "1",
    );
    let r = curl(&env, &[&format!("http://{oci}/v2/library/pre/manifests/1")]);
    assert_eq!(digest(&r.body), pre.top);
    let prefetched = eventually(Duration::from_secs(20), || {
        edge_metric(
            &env,
            &edge,
            "sitecast_edge_oci_bytes_on_demand_total",
            "docker.io/library/pre",
        ) >= (1 << 20) as f64
    });
    assert!(prefetched, "the layer was not prefetched");
    let layer = &pre.platforms[0].2[0];
    let hits = edge_metric(
        &env,
        &edge,
        "sitecast_edge_oci_hits_total",
        "docker.io/library/pre",
    );
    let got = curl(
        &env,
        &[&format!("http://{oci}/v2/library/pre/blobs/{layer}")],
    );
    assert_eq!(digest(&got.body), *layer);
    // The prefetch may still be verifying: the request then joins it (a miss) — wait for it.
    let hit = eventually(Duration::from_secs(10), || {
        curl(
            &env,
            &["-I", &format!("http://{oci}/v2/library/pre/blobs/{layer}")],
        );
        edge_metric(
            &env,
            &edge,
            "sitecast_edge_oci_hits_total",
            "docker.io/library/pre",
        ) > hits
    });
    assert!(hit, "blob requests after the prefetch are not hits");
}

#[test]
fn the_on_demand_cache_keeps_to_its_quota_sparing_pushed_images() {
    let env = TestEnv::new("mirror-quota", Duration::from_secs(240));
    let (origin, edge) = site_with_edge_config(&env, Some("[oci]\ncache_max_bytes = 1500000\n"));
    let oci = edge.oci.unwrap();
    let pinned = publish(
        &env,
        &origin,
        61,
        &[1 << 20],
        &["amd64"],
        "docker.io/library/pinned",
        "1",
    );
    let id = origin.push(
        &env,
        &["--image", "docker.io/library/pinned:1", "--site", "s1"],
    );
    origin.push_wait_ok(&env, &id, 60);
    let a = publish(
        &env,
        &origin,
        62,
        &[1 << 20],
        &["amd64"],
        "docker.io/library/a",
        "1",
    );
    let b = publish(
        &env,
        &origin,
        63,
        &[1 << 20],
        &["amd64"],
        "docker.io/library/b",
        "1",
    );
    let pull = |name: &str, l: &Layout, i: usize| {
        let out = env.path(&format!("pull-{name}-{i}"));
        pull_to_dir(
            &env,
            None,
            &format!("docker://{oci}/library/{name}:1"),
            None,
            &out,
        );
        check_dir(&out, &l.platforms[0].2);
    };
    let on_demand = |name: &str| {
        edge_metric(
            &env,
            &edge,
            "sitecast_edge_oci_bytes_on_demand_total",
            &format!("docker.io/library/{name}"),
        )
    };
    pull("a", &a, 1);
    let a1 = on_demand("a");
    pull("b", &b, 1); // 2 MiB on demand > 1.5 MB: a (least recently used) goes
    pull("b", &b, 2);
    let b1 = on_demand("b");
    pull("a", &a, 2);
    assert!(
        on_demand("a") >= a1 * 2.0 - 1.0,
        "a was not evicted: {} then {}",
        a1,
        on_demand("a")
    );
    // b was used less recently than a now: b goes, and its second pull fetches again.
    pull("b", &b, 3);
    assert!(on_demand("b") > b1, "b was not evicted after a came back");
    // The pushed image is never evicted: pulled again, nothing is fetched on demand.
    pull("pinned", &pinned, 1);
    assert_eq!(on_demand("pinned"), 0.0);

    // A blob being read is never evicted: a 12 MiB layer (over the quota by itself) read by a
    // slow client (16 KiB receive buffer, ~2 MiB/s) while other images are pulled and the quota
    // is enforced; the slow read gets every byte right.
    let big = publish(
        &env,
        &origin,
        64,
        &[12 << 20],
        &["amd64"],
        "docker.io/library/big",
        "1",
    );
    let layer = big.platforms[0].2[0].clone();
    let layer_len = big.blobs.iter().find(|(d, _)| *d == layer).unwrap().1;
    let slow = r#"
import hashlib, socket, sys, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
s.connect((host, port))
s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
data = b""
while True:
    piece = s.recv(16384)
    if not piece:
        break
    data += piece
    time.sleep(0.008)
head, _, body = data.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode(), len(body), "sha256:" + hashlib.sha256(body).hexdigest())
"#;
    let oci_s = oci.to_string();
    let (host, port) = oci_s.rsplit_once(':').unwrap();
    let path = format!("/v2/library/big/blobs/{layer}");
    let out = std::thread::scope(|sc| {
        let reader = sc.spawn(|| {
            let mut c = std::process::Command::new("python3");
            c.args(["-c", slow, host, port, &path]);
            run_cmd(&env, c, Duration::from_secs(120))
        });
        // Wait until the slow read has started fetching, then make the cache evict.
        assert!(
            eventually(Duration::from_secs(30), || on_demand("big") > 0.0),
            "the slow read never started"
        );
        pull("a", &a, 3);
        pull("b", &b, 4);
        reader.join().unwrap()
    });
    assert!(out.ok(), "{out:?}");
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        [
            "HTTP/1.1",
            "200",
            "OK",
            &layer_len.to_string(),
            layer.as_str()
        ],
        "the slow read of a blob over the quota: {out:?}"
    );
}

#[test]
fn a_tag_learned_on_demand_is_asked_again_after_tag_ttl_and_not_before() {
    let env = TestEnv::new("mirror-tag-ttl", Duration::from_secs(120));
    let (origin, edge) = site_with_edge_config(&env, Some("[oci]\ntag_ttl = \"2s\"\n"));
    let url = format!("http://{}/v2/library/moving/manifests/1", edge.oci.unwrap());
    let v1 = publish(
        &env,
        &origin,
        71,
        &[4 * KIB],
        &["amd64"],
        "docker.io/library/moving",
        "1",
    );
    let digest_now = || {
        curl(&env, &["-I", &url])
            .header("docker-content-digest")
            .map(str::to_owned)
    };
    let asked = std::time::Instant::now();
    assert_eq!(
        digest_now().as_deref(),
        Some(v1.top.as_str()),
        "learned on demand"
    );
    let v2 = publish(
        &env,
        &origin,
        72,
        &[4 * KIB],
        &["amd64"],
        "docker.io/library/moving",
        "1",
    );
    assert_ne!(v1.top, v2.top);
    // Until tag_ttl has passed since the edge learned the tag, it answers what it learned;
    // then it asks the origin again and follows the move.
    let moved = loop {
        let d = digest_now();
        if d.as_deref() == Some(v2.top.as_str()) {
            break asked.elapsed();
        }
        assert_eq!(d.as_deref(), Some(v1.top.as_str()));
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "the tag never moved"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        moved >= Duration::from_secs(2),
        "the edge asked again after {moved:?}, before tag_ttl"
    );
}

/// `tests/tools/oras_roundtrip.py ARGS` (oras-py, installed by the test command).
fn oras(env: &TestEnv, args: &[&str]) -> CmdOutput {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/oras_roundtrip.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).args(args);
    run_cmd(env, cmd, Duration::from_secs(60))
}

#[test]
fn an_oras_artifact_pushed_to_the_origin_is_pulled_from_the_edge() {
    let env = TestEnv::new("mirror-oras", Duration::from_secs(120));
    let (origin, edge) = site(&env);
    let file = env.path("firmware.bin");
    write_random(&file, 0x0A5, 300 * KIB);
    let reg = origin.registry.to_string();
    let o = oras(
        &env,
        &[
            "push",
            &reg,
            "docker.io/team/fw-artifact:1",
            &file.display().to_string(),
            "sitecast",
            &origin.token,
        ],
    );
    assert!(o.ok(), "oras push: {}\n{}", o.stdout, o.stderr);
    let id = origin.push(
        &env,
        &["--image", "docker.io/team/fw-artifact:1", "--site", "s1"],
    );
    origin.push_wait_ok(&env, &id, 60);
    let out = env.path("pulled");
    let o = oras(
        &env,
        &[
            "pull",
            &edge.oci.unwrap().to_string(),
            "team/fw-artifact:1",
            &out.display().to_string(),
        ],
    );
    assert!(
        o.ok(),
        "oras pull from the edge: {}\n{}",
        o.stdout,
        o.stderr
    );
    assert_eq!(
        sha256sum(&env, &out.join("firmware.bin")),
        sha256sum(&env, &file)
    );
    assert_eq!(
        edge_metric(
            &env,
            &edge,
            "sitecast_edge_oci_misses_total",
            "docker.io/team/fw-artifact"
        ),
        0.0
    );
}
