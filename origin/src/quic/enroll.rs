//! Enrollment: a connection without a client certificate may send `Enroll` with a one-time
//! join token and a CSR, and gets its node certificate back (or `ErrorMsg { BadToken }`).

use std::sync::Arc;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use sitecast_protocol::wire::{Enroll, Enrolled, ErrorCode, Message};
use sitecast_runtime::framed::{read_frame, write_frame};
use sitecast_runtime::tls::JoinToken;

use super::reject;
use crate::core::Core;
use crate::db;
use crate::error::Error;
use crate::util::hash_secret;

/// Most streams an unauthenticated connection may open before it is closed.
const MAX_ENROLL_STREAMS: usize = 4;

pub(super) async fn connection(core: Arc<Core>, conn: Connection) {
    for _ in 0..MAX_ENROLL_STREAMS {
        let Ok((send, mut recv)) = conn.accept_bi().await else {
            return;
        };
        match read_frame(&mut recv).await {
            Ok(Some(Message::Enroll(e))) => enroll(&core, send, recv, e).await,
            Ok(Some(other)) => {
                let msg = format!(
                    "unexpected {} without a client certificate: only Enroll is accepted before enrollment",
                    other.name()
                );
                reject(&core, None, send, recv, ErrorCode::Unauthorized, msg).await;
            }
            Ok(None) => {}
            Err(e) if e.is_malformed() => {
                reject(
                    &core,
                    None,
                    send,
                    recv,
                    ErrorCode::BadRequest,
                    e.to_string(),
                )
                .await
            }
            Err(_) => return,
        }
    }
    conn.close(VarInt::from_u32(0), b"enrollment attempts exhausted");
}

async fn enroll(core: &Arc<Core>, mut send: SendStream, recv: RecvStream, e: Enroll) {
    match issue(core, &e).await {
        Ok(msg) => {
            let site = msg.site.clone();
            if write_frame(&mut send, &Message::Enrolled(msg))
                .await
                .is_ok()
            {
                let _ = send.finish();
                tracing::info!(%site, node = %e.node, "node enrolled");
            }
        }
        Err((code, message)) => reject(core, None, send, recv, code, message).await,
    }
}

async fn issue(core: &Arc<Core>, e: &Enroll) -> Result<Enrolled, (ErrorCode, String)> {
    let bad = |m: &str| (ErrorCode::BadToken, m.to_owned());
    let token: JoinToken =
        e.token
            .parse()
            .map_err(|err: sitecast_runtime::tls::JoinTokenError| {
                (ErrorCode::BadToken, err.to_string())
            })?;
    if token.ca_sha256 != core.ca.fingerprint() {
        return Err(bad("join token was issued by a different origin CA"));
    }
    db::sites::check_name("node", &e.node)
        .map_err(|err| (ErrorCode::BadRequest, err.to_string()))?;
    let hash = hash_secret(&token.secret);
    let internal = |err: Error| {
        tracing::error!(error = %err, "enrollment failed");
        (
            ErrorCode::Internal,
            "origin failed to record the enrollment; retry later".to_owned(),
        )
    };
    let h = hash.clone();
    let (site, expires) = core
        .db
        .call(move |c| db::sites::site_for_token(c, &h))
        .await
        .map_err(internal)?
        .ok_or_else(|| bad("join token unknown or already used: create a new one with `sitecast ctl site join-token SITE`"))?;
    if let Some(e) = expires.filter(|e| crate::util::now() >= *e) {
        return Err(bad(&format!(
            "join token of site {site} expired at {}: create a new one with `sitecast ctl site join-token {site}`",
            crate::util::rfc3339(e)
        )));
    }
    let (cert_pem, fp) = core
        .ca
        .sign_csr(&e.csr_pem, &site, &e.node)
        .map_err(|err| (ErrorCode::BadRequest, err.to_string()))?;
    let node = e.node.clone();
    let enrolled = core
        .db
        .call(move |c| db::sites::enroll(c, &hash, &node, &fp))
        .await
        .map_err(internal)?
        .ok_or_else(|| bad("join token was used concurrently"))?;
    Ok(Enrolled {
        site: enrolled,
        cert_pem,
        ca_pem: core.ca.pem.clone(),
    })
}
