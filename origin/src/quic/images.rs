//! On-demand image streams: an edge asks what a manifest reference names, or for a blob's
//! recipe, when a client at its site wants an image nobody pushed there. A repository with a
//! pull-through upstream is filled from it first (one upstream fetch however many sites ask).
//! The chunks then travel on ordinary [`super::data`] streams, which allow any blob stored in
//! an OCI repository. An edge also asks for the referrers of a manifest, so that what was
//! attached to an image at the origin (signatures, SBOMs) is listed at the site.

use std::sync::Arc;

use futures::StreamExt as _;
use quinn::{RecvStream, SendStream};
use sitecast_protocol::oci::{Reference, RepoName};
use sitecast_protocol::wire::{
    ErrorCode, Message, OciBlobRequest, OciReferrer, OciReferrers, OciReferrersList, OciResolve,
    OciResolved, OciTagList, OciTags, RecipeResponse, MAX_TAGS,
};
use sitecast_runtime::framed::write_frame;

use super::{reject, Peer};
use crate::core::Core;
use crate::db;
use crate::error::{Error, Result};
use crate::upstream::pull::Pulled;

async fn refuse(
    core: &Core,
    peer: &Peer,
    send: SendStream,
    recv: RecvStream,
    e: Error,
) -> Result<()> {
    let code = match &e {
        Error::BadRequest(_) => ErrorCode::BadRequest,
        Error::NotFound(_) => ErrorCode::NotFound,
        // An upstream that fails or lacks it: the edge answers its client "unknown".
        Error::Upstream(_) => ErrorCode::NotFound,
        _ => ErrorCode::Internal,
    };
    reject(core, Some(peer), send, recv, code, e.to_string()).await;
    Ok(())
}

fn repo_of(s: &str) -> Result<RepoName> {
    RepoName::parse(s).map_err(|e| Error::BadRequest(e.to_string()))
}

async fn resolved(core: &Arc<Core>, r: &OciResolve) -> Result<OciResolved> {
    let repo = repo_of(&r.repo)?;
    let reference = Reference::parse(&r.reference).map_err(|e| Error::BadRequest(e.to_string()))?;
    let lookup = |repo: RepoName, reference: Reference| async move {
        core.db
            .call(move |c| db::oci::get_manifest(c, &repo, &reference))
            .await
    };
    if let Reference::Tag(t) = &reference {
        core.pull.refresh_tag(core, &repo, t).await?;
    }
    let mut m = lookup(repo.clone(), reference.clone()).await?;
    if m.is_none() && core.pull.manifest(core, &repo, &reference).await? {
        m = lookup(repo.clone(), reference.clone()).await?;
    }
    let m = m.ok_or_else(|| Error::NotFound(format!("manifest {reference} is not in {repo}")))?;
    let digest = m.digest;
    let r2 = repo.clone();
    let manifest = core
        .db
        .call(move |c| db::images::manifest(c, &r2, &digest))
        .await?
        .ok_or_else(|| Error::NotFound(format!("manifest {reference} is not in {repo}")))?;
    Ok(OciResolved {
        manifest,
        recipe: m.recipe,
    })
}

pub(super) async fn resolve(
    core: &Arc<Core>,
    peer: &Peer,
    mut send: SendStream,
    recv: RecvStream,
    r: OciResolve,
) -> Result<()> {
    let answer = match resolved(core, &r).await {
        Ok(a) => a,
        Err(e) => return refuse(core, peer, send, recv, e).await,
    };
    tracing::info!(site = %peer.site, repo = %r.repo, reference = %r.reference,
        digest = %answer.manifest.digest.to_oci(), "manifest resolved on demand");
    let n = write_frame(&mut send, &Message::OciResolved(answer)).await?;
    core.count_sent(&peer.site, None, 0, n as u64);
    let _ = send.finish();
    Ok(())
}

async fn blob_recipe(
    core: &Arc<Core>,
    r: &OciBlobRequest,
) -> Result<sitecast_protocol::BlobRecipe> {
    let repo = repo_of(&r.repo)?;
    let digest = r.digest;
    let lookup = |repo: RepoName| async move {
        core.db
            .call(move |c| db::oci::repo_blob(c, &repo, &digest))
            .await
    };
    if let Some(recipe) = lookup(repo.clone()).await? {
        return Ok(recipe);
    }
    match core.pull.blob(core, &repo, &digest).await? {
        Some(Pulled::Streaming(body, _)) => {
            // Stored by the fetch task while this drains it; a bad upstream cuts the stream.
            let mut drain = body.into_data_stream();
            while let Some(piece) = drain.next().await {
                if piece.is_err() {
                    break;
                }
            }
        }
        Some(Pulled::Stored) | None => {}
    }
    lookup(repo.clone())
        .await?
        .ok_or_else(|| Error::NotFound(format!("blob {} is not in {repo}", digest.to_oci())))
}

pub(super) async fn blob(
    core: &Arc<Core>,
    peer: &Peer,
    mut send: SendStream,
    recv: RecvStream,
    r: OciBlobRequest,
) -> Result<()> {
    let recipe = match blob_recipe(core, &r).await {
        Ok(a) => a,
        Err(e) => return refuse(core, peer, send, recv, e).await,
    };
    let blob = recipe.blake3;
    let n = write_frame(
        &mut send,
        &Message::RecipeResponse(RecipeResponse { recipe }),
    )
    .await?;
    core.count_sent(&peer.site, Some(blob), 0, n as u64);
    let _ = send.finish();
    Ok(())
}

/// The referrers the origin holds for `r.subject` in `r.repo` (not asked of an upstream).
pub(super) async fn referrers(
    core: &Arc<Core>,
    peer: &Peer,
    mut send: SendStream,
    recv: RecvStream,
    r: OciReferrers,
) -> Result<()> {
    let repo = match repo_of(&r.repo) {
        Ok(repo) => repo,
        Err(e) => return refuse(core, peer, send, recv, e).await,
    };
    let subject = r.subject;
    let list = core
        .db
        .call(move |c| db::oci::referrers(c, &repo, &subject, None))
        .await?;
    let referrers = list
        .into_iter()
        .map(|x| OciReferrer {
            digest: x.digest,
            size: x.size,
            media_type: x.media_type,
            artifact_type: x.artifact_type,
            annotations_json: x.annotations,
        })
        .collect();
    let msg = Message::OciReferrersList(OciReferrersList { referrers });
    let n = write_frame(&mut send, &msg).await?;
    core.count_sent(&peer.site, None, 0, n as u64);
    let _ = send.finish();
    Ok(())
}

/// The tags the origin holds for `r.repo` (at most [`MAX_TAGS`]; not asked of an upstream).
pub(super) async fn tags(
    core: &Arc<Core>,
    peer: &Peer,
    mut send: SendStream,
    recv: RecvStream,
    r: OciTags,
) -> Result<()> {
    let repo = match repo_of(&r.repo) {
        Ok(repo) => repo,
        Err(e) => return refuse(core, peer, send, recv, e).await,
    };
    let tags = core
        .db
        .call(move |c| db::oci::tags(c, &repo, None, MAX_TAGS))
        .await?;
    let n = write_frame(&mut send, &Message::OciTagList(OciTagList { tags })).await?;
    core.count_sent(&peer.site, None, 0, n as u64);
    let _ = send.finish();
    Ok(())
}
