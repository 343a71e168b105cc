//! Who may call the REST API, and the record of what they changed.
//!
//! [`auth`] checks the bearer token (stored as its SHA-256), refuses an expired one, then
//! decides by the token's role and the request's method and resource (the first path segment
//! under `/api/v1`):
//!
//! | role       | reads (GET, HEAD)                  | changes (POST, PUT, PATCH, DELETE)      |
//! |------------|------------------------------------|-----------------------------------------|
//! | `admin`    | everything                         | everything                              |
//! | `operator` | everything but tokens and audit    | artifacts, channels, images, sites, pushes |
//! | `viewer`   | everything but tokens and audit    | nothing                                 |
//!
//! [`audit`] wraps it and writes one row per mutating call, refused ones included, after the
//! answer is known (who from the token [`auth`] found, what as method and path with query,
//! from where as the peer address and User-Agent; never the body).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::db::{self, tokens::Caller, tokens::Role};
use crate::util::{hash_secret, now, rfc3339};

/// Resources only `admin` may touch at all.
const ADMIN_ONLY: &[&str] = &["tokens", "audit"];
/// Resources `operator` may change.
const OPERATOR_WRITES: &[&str] = &["artifacts", "channels", "images", "sites", "pushes"];

fn is_read(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD)
}

/// Whether `role` may make a `method` request on `resource`; the refusal's reason if not.
pub(crate) fn allowed(role: Role, method: &Method, resource: &str) -> Result<(), String> {
    if role == Role::Admin {
        return Ok(());
    }
    if ADMIN_ONLY.contains(&resource) {
        return Err(format!("only admin tokens may use /{resource}"));
    }
    if is_read(method) {
        return Ok(());
    }
    match role {
        Role::Operator if OPERATOR_WRITES.contains(&resource) => Ok(()),
        Role::Operator => Err(format!(
            "operator tokens may change artifacts, channels, images, sites and pushes, not /{resource}"
        )),
        _ => Err("viewer tokens may only read (GET)".into()),
    }
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The bearer-token and role check of every `/api/v1` route. The caller found is attached to
/// the response for [`audit`].
pub(crate) async fn auth(State(core): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        return ApiError::unauthorized("missing bearer token (Authorization: Bearer <token>)")
            .into_response();
    };
    let hash = hash_secret(token);
    let caller = match core.db.call(move |c| db::tokens::by_hash(c, &hash)).await {
        Ok(Some(c)) => c,
        Ok(None) => return ApiError::unauthorized("invalid bearer token").into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    tracing::Span::current().record("token", caller.name.as_str());
    let mut resp = if caller.expired(now()) {
        ApiError::unauthorized(format!(
            "token {:?} expired at {}; an admin can make a new one (ctl token create)",
            caller.name,
            rfc3339(caller.expires.unwrap_or_default())
        ))
        .into_response()
    } else {
        let resource = req
            .uri()
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        match allowed(caller.role, req.method(), &resource) {
            Ok(()) => next.run(req).await,
            Err(why) => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} has role {}: {why}",
                    caller.name,
                    caller.role.as_str()
                ),
            )
            .into_response(),
        }
    };
    resp.extensions_mut().insert(caller);
    resp
}

/// Record every mutating call of the routes it wraps (see the module docs).
pub(crate) async fn audit(State(core): State<AppState>, req: Request, next: Next) -> Response {
    if is_read(req.method()) || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let at = now();
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().clone(), |u| u.0.clone());
    let path = path
        .path_and_query()
        .map_or_else(|| path.path().to_owned(), ToString::to_string);
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect());
    let resp = next.run(req).await;
    let caller = resp.extensions().get::<Caller>();
    let entry = db::audit::NewEntry {
        at,
        token: caller.map(|c| c.name.clone()),
        role: caller.map(|c| c.role.as_str()),
        method,
        path,
        status: resp.status().as_u16(),
        remote,
        user_agent,
    };
    if let Err(e) = core.db.call(move |c| db::audit::insert(c, &entry)).await {
        tracing::error!(error = %e, "writing the audit log failed");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_the_table_says() {
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        for r in ["artifacts", "sites", "tokens", "audit", "users"] {
            assert!(allowed(Role::Admin, &delete, r).is_ok());
        }
        for r in ["artifacts", "channels", "images", "sites", "pushes"] {
            assert!(allowed(Role::Operator, &post, r).is_ok(), "{r}");
            assert!(allowed(Role::Viewer, &post, r).is_err(), "{r}");
            assert!(allowed(Role::Viewer, &get, r).is_ok(), "{r}");
        }
        for r in ["users", "grants", "registry-grants"] {
            assert!(allowed(Role::Operator, &get, r).is_ok(), "{r}");
            assert!(allowed(Role::Operator, &post, r).is_err(), "{r}");
        }
        for r in ADMIN_ONLY {
            assert!(allowed(Role::Operator, &get, r).is_err(), "{r}");
            assert!(allowed(Role::Viewer, &get, r).is_err(), "{r}");
        }
    }
}
