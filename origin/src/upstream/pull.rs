//! Pull-through: a manifest or blob the registry lacks, in a repository whose name matches a
//! configured upstream prefix, is fetched once from that upstream, stored, and answered.
//!
//! Manifests are stored as they arrive with [`MissingRefs::All`] (their layers come later, when
//! asked for), so a platform manifest does not wait for its layers. A missing blob is streamed
//! to the first client while it is chunked, verified and stored; concurrent requests for the same
//! blob wait for that one fetch and are answered from the store. The fetch finishes (and the blob
//! is stored) even if the first client goes away. A blob whose bytes do not match its digest is
//! not stored, and the first client's response is cut.
//!
//! A tag fetched from an upstream is answered from the origin for the upstream's `tag_ttl`;
//! after that the next request asks the upstream by `HEAD` and fetches the manifest only when
//! the digest moved (an unreachable upstream leaves the stored digest serving). What the
//! upstream answers 404 for is absent, as if no upstream were configured (a push into a
//! pull-through repository checks for blobs first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt as _;
use sitecast_protocol::oci::{Reference, RepoName};
use sitecast_protocol::Sha256Digest;

use super::{Upstream, UpstreamSpec};
use crate::config::UpstreamConfig;
use crate::core::Core;
use crate::db;
use crate::db::oci::MissingRefs;
use crate::error::{Error, Result};
use crate::ingest::BlobWriter;
use crate::registry::manifests::{self, MAX_MANIFEST};
use crate::util::now;

type Flight = Arc<tokio::sync::Mutex<()>>;

/// The configured upstreams and the fetches in flight.
#[derive(Default)]
pub(crate) struct PullThrough {
    upstreams: Vec<(String, Upstream, std::time::Duration)>,
    flights: Mutex<HashMap<String, Flight>>,
}

/// A blob fetched on demand.
pub(crate) enum Pulled {
    /// Streaming to this client while it is stored: the body and its length.
    Streaming(Body, Option<u64>),
    /// Now in the store (another request fetched it): read it from there.
    Stored,
}

impl PullThrough {
    /// Build from the configuration (reads password files).
    pub(crate) fn new(cfg: &[UpstreamConfig]) -> Result<Self> {
        let mut upstreams = Vec::new();
        for u in cfg {
            let credentials = match (&u.username, &u.password_file) {
                (Some(user), Some(file)) => {
                    let p =
                        std::fs::read_to_string(file).map_err(|e| Error::io("read", file, e))?;
                    Some((user.clone(), p.trim().to_owned()))
                }
                _ => None,
            };
            let up = Upstream::new(UpstreamSpec {
                base: u.url.clone(),
                credentials,
            })?;
            upstreams.push((u.prefix.clone(), up, u.tag_ttl));
        }
        // Longest prefix first.
        upstreams.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.len()));
        Ok(Self {
            upstreams,
            flights: Mutex::new(HashMap::new()),
        })
    }

    /// The upstream serving `repo`, and the repository's path there.
    fn find(&self, repo: &RepoName) -> Option<(&Upstream, String)> {
        self.find_ttl(repo).map(|(up, path, _)| (up, path))
    }

    fn find_ttl(&self, repo: &RepoName) -> Option<(&Upstream, String, std::time::Duration)> {
        self.upstreams.iter().find_map(|(prefix, up, ttl)| {
            repo.as_str()
                .strip_prefix(prefix.as_str())
                .filter(|rest| !rest.is_empty())
                .map(|rest| (up, rest.to_owned(), *ttl))
        })
    }

    /// Ask the upstream again about `tag` of `repo` when the stored one is older than the
    /// upstream's `tag_ttl` (see the module docs). Failures of the upstream are logged, not
    /// returned: the stored digest keeps serving.
    pub(crate) async fn refresh_tag(
        &self,
        core: &Arc<Core>,
        repo: &RepoName,
        tag: &str,
    ) -> Result<()> {
        let Some((up, path, ttl)) = self.find_ttl(repo) else {
            return Ok(());
        };
        let fresh = || {
            let (r, t, core) = (repo.clone(), tag.to_owned(), Arc::clone(core));
            async move {
                let row = core.db.call(move |c| db::oci::tag_row(c, &r, &t)).await?;
                let age = row.map(|(_, updated)| now() - updated);
                Ok::<_, Error>(row.map(|(d, _)| d).zip(age))
            }
        };
        let ttl_s = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        match fresh().await? {
            None => return Ok(()), // not stored yet: the miss path fetches it
            Some((_, age)) if !ttl.is_zero() && age < ttl_s => return Ok(()),
            Some(_) => {}
        }
        let flight = self.flight(format!("m {repo} {tag}"));
        let _g = flight.lock().await;
        let Some((current, age)) = fresh().await? else {
            return Ok(());
        };
        if !ttl.is_zero() && age < ttl_s {
            return Ok(()); // refreshed by the request we waited for
        }
        let reference = Reference::Tag(tag.to_owned());
        let (r, t) = (repo.clone(), tag.to_owned());
        let touch = core.db.call(move |c| db::oci::touch_tag(c, &r, &t, now()));
        match up.manifest_digest(&path, &reference).await {
            Ok(Some(d)) if d == current => return touch.await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(repo = %repo, tag, error = %e, "cannot refresh a tag from its upstream; serving the stored digest");
                return Ok(());
            }
        }
        match up.manifest(&path, &reference, MAX_MANIFEST).await {
            Ok((bytes, media_type)) => {
                manifests::store(core, repo, &bytes, media_type, Some(tag), MissingRefs::All)
                    .await
                    .map_err(|e| Error::Upstream(e.message().to_owned()))?;
                tracing::info!(repo = %repo, tag, "tag moved at the upstream; new manifest stored");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(repo = %repo, tag, error = %e, "cannot fetch a moved tag; serving the stored digest");
                Ok(())
            }
        }
    }

    fn flight(&self, key: String) -> Flight {
        let mut m = self
            .flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.retain(|_, f| Arc::strong_count(f) > 1);
        Arc::clone(m.entry(key).or_default())
    }

    /// Fetch and store a manifest `repo` lacks. `Ok(false)` when no upstream serves `repo`.
    pub(crate) async fn manifest(
        &self,
        core: &Arc<Core>,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<bool> {
        let Some((up, path)) = self.find(repo) else {
            return Ok(false);
        };
        let flight = self.flight(format!("m {repo} {reference}"));
        let _g = flight.lock().await;
        let (r2, ref2) = (repo.clone(), reference.clone());
        if core
            .db
            .call(move |c| db::oci::get_manifest(c, &r2, &ref2))
            .await?
            .is_some()
        {
            return Ok(true);
        }
        let (bytes, media_type) = match up.manifest(&path, reference, MAX_MANIFEST).await {
            // The upstream does not have it either: as absent as if there were no upstream.
            Err(Error::NotFound(_)) => return Ok(false),
            r => r?,
        };
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        manifests::store(core, repo, &bytes, media_type, tag, MissingRefs::All)
            .await
            .map_err(|e| Error::Upstream(e.message().to_owned()))?;
        tracing::info!(repo = %repo, reference = %reference, "manifest fetched from upstream");
        Ok(true)
    }

    /// Fetch a blob `repo` lacks. `Ok(None)` when no upstream serves `repo`.
    pub(crate) async fn blob(
        &self,
        core: &Arc<Core>,
        repo: &RepoName,
        digest: &Sha256Digest,
    ) -> Result<Option<Pulled>> {
        let Some((up, path)) = self.find(repo) else {
            return Ok(None);
        };
        let flight = self.flight(format!("b {}", digest.to_oci()));
        let guard = Arc::clone(&flight).lock_owned().await;
        // Stored meanwhile (by another request), or in another repository: link it.
        let (r2, d2) = (repo.clone(), *digest);
        let have = core
            .db
            .call(move |c| {
                if db::oci::repo_blob(c, &r2, &d2)?.is_some() {
                    return Ok(true);
                }
                match db::oci::any_repo_blob(c, &d2)? {
                    Some((_, recipe)) => {
                        db::oci::link_blob(c, &r2, &recipe, now())?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
            .await?;
        if have {
            return Ok(Some(Pulled::Stored));
        }
        let resp = match up.blob(&path, digest).await {
            Err(Error::NotFound(_)) => return Ok(None),
            r => r?,
        };
        let len = resp.content_length();
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let (core, repo, digest) = (Arc::clone(core), repo.clone(), *digest);
        tokio::spawn(async move {
            let _guard = guard;
            let mut w = BlobWriter::new(&core);
            let mut stream = resp.bytes_stream();
            let mut client = Some(tx);
            // The last piece is held back until the digest is verified, so a client never
            // receives a complete response of bad bytes.
            let mut held: Option<Bytes> = None;
            let res: Result<()> = async {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk
                        .map_err(|e| Error::Upstream(format!("blob {}: {e}", digest.to_oci())))?;
                    w.feed_bytes(chunk.clone()).await?;
                    if let (Some(tx), Some(prev)) = (&client, held.replace(chunk)) {
                        if tx.send(Ok(prev)).await.is_err() {
                            // The client went away; finish storing anyway.
                            client = None;
                        }
                    }
                }
                let recipe = w.finish().await?;
                if recipe.sha256 != digest {
                    return Err(Error::Upstream(format!(
                        "blob {} arrived with digest {}; not stored",
                        digest.to_oci(),
                        recipe.sha256.to_oci()
                    )));
                }
                let r2 = repo.clone();
                core.db
                    .call(move |c| db::oci::link_blob(c, &r2, &recipe, now()))
                    .await
            }
            .await;
            match res {
                Ok(()) => {
                    w.release();
                    if let (Some(tx), Some(last)) = (&client, held.take()) {
                        let _ = tx.send(Ok(last)).await;
                    }
                    tracing::info!(repo = %repo, blob = %digest.to_oci(), "blob fetched from upstream");
                }
                Err(e) => {
                    tracing::warn!(repo = %repo, blob = %digest.to_oci(), error = %e, "pull-through of a blob failed");
                    w.abandon().await;
                    if let Some(tx) = client {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    }
                }
            }
        });
        let body = Body::from_stream(tokio_stream_of(rx));
        Ok(Some(Pulled::Streaming(body, len)))
    }
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
