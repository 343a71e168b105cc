//! A site for the mirror tests: an origin, an edge enrolled in site `s1`, images published to
//! the origin's registry with skopeo.

use super::oci::{push_layout, write_layout, Layout};
use super::{Edge, Origin, TestEnv};

/// An origin with site `s1`, an edge enrolled in it, and an anonymous grant on every image.
pub fn site(env: &TestEnv) -> (Origin, Edge) {
    site_with_edge_config(env, None)
}

/// [`site`] with the edge reading `edge_toml` (written to `edge.toml`) as its config file.
pub fn site_with_edge_config(env: &TestEnv, edge_toml: Option<&str>) -> (Origin, Edge) {
    let origin = Origin::start(env);
    let token = origin.create_site(env, "s1", &[]);
    origin.ctl_ok(env, &["grant", "create", "--anonymous", "--path", "/oci"]);
    let cfg = env.path("edge.toml");
    let mut args = Vec::new();
    if let Some(toml) = edge_toml {
        std::fs::write(&cfg, toml).expect("writing edge.toml");
        args = vec!["--config", cfg.to_str().expect("a UTF-8 temp path")];
    }
    let edge = Edge::start(env, origin.quic, Some(&token), &env.path("edge"), &args);
    (origin, edge)
}

pub fn origin_creds(origin: &Origin) -> String {
    format!("sitecast:{}", origin.token)
}

/// Write a layout and push it to the origin as `repo:tag` (all platforms).
pub fn publish(
    env: &TestEnv,
    origin: &Origin,
    seed: u64,
    layers: &[usize],
    arches: &[&str],
    repo: &str,
    tag: &str,
) -> Layout {
    let dir = env.path(&format!("layout-{seed}"));
    let l = write_layout(&dir, seed, layers, arches, tag);
    let dest = format!("docker://{}/{repo}:{tag}", origin.registry);
    push_layout(
        env,
        Some(&origin_creds(origin)),
        &dir,
        tag,
        &dest,
        arches.len() > 1,
    );
    l
}
