//! `/api/v1/users`, `/api/v1/grants`.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sitecast_protocol::CatalogPath;
use utoipa::{IntoParams, ToSchema};

use super::validate::{check_labels, unique_labels_opt};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, AppState, ErrorBody};
use crate::db::{self, access::NewGrant, GrantInfo, Labels, UserInfo};
use crate::error::Error;

/// Names FTP and SFTP treat as anonymous logins (any case); no site user may have them.
const RESERVED_USERS: [&str; 2] = ["anonymous", "ftp"];

/// The body of `POST /users`: a password, SSH keys, or both.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "tech", "password": "s3cret",
    "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl tech@laptop"]}))]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    /// Login name: 1–63 of letters, digits, `-`, `_`, `.`; `anonymous` and `ftp` (any case)
    /// are reserved.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    name: String,
    /// Stored as an argon2id hash; never shown.
    #[serde(default)]
    password: Option<String>,
    /// OpenSSH public keys (`ssh-ed25519 AAAA… comment`; ed25519, rsa, ecdsa-nistp*).
    #[serde(default)]
    ssh_keys: Vec<String>,
}

/// The answer of `GET /users`.
#[derive(Serialize, ToSchema)]
pub(super) struct UserList {
    /// By name.
    users: Vec<UserInfo>,
}

/// The answer of `GET /grants`.
#[derive(Serialize, ToSchema)]
pub(super) struct GrantList {
    /// By id.
    grants: Vec<GrantInfo>,
}

/// Hash a password with argon2id (default parameters), off the async threads.
async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::bad_request(format!("cannot hash password: {e}")))
    })
    .await
    .map_err(|e| ApiError::from(Error::from(e)))?
}

impl NewUser {
    /// Every check `create_user` makes before the database; the keys, normalised.
    fn validate(&self) -> ApiResult<Vec<String>> {
        db::sites::check_name("user", &self.name)?;
        if RESERVED_USERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&self.name))
        {
            return Err(ApiError::bad_request(format!(
                "the user name {:?} is reserved: FTP and SFTP log it in as anonymous (grant \
                 anonymous access with {{\"anonymous\": true}} instead)",
                self.name
            )));
        }
        if self.password.is_none() && self.ssh_keys.is_empty() {
            return Err(ApiError::bad_request(
                "a user needs a password or at least one ssh key",
            ));
        }
        if self.password.as_deref().is_some_and(str::is_empty) {
            return Err(ApiError::bad_request("password must not be empty"));
        }
        self.ssh_keys.iter().map(|k| parse_ssh_key(k)).collect()
    }
}

/// `POST /api/v1/users`.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    operation_id = "create_user",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = UserInfo),
        (status = 409, description = "`conflict`: a user of this name exists", body = ErrorBody),
    )
)]
pub(super) async fn create_user(
    State(core): State<AppState>,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<Response> {
    let ssh_keys = req.validate()?;
    let hash = match req.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let (name, keys) = (req.name, ssh_keys);
    let user = core
        .db
        .call(move |c| db::access::create_user(c, &name, hash.as_deref(), &keys))
        .await?;
    core.sites_changed();
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// `GET /api/v1/users`.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    operation_id = "list_users",
    responses((status = 200, description = "Every user", body = UserList))
)]
pub(super) async fn list_users(State(core): State<AppState>) -> ApiResult<Response> {
    let users = core.db.call(|c| db::access::list_users(c)).await?;
    Ok(Json(UserList { users }).into_response())
}

/// `DELETE /api/v1/users/{name}`: the user's grants go too.
#[utoipa::path(
    delete,
    path = "/users/{name}",
    tag = "users",
    operation_id = "delete_user",
    params(("name" = String, Path, description = "User name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
    )
)]
pub(super) async fn delete_user(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let n = name.clone();
    if !core
        .db
        .call(move |c| db::access::delete_user(c, &n))
        .await?
    {
        return Err(ApiError::not_found(format!("user {name:?} not found")));
    }
    core.sites_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The body of `PATCH /users/{name}`: the fields given are replaced; grants stay.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"password": "n3w"}))]
#[serde(deny_unknown_fields)]
pub(super) struct UserPatch {
    /// A new password; `null` removes it (the user then needs an SSH key).
    #[serde(default, deserialize_with = "super::validate::double_option")]
    #[schema(value_type = Option<String>)]
    password: Option<Option<String>>,
    /// The whole new list of SSH keys.
    #[serde(default)]
    ssh_keys: Option<Vec<String>>,
}

impl UserPatch {
    /// Every check `patch_user` makes before the database: the keys, normalised.
    fn validate(&self) -> ApiResult<Option<Vec<String>>> {
        if self.password.is_none() && self.ssh_keys.is_none() {
            return Err(ApiError::bad_request(
                "nothing to change: give password and/or ssh_keys",
            ));
        }
        if matches!(&self.password, Some(Some(p)) if p.is_empty()) {
            return Err(ApiError::bad_request(
                "password must not be empty (null removes it)",
            ));
        }
        self.ssh_keys
            .as_ref()
            .map(|keys| keys.iter().map(|k| parse_ssh_key(k)).collect())
            .transpose()
    }
}

/// `PATCH /api/v1/users/{name}`: a change that leaves neither password nor key is a 400.
#[utoipa::path(
    patch,
    path = "/users/{name}",
    tag = "users",
    operation_id = "patch_user",
    params(("name" = String, Path, description = "User name")),
    request_body(content = UserPatch, description = "At least one field; `{}` is a 400"),
    responses(
        (status = 200, description = "The user as changed", body = UserInfo),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
    )
)]
pub(super) async fn patch_user(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UserPatch>,
) -> ApiResult<Response> {
    let keys = req.validate()?;
    let password = match req.password {
        Some(Some(p)) => Some(Some(hash_password(p).await?)),
        Some(None) => Some(None),
        None => None,
    };
    let n = name.clone();
    let user = core
        .db
        .call(move |c| {
            db::access::update_user(
                c,
                &n,
                password.as_ref().map(Option::as_deref),
                keys.as_deref(),
            )
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {name:?} not found")))?;
    core.sites_changed();
    Ok(Json(user).into_response())
}

/// Key types an SSH server of ours can verify.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

/// Parse an OpenSSH public key line (`type base64 [comment]`): the type must be known and the
/// base64 blob must decode and name the same type. Returns the normalised line.
pub(crate) fn parse_ssh_key(line: &str) -> ApiResult<String> {
    use base64::Engine as _;
    let bad = |why: &str| {
        ApiError::bad_request(format!(
            "not an OpenSSH public key ({why}): {:?}",
            line.chars().take(60).collect::<String>()
        ))
    };
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(bad("expected '<type> <base64> [comment]'"));
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(bad("unsupported key type"));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad("key data is not base64"))?;
    let named = blob
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(bad("key data does not match its type"));
    }
    let comment: Vec<&str> = parts.collect();
    Ok(if comment.is_empty() {
        format!("{kind} {b64}")
    } else {
        format!("{kind} {b64} {}", comment.join(" "))
    })
}

/// The body of `POST /users/{name}/keys`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl tech@laptop"}))]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    /// An OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    key: String,
}

/// `POST /api/v1/users/{name}/keys`: add an SSH public key (adding one twice is a no-op).
#[utoipa::path(
    post,
    path = "/users/{name}/keys",
    tag = "users",
    operation_id = "add_ssh_key",
    params(("name" = String, Path, description = "User name")),
    request_body = NewKey,
    responses(
        (status = 201, description = "The user with the key", body = UserInfo),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
    )
)]
pub(super) async fn add_key(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<NewKey>,
) -> ApiResult<Response> {
    let key = parse_ssh_key(req.key.trim())?;
    let n = name.clone();
    let user = core
        .db
        .call(move |c| {
            let Some(mut u) = db::access::user(c, &n)? else {
                return Ok(None);
            };
            let data = |k: &str| k.split_whitespace().nth(1).map(str::to_owned);
            if !u.ssh_keys.iter().any(|k| data(k) == data(&key)) {
                u.ssh_keys.push(key);
                db::access::set_ssh_keys(c, &n, &u.ssh_keys)?;
            }
            db::access::user(c, &n)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {name:?} not found")))?;
    core.sites_changed();
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// `DELETE /api/v1/users/{name}/keys/{index}`: remove the key at `index` (0-based, as listed).
#[utoipa::path(
    delete,
    path = "/users/{name}/keys/{index}",
    tag = "users",
    operation_id = "delete_ssh_key",
    params(
        ("name" = String, Path, description = "User name"),
        ("index" = u64, Path, description = "The key's position in `ssh_keys`, from 0"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`not_found`: no such user, or no key at this index", body = ErrorBody),
    )
)]
pub(super) async fn delete_key(
    State(core): State<AppState>,
    ApiPath((name, index)): ApiPath<(String, usize)>,
) -> ApiResult<Response> {
    let n = name.clone();
    let found = core
        .db
        .call(move |c| {
            let Some(mut u) = db::access::user(c, &n)? else {
                return Ok(false);
            };
            if index >= u.ssh_keys.len() {
                return Ok(false);
            }
            u.ssh_keys.remove(index);
            db::access::set_ssh_keys(c, &n, &u.ssh_keys)
        })
        .await?;
    if !found {
        return Err(ApiError::not_found(format!(
            "user {name:?} has no key number {index}"
        )));
    }
    core.sites_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod key_tests {
    use super::parse_ssh_key;

    #[test]
    fn ssh_keys_are_parsed_not_just_prefix_checked() {
        // A real ed25519 public key (type string inside the blob matches).
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host";
        assert_eq!(parse_ssh_key(good).unwrap(), good);
        assert!(parse_ssh_key("ssh-ed25519").is_err());
        assert!(parse_ssh_key("ssh-dss AAAAB3NzaC1kc3M=").is_err());
        assert!(parse_ssh_key("ssh-ed25519 !!!notbase64").is_err());
        // ssh-rsa claimed, blob says ssh-ed25519
        assert!(parse_ssh_key(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        )
        .is_err());
    }
}

fn yes() -> bool {
    true
}

/// The body of `POST /grants`: access for a user, or for anyone (`anonymous`), to a path
/// prefix at one site, at the sites with some labels, or everywhere.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"user": "tech", "path": "/firmware", "labels": {"province": "gansu"}}))]
#[serde(deny_unknown_fields)]
pub(super) struct GrantReq {
    /// The user granted to; exactly one of `user` and `anonymous: true`.
    #[serde(default)]
    user: Option<String>,
    /// Grant to everyone at the selected sites, without credentials.
    #[serde(default)]
    anonymous: bool,
    /// The path prefix granted (starts with `/`).
    #[schema(pattern = "^/")]
    path: String,
    /// Only at this site (not with `labels`).
    #[serde(default)]
    site: Option<String>,
    /// Only at sites with every one of these labels (not with `site`).
    #[serde(default, deserialize_with = "unique_labels_opt")]
    #[schema(value_type = Option<crate::db::LabelSet>)]
    labels: Option<Labels>,
    /// May read files (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    read: bool,
    /// May list directories (default true); `read` or `list` must be true.
    #[serde(default = "yes")]
    #[schema(default = true)]
    list: bool,
}

impl GrantReq {
    /// Every check `create_grant` makes before the database.
    fn into_grant(self) -> ApiResult<NewGrant> {
        let prefix =
            CatalogPath::parse_prefix(&self.path).map_err(|e| Error::bad_path(&self.path, e))?;
        match (&self.user, self.anonymous) {
            (None, false) => {
                return Err(ApiError::bad_request(
                    "a grant names a user, or says \"anonymous\": true to grant to everyone",
                ))
            }
            (Some(_), true) => {
                return Err(ApiError::bad_request(
                    "a grant names a user or is anonymous, not both",
                ))
            }
            _ => {}
        }
        let labels = self.labels.filter(|l| !l.is_empty());
        if let Some(l) = &labels {
            check_labels(l)?;
        }
        if self.site.is_some() && labels.is_some() {
            return Err(ApiError::bad_request(
                "a grant selects sites by name or by labels, not both",
            ));
        }
        if !self.read && !self.list {
            return Err(ApiError::bad_request("a grant must allow read or list"));
        }
        Ok(NewGrant {
            user: self.user,
            prefix,
            site: self.site,
            labels,
            read: self.read,
            list: self.list,
        })
    }
}

/// `POST /api/v1/grants`.
#[utoipa::path(
    post,
    path = "/grants",
    tag = "grants",
    operation_id = "create_grant",
    request_body = GrantReq,
    responses(
        (status = 201, description = "Created", body = GrantInfo),
        (status = 404, description = "`not_found`: no such user or site", body = ErrorBody),
    )
)]
pub(super) async fn create_grant(
    State(core): State<AppState>,
    ApiJson(req): ApiJson<GrantReq>,
) -> ApiResult<Response> {
    let g = req.into_grant()?;
    let grant = core
        .db
        .call(move |c| db::access::create_grant(c, &g))
        .await?;
    core.sites_changed();
    Ok((StatusCode::CREATED, Json(grant)).into_response())
}

/// `?user=&site=&path=` of `GET /grants`; each filter optional.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantFilter {
    /// Grants to this user (`anonymous` for the anonymous ones).
    user: Option<String>,
    /// Grants that apply at this site (by name, by its labels, or to all sites).
    site: Option<String>,
    /// Grants whose prefix covers this path.
    path: Option<String>,
}

/// `GET /api/v1/grants`.
#[utoipa::path(
    get,
    path = "/grants",
    tag = "grants",
    operation_id = "list_grants",
    params(GrantFilter),
    responses(
        (status = 200, description = "The grants that pass every filter", body = GrantList),
        (status = 404, description = "`not_found`: no such site", body = ErrorBody),
    )
)]
pub(super) async fn list_grants(
    State(core): State<AppState>,
    ApiQuery(f): ApiQuery<GrantFilter>,
) -> ApiResult<Response> {
    let path = f
        .path
        .as_deref()
        .map(|p| CatalogPath::parse(p).map_err(|e| Error::bad_path(p, e)))
        .transpose()?;
    let grants = core
        .db
        .call(move |c| {
            db::access::filter_grants(c, f.user.as_deref(), f.site.as_deref(), path.as_ref())
        })
        .await?;
    Ok(Json(GrantList { grants }).into_response())
}

/// `DELETE /api/v1/grants/{id}`.
#[utoipa::path(
    delete,
    path = "/grants/{id}",
    tag = "grants",
    operation_id = "delete_grant",
    params(("id" = i64, Path, description = "Grant id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no such grant", body = ErrorBody),
    )
)]
pub(super) async fn delete_grant(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid grant id {id:?}")))?;
    if !core
        .db
        .call(move |c| db::access::delete_grant(c, id))
        .await?
    {
        return Err(ApiError::not_found(format!("grant {id} not found")));
    }
    core.sites_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The checks of `POST /users`, `POST /users/{name}/keys`, `POST /grants` and `POST /tokens`
/// on a raw body, without the database (for [`super::check_body`]).
pub(super) fn check_user(bytes: &[u8]) -> ApiResult<()> {
    super::parse_json::<NewUser>(bytes)?.validate().map(drop)
}

/// See [`check_user`].
pub(super) fn check_user_patch(bytes: &[u8]) -> ApiResult<()> {
    super::parse_json::<UserPatch>(bytes)?.validate().map(drop)
}

/// See [`check_user`].
pub(super) fn check_key(bytes: &[u8]) -> ApiResult<()> {
    parse_ssh_key(super::parse_json::<NewKey>(bytes)?.key.trim()).map(drop)
}

/// See [`check_user`].
pub(super) fn check_grant(bytes: &[u8]) -> ApiResult<()> {
    super::parse_json::<GrantReq>(bytes)?.into_grant().map(drop)
}
