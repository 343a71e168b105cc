//! `/token`: the Docker token GET and the OAuth2 POST (see [`super::auth`]).

use std::net::IpAddr;

use axum::body::Body;
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::{self, login};
use super::error::{Code, OciError, OciResult};
use super::{map_name, query, query_all};
use crate::core::Core;

/// Largest form body accepted.
const MAX_FORM: usize = 16 * 1024;

/// The repositories of `scope` strings (`repository:<name>:pull[,push]`) asking to pull. The
/// names are kept as the client wrote them (containerd names `library/nginx` without the
/// registry its `ns` adds later), so grants are decided per request, on the mapped repository.
fn granted(core: &Core, scopes: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split(' ')) {
        let mut parts = scope.splitn(3, ':');
        let (Some("repository"), Some(name), Some(actions)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !actions.split(',').any(|a| a == "pull" || a == "*") {
            continue;
        }
        if map_name(core, name, None).is_err() {
            continue;
        }
        out.push(name.to_owned());
    }
    out.sort();
    out.dedup();
    out
}

fn answer(core: &Core, user: Option<&str>, scopes: &[String]) -> Response {
    let repos = granted(core, scopes);
    tracing::debug!(user = ?user, repos = ?repos, "token issued");
    let (token, ttl) = auth::issue(core, user, repos);
    Json(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
    }))
    .into_response()
}

/// `GET /token?service=…&scope=…`, with optional Basic credentials.
pub(crate) async fn get(
    core: &Core,
    client: IpAddr,
    headers: &HeaderMap,
    q: Option<&str>,
) -> OciResult<Response> {
    let user = match headers.get(AUTHORIZATION) {
        None => None,
        Some(_) => match auth::caller(core, client, headers).await? {
            c if c.repos.is_some() => {
                return Err(OciError::new(
                    Code::Unauthorized,
                    "log in with a user name and password, not a token",
                ))
            }
            c => c.user,
        },
    };
    Ok(answer(core, user.as_deref(), &query_all(q, "scope")))
}

/// `POST /token` (OAuth2 form: `grant_type=password` with `username`/`password`, or
/// `refresh_token` with a token this edge issued).
pub(crate) async fn post(
    core: &Core,
    client: IpAddr,
    _headers: &HeaderMap,
    body: Body,
) -> OciResult<Response> {
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        OciError::new(Code::Unsupported, "token request body too large or cut")
            .with_status(axum::http::StatusCode::BAD_REQUEST)
    })?;
    let form = String::from_utf8_lossy(&bytes).into_owned();
    let f = Some(form.as_str());
    let scopes = query_all(f, "scope");
    let user = match query(f, "grant_type").as_deref() {
        Some("password") => {
            let (Some(u), Some(p)) = (query(f, "username"), query(f, "password")) else {
                return Err(OciError::new(
                    Code::Unauthorized,
                    "username and password required",
                ));
            };
            Some(login(core, client, &u, &p).await?)
        }
        Some("refresh_token") => {
            let t = query(f, "refresh_token").unwrap_or_default();
            auth::verify(core, &t)
                .ok_or_else(|| {
                    OciError::new(Code::Unauthorized, "invalid or expired refresh token")
                })?
                .user
        }
        other => {
            return Err(OciError::new(
                Code::Unsupported,
                format!("unsupported grant_type {other:?}"),
            )
            .with_status(axum::http::StatusCode::BAD_REQUEST))
        }
    };
    Ok(answer(core, user.as_deref(), &scopes))
}
