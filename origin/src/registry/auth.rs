//! Who may use the origin's registry, and for what.
//!
//! - **API tokens** (the admin token, `POST /api/v1/tokens`) of role `admin` or `operator`
//!   may do everything, `viewer` tokens pull only: as `Authorization: Bearer <token>` or as
//!   the password of Basic (any user name). An expired token is refused.
//! - **Users** with registry grants (`POST /api/v1/registry-grants`): pull on every repository
//!   their patterns match, and with `push` also push and delete. They log in with Basic
//!   (user name and password), or with the bearer-token flow: a `401` carries
//!   `WWW-Authenticate: Bearer realm="http://<host>/token",service="sitecast-origin",scope=…` (the only challenge), and
//!   `/token` (GET with Basic, or the OAuth2 POST) issues a short-lived token (`sct1.` payload and
//!   keyed BLAKE3 MAC, key born with the process) naming the user and the granted scopes.
//!   Grants are read again on every request, so a deleted grant stops working at once.
//! - A user's password is checked with argon2 at most once per `PASSWORD_TTL` (a keyed hash of
//!   name and password is remembered); failed logins from one address beyond
//!   `MAX_FAILURES` a minute answer `429 TOOMANYREQUESTS` before any hashing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, Method};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Code, OciError, RegResult};
use crate::core::Core;
use crate::db;
use crate::util::hash_secret;

/// The `service` named in challenges and tokens.
pub(crate) const SERVICE: &str = "sitecast-origin";
const TOKEN_TTL: Duration = Duration::from_secs(300);
const PASSWORD_TTL: Duration = Duration::from_secs(300);
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a request may do in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Pull,
    Push,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub(crate) enum Identity {
    /// An API token: every repository; pushes too unless it is a viewer's.
    Token {
        /// Whether it may push and delete.
        push: bool,
    },
    /// A user; with a bearer token, only the scopes it names.
    User {
        name: String,
        scopes: Option<Vec<(String, bool)>>,
    },
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// (repository, push) pairs.
    scopes: Vec<(String, bool)>,
    exp: u64,
}

/// Keys, remembered passwords and failure windows of the registry listener.
pub(crate) struct Auth {
    key: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            key: rand::random(),
            verified: Mutex::default(),
            failures: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The 401 that starts the token flow. One challenge only: clients that join repeated headers
/// into one (oras-py through `requests`) misread a second one; Basic credentials are still
/// accepted when sent unasked.
pub(crate) fn challenge(headers: &HeaderMap, scope: Option<&str>, message: &str) -> OciError {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let mut bearer = format!("Bearer realm=\"http://{host}/token\",service=\"{SERVICE}\"");
    if let Some(s) = scope {
        bearer.push_str(&format!(",scope=\"{s}\""));
    }
    OciError::new(Code::Unauthorized, message).with_header(header::WWW_AUTHENTICATE, bearer)
}

impl Auth {
    fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let mut f = lock(&self.failures);
        let (start, n) = *f.get(&ip)?;
        if start.elapsed() >= WINDOW {
            f.remove(&ip);
            return None;
        }
        (n >= MAX_FAILURES).then(|| (WINDOW - start.elapsed()).max(Duration::from_secs(1)))
    }

    fn failed(&self, ip: IpAddr) {
        let mut f = lock(&self.failures);
        if f.len() > 10_000 {
            f.retain(|_, (s, _)| s.elapsed() < WINDOW);
        }
        let e = f.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }

    /// Check a user's password (failure limit first, then the remembered logins, then argon2).
    pub(crate) async fn login(
        &self,
        core: &Core,
        ip: IpAddr,
        user: &str,
        password: &str,
    ) -> RegResult<()> {
        if let Some(wait) = self.blocked(ip) {
            return Err(OciError::new(
                Code::TooManyRequests,
                "too many failed logins; try again later",
            )
            .with_header(header::RETRY_AFTER, wait.as_secs().max(1).to_string()));
        }
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        let k = *h.finalize().as_bytes();
        if lock(&self.verified)
            .get(&k)
            .is_some_and(|t| t.elapsed() < PASSWORD_TTL)
        {
            return Ok(());
        }
        let u = user.to_owned();
        let hash = core
            .db
            .call(move |c| db::registry_grants::user_access(c, &u))
            .await?
            .and_then(|(h, _)| h);
        let ok = match hash {
            Some(phc) => sitecast_runtime::password::verify(phc, password.to_owned()).await,
            None => false,
        };
        if !ok {
            self.failed(ip);
            return Err(OciError::new(
                Code::Unauthorized,
                "invalid user name or password",
            ));
        }
        let mut v = lock(&self.verified);
        if v.len() > 10_000 {
            v.retain(|_, t| t.elapsed() < PASSWORD_TTL);
        }
        v.insert(k, Instant::now());
        Ok(())
    }

    /// Who a request is from (`None`: no credentials).
    pub(crate) async fn identify(
        &self,
        core: &Core,
        ip: IpAddr,
        headers: &HeaderMap,
    ) -> RegResult<Option<Identity>> {
        let Some(v) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let v = v
            .to_str()
            .map_err(|_| OciError::new(Code::Unauthorized, "malformed Authorization header"))?
            .trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" if rest.starts_with("sct1.") => self
                .verify(rest)
                .map(Some)
                .ok_or_else(|| OciError::new(Code::Unauthorized, "invalid or expired token")),
            "bearer" => self.api_token(core, rest).await,
            "basic" => {
                let (user, password) = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .ok()
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|t| t.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
                    .ok_or_else(|| {
                        OciError::new(Code::Unauthorized, "malformed Basic credentials")
                    })?;
                // The password may be an API token (`skopeo --dest-creds x:$TOKEN`).
                if let Some(admin) = self.api_token(core, &password).await.ok().flatten() {
                    return Ok(Some(admin));
                }
                self.login(core, ip, &user, &password).await?;
                Ok(Some(Identity::User {
                    name: user,
                    scopes: None,
                }))
            }
            _ => Err(OciError::new(
                Code::Unauthorized,
                "expected Basic or Bearer credentials",
            )),
        }
    }

    async fn api_token(&self, core: &Core, token: &str) -> RegResult<Option<Identity>> {
        if token.is_empty() {
            return Err(OciError::new(Code::Unauthorized, "invalid credentials"));
        }
        let hash = hash_secret(token);
        match core.db.call(move |c| db::tokens::by_hash(c, &hash)).await? {
            Some(t) if t.expired(crate::util::now()) => Err(OciError::new(
                Code::Unauthorized,
                "the API token has expired",
            )),
            Some(t) => Ok(Some(Identity::Token {
                push: t.role != db::tokens::Role::Viewer,
            })),
            None => Err(OciError::new(Code::Unauthorized, "invalid credentials")),
        }
    }

    /// Issue a token for `user` with these (repository, push) scopes.
    pub(crate) fn issue(&self, user: &str, scopes: Vec<(String, bool)>) -> (String, u64) {
        let claims = Claims {
            sub: user.to_owned(),
            scopes,
            exp: unix() + TOKEN_TTL.as_secs(),
        };
        let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mac = B64.encode(blake3::keyed_hash(&self.key, payload.as_bytes()).as_bytes());
        (format!("sct1.{payload}.{mac}"), TOKEN_TTL.as_secs())
    }

    fn verify(&self, token: &str) -> Option<Identity> {
        let (payload, sig) = token.strip_prefix("sct1.")?.split_once('.')?;
        let expected = B64.encode(blake3::keyed_hash(&self.key, payload.as_bytes()).as_bytes());
        let same = expected.len() == sig.len()
            && expected
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0;
        if !same {
            return None;
        }
        let c: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        (c.exp > unix()).then_some(Identity::User {
            name: c.sub,
            scopes: Some(c.scopes),
        })
    }
}

/// The action a method means for a repository.
pub(crate) fn action_of(method: &Method) -> Action {
    if method == Method::GET || method == Method::HEAD {
        Action::Pull
    } else {
        Action::Push
    }
}

/// Whether `user`'s grants allow `action` on `repo`.
pub(crate) async fn granted(
    core: &Core,
    user: &str,
    repo: &str,
    action: Action,
) -> RegResult<bool> {
    let u = user.to_owned();
    let grants = core
        .db
        .call(move |c| db::registry_grants::user_access(c, &u))
        .await?
        .map(|(_, g)| g)
        .unwrap_or_default();
    Ok(grants
        .iter()
        .any(|(p, push)| db::images::glob(p, repo) && (action == Action::Pull || *push)))
}

/// Refuse unless `who` may do `action` on `repo`.
pub(crate) async fn authorize(
    core: &Core,
    headers: &HeaderMap,
    who: &Identity,
    repo: &str,
    action: Action,
) -> RegResult<()> {
    let (name, scopes) = match who {
        Identity::Token { push: false } if action == Action::Push => {
            return Err(OciError::new(
                Code::Denied,
                "viewer API tokens may pull, not push or delete",
            ))
        }
        Identity::Token { .. } => return Ok(()),
        Identity::User { name, scopes } => (name, scopes),
    };
    let scope = format!(
        "repository:{repo}:{}",
        if action == Action::Push {
            "pull,push"
        } else {
            "pull"
        }
    );
    if let Some(s) = scopes {
        if !s
            .iter()
            .any(|(r, push)| r == repo && (action == Action::Pull || *push))
        {
            return Err(challenge(
                headers,
                Some(&scope),
                "the token does not cover this request",
            ));
        }
    }
    if granted(core, name, repo, action).await? {
        return Ok(());
    }
    Err(OciError::new(
        Code::Denied,
        format!(
            "user {name} may not {} {repo}",
            if action == Action::Push {
                "push to"
            } else {
                "pull from"
            }
        ),
    ))
}
