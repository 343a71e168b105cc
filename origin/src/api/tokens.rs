//! `/api/v1/tokens` (admin only): make, list and revoke API tokens; `/api/v1/audit`: page
//! through the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::validate::ttl;
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, AppState, ErrorBody};
use crate::db;
use crate::db::audit::AuditEntry;
use crate::db::tokens::{Role, TokenInfo};
use crate::util::{hash_secret, now, random_secret, rfc3339};

/// The longest a token may be made for (one without `ttl` never expires).
const MAX_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

/// The body of `POST /tokens`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "dashboard", "role": "viewer", "ttl": "365days"}))]
#[serde(deny_unknown_fields)]
pub(super) struct TokenReq {
    /// Unique name: 1–63 of letters, digits, `-`, `_`, `.`; `admin` is reserved.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    name: String,
    /// `admin` (the default), `operator` or `viewer`.
    #[serde(default)]
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
    /// Lifetime (`"90days"`, at most 10 years); none = never expires.
    #[serde(default)]
    ttl: Option<String>,
}

/// The answer of `POST /tokens`: the only time the secret is shown.
#[derive(Serialize, ToSchema)]
pub(super) struct NewToken {
    /// Its name.
    name: String,
    /// Its role.
    role: Role,
    /// The secret, for `Authorization: Bearer <token>`.
    token: String,
    /// Creation time, RFC 3339.
    created: String,
    /// When it stops working, RFC 3339; null = never.
    expires: Option<String>,
}

/// The answer of `GET /tokens`.
#[derive(Serialize, ToSchema)]
pub(super) struct TokenList {
    /// By name; never a secret.
    tokens: Vec<TokenInfo>,
}

/// The answer of `GET /audit`: one page, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct AuditPage {
    /// Mutating calls, newest first.
    entries: Vec<AuditEntry>,
    /// The `before` of the following page (an entry id); null on the last page.
    next: Option<String>,
    /// The origin's clock, RFC 3339.
    now: String,
}

impl TokenReq {
    /// Every check `create` makes before the database: the role and the expiry (unix s).
    fn validate(&self) -> ApiResult<(Role, Option<i64>)> {
        db::sites::check_name("token", &self.name)?;
        if self.name == "admin" {
            return Err(ApiError::bad_request(
                "the name \"admin\" is reserved for the admin token file",
            ));
        }
        let role = self.role.as_deref().map_or(Ok(Role::Admin), Role::parse)?;
        let expires = self
            .ttl
            .as_deref()
            .map(|v| ttl("ttl", v, MAX_TOKEN_TTL))
            .transpose()?
            .map(|d| now().saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
        Ok((role, expires))
    }
}

/// `POST /api/v1/tokens`: the secret is in this answer only.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    operation_id = "create_token",
    request_body = TokenReq,
    responses(
        (status = 201, description = "Created", body = NewToken),
        (status = 409, description = "`conflict`: a token of this name exists", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(core): State<AppState>,
    ApiJson(req): ApiJson<TokenReq>,
) -> ApiResult<Response> {
    let (role, expires) = req.validate()?;
    let token = random_secret();
    let hash = hash_secret(&token);
    let name = req.name.clone();
    let info = core
        .db
        .call(move |c| db::tokens::add(c, &name, &hash, role, expires))
        .await?;
    tracing::info!(name = %info.name, role = role.as_str(), expires = ?info.expires, "api token created");
    let created = NewToken {
        name: info.name,
        role: info.role,
        token,
        created: info.created,
        expires: info.expires,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /api/v1/tokens`: names, roles, expiry and last use; never secrets.
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    operation_id = "list_tokens",
    responses((status = 200, description = "Every token", body = TokenList))
)]
pub(super) async fn list(State(core): State<AppState>) -> ApiResult<Response> {
    let tokens = core.db.call(|c| db::tokens::list(c)).await?;
    Ok(Json(TokenList { tokens }).into_response())
}

/// `DELETE /api/v1/tokens/{name}`: the token stops working with the next request.
#[utoipa::path(
    delete,
    path = "/tokens/{name}",
    tag = "tokens",
    operation_id = "delete_token",
    params(("name" = String, Path, description = "Token name (`admin` is refused: replace its file and restart)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`not_found`: no such token", body = ErrorBody),
    )
)]
pub(super) async fn delete(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    if name == "admin" {
        return Err(ApiError::bad_request(
            "the admin token comes from the admin token file and is set again at every start; \
             to rotate it, write a new secret into that file and restart the origin",
        ));
    }
    let n = name.clone();
    if !core.db.call(move |c| db::tokens::delete(c, &n)).await? {
        return Err(ApiError::not_found(format!("token {name:?} not found")));
    }
    tracing::info!(name = %name, "api token revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?before=&limit=&token=` of `GET /api/v1/audit`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// The `next` cursor of the previous page.
    before: Option<i64>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only this token's calls.
    token: Option<String>,
}

/// `GET /api/v1/audit`: mutating calls, newest first, `limit` per page; `next` is the cursor
/// of the following page (null at the end).
#[utoipa::path(
    get,
    path = "/audit",
    tag = "tokens",
    operation_id = "audit_log",
    params(AuditQuery),
    responses((status = 200, description = "One page of the audit log", body = AuditPage))
)]
pub(super) async fn audit(
    State(core): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: from 1 to 1000"
        )));
    }
    let (before, token) = (q.before, q.token);
    let entries = core
        .db
        .call(move |c| db::audit::page(c, before, limit, token.as_deref()))
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next,
        now: rfc3339(now()),
    })
    .into_response())
}

/// The checks of `POST /tokens` on a raw body (for [`super::check_body`]).
pub(super) fn check_token(bytes: &[u8]) -> ApiResult<()> {
    super::parse_json::<TokenReq>(bytes)?.validate().map(drop)
}
