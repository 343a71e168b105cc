//! Who a mirror request is from, and whether they may pull a repository.
//!
//! - Access is the one decision every protocol uses ([`crate::access::decide`]), asked for the
//!   catalog path `/oci/<repository>`: a read grant on `/oci/docker.io/library` lets its
//!   principal pull every `docker.io/library/*` image, one on `/` everything. Anonymous pulls
//!   work where the anonymous principal is granted.
//! - Credentials: `Basic` (the site's users and passwords, through the shared authenticator:
//!   the per-address failure limit answers 429 before any password is hashed), or `Bearer`
//!   with a token from this edge's `/token` endpoint.
//! - `/token` answers the Docker token GET (Basic credentials optional) and the OAuth2 POST
//!   containerd sends first (`grant_type=password` or `refresh_token`). Tokens are
//!   `sct1.<payload>.<mac>`: base64url JSON `{sub, repos, exp}` and a keyed BLAKE3 MAC with a
//!   key born with the process, so they are verified offline and die with a restart (clients
//!   simply ask again). They carry the repository names of the requested pull scopes, as the
//!   client wrote them; grants are decided per request. They last `oci.token_ttl` (5 min).
//! - A refused request: 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` (the
//!   only challenge) for anonymous clients, 403 `DENIED` for a user without the grant.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::header::{AUTHORIZATION, HOST, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::HeaderMap;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sitecast_protocol::CatalogPath;

use super::error::{Code, OciError, OciResult};
use crate::access::{decide, Action, AuthOutcome, Decision};
use crate::core::Core;

/// The `service` the edge names in its challenges and tokens.
pub(crate) const SERVICE: &str = "sitecast-edge";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// `None`: anonymous.
    pub user: Option<String>,
    /// A bearer token limits the caller to these repositories.
    pub repos: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: Option<String>,
    repos: Vec<String>,
    exp: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(key: &[u8; 32], payload: &str) -> String {
    B64.encode(blake3::keyed_hash(key, payload.as_bytes()).as_bytes())
}

/// Issue a token for `user` limited to `repos`.
pub(crate) fn issue(core: &Core, user: Option<&str>, repos: Vec<String>) -> (String, u64) {
    let ttl = core.cfg.oci.token_ttl.as_secs().max(1);
    let claims = Claims {
        sub: user.map(str::to_owned),
        repos,
        exp: now() + ttl,
    };
    let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let token = format!("sct1.{payload}.{}", mac(&core.token_key, &payload));
    (token, ttl)
}

/// Check a token this edge issued (MAC and expiry).
pub(crate) fn verify(core: &Core, token: &str) -> Option<Caller> {
    let rest = token.strip_prefix("sct1.")?;
    let (payload, sig) = rest.split_once('.')?;
    let expected = mac(&core.token_key, payload);
    // Constant-time comparison of the MACs.
    if expected.len() != sig.len()
        || expected
            .bytes()
            .zip(sig.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
    {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    (claims.exp > now()).then_some(Caller {
        user: claims.sub,
        repos: Some(claims.repos),
    })
}

/// Check a user's password (the failure limit first: 429 before any hashing).
pub(crate) async fn login(
    core: &Core,
    client: IpAddr,
    user: &str,
    password: &str,
) -> OciResult<String> {
    match core.auth.authenticate(client, user, password).await {
        AuthOutcome::User(u) => Ok(u),
        AuthOutcome::Invalid => Err(OciError::new(
            Code::Unauthorized,
            "invalid user name or password",
        )),
        AuthOutcome::TooMany(wait) => Err(OciError::new(
            Code::TooManyRequests,
            "too many failed logins; try again later",
        )
        .with_header(RETRY_AFTER, wait.as_secs().max(1).to_string())),
    }
}

/// The caller of a request from its `Authorization` header.
pub(crate) async fn caller(core: &Core, client: IpAddr, headers: &HeaderMap) -> OciResult<Caller> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(Caller {
            user: None,
            repos: None,
        });
    };
    let value = value
        .to_str()
        .map_err(|_| OciError::new(Code::Unauthorized, "malformed Authorization header"))?;
    if let Some(token) = value
        .split_once(' ')
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    {
        return verify(core, token)
            .ok_or_else(|| OciError::new(Code::Unauthorized, "invalid or expired token"));
    }
    let (user, password) = crate::http::basic_credentials(headers)
        .and_then(Result::ok)
        .ok_or_else(|| {
            OciError::new(
                Code::Unauthorized,
                "malformed Authorization header (expected Basic or Bearer)",
            )
        })?;
    let user = login(core, client, &user, &password).await?;
    Ok(Caller {
        user: Some(user),
        repos: None,
    })
}

/// The catalog path access to `repo` is decided on.
pub(crate) fn access_path(repo: &str) -> Option<CatalogPath> {
    CatalogPath::parse(&format!("/oci/{repo}")).ok()
}

/// Whether `user` may pull `repo` by its grants.
pub(crate) fn may_pull(core: &Core, user: Option<&str>, repo: &str) -> bool {
    access_path(repo)
        .is_some_and(|p| decide(&core.site_config(), user, &p, Action::Read) == Decision::Allow)
}

/// The `realm` of this edge's token endpoint, as the client reached it.
fn realm(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/token")
}

/// The 401 that starts the token flow. One challenge only: clients that join repeated headers
/// into one (oras-py through `requests`) misread a second one; Basic credentials are still
/// accepted when sent unasked.
pub(crate) fn challenge(headers: &HeaderMap, repo: Option<&str>, message: &str) -> OciError {
    let mut bearer = format!("Bearer realm=\"{}\",service=\"{SERVICE}\"", realm(headers));
    if let Some(r) = repo {
        bearer.push_str(&format!(",scope=\"repository:{r}:pull\""));
    }
    OciError::new(Code::Unauthorized, message).with_header(WWW_AUTHENTICATE, bearer)
}

/// Refuse unless `caller` may pull `repo` (`wire_repo`: the name as the client sent it, which
/// is what containerd names in its token scopes: `library/nginx` without the `ns` registry).
pub(crate) fn check(
    core: &Core,
    headers: &HeaderMap,
    caller: &Caller,
    repo: &str,
    wire_repo: &str,
) -> OciResult<()> {
    let in_token = caller
        .repos
        .as_ref()
        .is_none_or(|rs| rs.iter().any(|r| r == repo || r == wire_repo));
    if in_token && may_pull(core, caller.user.as_deref(), repo) {
        return Ok(());
    }
    match &caller.user {
        None if caller.repos.is_none() => Err(challenge(
            headers,
            Some(wire_repo),
            "authentication required",
        )),
        None if !in_token => Err(challenge(
            headers,
            Some(wire_repo),
            "the token does not cover this repository",
        )),
        None => Err(challenge(
            headers,
            Some(wire_repo),
            "anonymous pulls are not granted here",
        )),
        Some(_) if !in_token => Err(challenge(
            headers,
            Some(wire_repo),
            "the token does not cover this repository",
        )),
        Some(u) => Err(OciError::new(
            Code::Denied,
            format!("user {u} may not pull {repo}"),
        )),
    }
}
