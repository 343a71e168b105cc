//! Access control: the one place every protocol (HTTP now, FTP/SFTP/OCI later) asks.
//!
//! - [`decide`] answers whether a principal (a user name, or `None` for anonymous) may
//!   [`Action::Read`] or [`Action::List`] at a catalog path, from the site config's grants.
//!   Grants are segment-wise prefixes ([`CatalogPath::is_under`]); anonymous grants apply to
//!   everyone, users included. Listing is also allowed at a directory that lies *above* one of
//!   the principal's grants (so they can navigate down to it); such a listing shows only
//!   [`visible`] entries.
//! - [`visible`] says whether a listing entry is shown: the principal may read (files) or list
//!   (directories) at it, or one of its grants lies below it.
//! - [`Authenticator::authenticate`] checks a user name and password against the site
//!   config's argon2 hashes, off the async runtime, remembering successes for
//!   `auth_cache_ttl` (keyed by a keyed BLAKE3 of user and password, and only while the user's
//!   hash is unchanged), and counting failures per client address: past the threshold in a
//!   minute the caller gets [`AuthOutcome::TooMany`] *before* any argon2 work is done.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sitecast_protocol::{CatalogPath, Principal, SiteConfig};

use crate::config::HttpConfig;

/// What a client wants to do at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fetch an artifact's content (or its metadata).
    Read,
    /// List a directory.
    List,
}

/// The answer of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused: 401 for an anonymous client (credentials may help), 403 for a user.
    Deny,
}

fn applies(p: &Principal, principal: Option<&str>) -> bool {
    match p {
        Principal::Anonymous => true,
        Principal::User(name) => principal == Some(name.as_str()),
    }
}

fn permits(perm: sitecast_protocol::Permissions, action: Action) -> bool {
    match action {
        Action::Read => perm.read,
        Action::List => perm.list,
    }
}

/// May `principal` (`None` = anonymous) do `action` at `path`? See the module docs.
#[must_use]
pub fn decide(
    config: &SiteConfig,
    principal: Option<&str>,
    path: &CatalogPath,
    action: Action,
) -> Decision {
    let mine = config
        .grants
        .iter()
        .filter(|g| applies(&g.principal, principal));
    let mut below = false;
    for g in mine {
        if permits(g.permissions, action) && path.is_under(&g.prefix) {
            return Decision::Allow;
        }
        if (g.permissions.read || g.permissions.list)
            && g.prefix.is_under(path)
            && g.prefix != *path
        {
            below = true;
        }
    }
    if action == Action::List && below {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

/// Whether a listing entry at `path` is shown to `principal`: it may read (`is_dir` false) or
/// list (`is_dir` true) there, or one of its grants lies below the entry.
#[must_use]
pub fn visible(
    config: &SiteConfig,
    principal: Option<&str>,
    path: &CatalogPath,
    is_dir: bool,
) -> bool {
    config
        .grants
        .iter()
        .filter(|g| applies(&g.principal, principal))
        .any(|g| {
            let p = g.permissions;
            (path.is_under(&g.prefix) && (p.read || (is_dir && p.list)))
                || (is_dir && (p.read || p.list) && g.prefix.is_under(path) && g.prefix != *path)
        })
}

/// The result of [`Authenticator::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Valid credentials for this user.
    User(String),
    /// Unknown user or wrong password (counted against the client address).
    Invalid,
    /// Too many failures from this address: answer 429 with `Retry-After` this long.
    TooMany(Duration),
}

struct CachedLogin {
    user: String,
    password_hash: String,
    expires: Instant,
}

struct FailureWindow {
    start: Instant,
    count: u32,
}

const WINDOW: Duration = Duration::from_secs(60);
const MAX_CACHE: usize = 10_000;

/// Password checks with a success cache and per-address failure limiting (module docs).
pub struct Authenticator {
    config: Arc<RwLock<Arc<SiteConfig>>>,
    key: [u8; 32],
    ttl: Duration,
    max_failures: u32,
    cache: Mutex<HashMap<[u8; 32], CachedLogin>>,
    /// One lock per credentials being verified, so concurrent requests with the same
    /// credentials wait for one argon2 run and then hit the cache.
    inflight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    failures: Mutex<HashMap<IpAddr, FailureWindow>>,
    verifications: AtomicU64,
}

impl Authenticator {
    /// An authenticator reading users from `config` (swapped when the origin sends a new one).
    #[must_use]
    pub fn new(config: Arc<RwLock<Arc<SiteConfig>>>, http: &HttpConfig) -> Self {
        Self {
            config,
            key: rand::random(),
            ttl: http.auth_cache_ttl,
            max_failures: http.auth_failures_before_429,
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            verifications: AtomicU64::new(0),
        }
    }

    fn site_config(&self) -> Arc<SiteConfig> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// If `client` is over the failure limit, how long until it may try again.
    #[must_use]
    pub fn blocked_for(&self, client: IpAddr) -> Option<Duration> {
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let w = f.get(&client)?;
        let elapsed = now.duration_since(w.start);
        if elapsed >= WINDOW {
            f.remove(&client);
            return None;
        }
        (w.count >= self.max_failures).then(|| (WINDOW - elapsed).max(Duration::from_secs(1)))
    }

    fn record_failure(&self, client: IpAddr) {
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if f.len() > MAX_CACHE {
            f.retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        let w = f.entry(client).or_insert(FailureWindow {
            start: now,
            count: 0,
        });
        if now.duration_since(w.start) >= WINDOW {
            *w = FailureWindow {
                start: now,
                count: 0,
            };
        }
        w.count += 1;
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        *h.finalize().as_bytes()
    }

    /// Check `user`/`password` for a request from `client`. The failure limit is checked
    /// first, then the cache, and only then argon2 (on a blocking thread).
    pub async fn authenticate(&self, client: IpAddr, user: &str, password: &str) -> AuthOutcome {
        if let Some(wait) = self.blocked_for(client) {
            return AuthOutcome::TooMany(wait);
        }
        let cfg = self.site_config();
        let hash = cfg
            .users
            .iter()
            .find(|u| u.name == user)
            .and_then(|u| u.password_hash.clone());
        let Some(hash) = hash else {
            self.record_failure(client);
            return AuthOutcome::Invalid;
        };
        let key = self.cache_key(user, password);
        if self.cached(&key, user, &hash) {
            return AuthOutcome::User(user.to_owned());
        }
        let gate = self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        let outcome = {
            let _turn = gate.lock().await;
            if self.cached(&key, user, &hash) {
                AuthOutcome::User(user.to_owned())
            } else {
                self.verify(client, key, user, password, hash).await
            }
        };
        let mut inflight = self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if Arc::strong_count(&gate) <= 2 {
            inflight.remove(&key);
        }
        outcome
    }

    /// Argon2 verifications run so far (cache misses).
    #[must_use]
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    fn cached(&self, key: &[u8; 32], user: &str, hash: &str) -> bool {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cache.get(key) {
            Some(c) if c.expires > Instant::now() && c.user == user && c.password_hash == hash => {
                true
            }
            Some(_) => {
                cache.remove(key);
                false
            }
            None => false,
        }
    }

    async fn verify(
        &self,
        client: IpAddr,
        key: [u8; 32],
        user: &str,
        password: &str,
        hash: String,
    ) -> AuthOutcome {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let ok = sitecast_runtime::password::verify(hash.clone(), password.to_owned()).await;
        if !ok {
            self.record_failure(client);
            return AuthOutcome::Invalid;
        }
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if cache.len() >= MAX_CACHE {
            cache.retain(|_, c| c.expires > now);
        }
        cache.insert(
            key,
            CachedLogin {
                user: user.to_owned(),
                password_hash: hash,
                expires: now + self.ttl,
            },
        );
        AuthOutcome::User(user.to_owned())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};
    use sitecast_protocol::{Permissions, SiteGrant, SiteUser};

    fn p(s: &str) -> CatalogPath {
        CatalogPath::parse(s).unwrap()
    }

    fn grant(who: Option<&str>, prefix: &str, read: bool, list: bool) -> SiteGrant {
        SiteGrant {
            principal: who.map_or(Principal::Anonymous, |n| Principal::User(n.into())),
            prefix: p(prefix),
            permissions: Permissions { read, list },
        }
    }

    fn config() -> SiteConfig {
        SiteConfig {
            revision: 1,
            site: "s1".into(),
            users: vec![],
            grants: vec![
                grant(None, "/public", true, true),
                grant(Some("alice"), "/fw", true, true),
                grant(Some("bob"), "/fw/ap", true, false),
                grant(Some("carol"), "/", false, true),
            ],
        }
    }

    #[test]
    fn decide_table() {
        use Action::{List, Read};
        use Decision::{Allow, Deny};
        let c = config();
        let cases: &[(Option<&str>, &str, Action, Decision)] = &[
            // anonymous: only /public
            (None, "/public/a.bin", Read, Allow),
            (None, "/public", List, Allow),
            (None, "/publicx/a.bin", Read, Deny),
            (None, "/fw/a.bin", Read, Deny),
            (None, "/", List, Allow), // navigates to /public
            (None, "/fw", List, Deny),
            // alice: /fw and (anonymous) /public
            (Some("alice"), "/fw/ap/x.bin", Read, Allow),
            (Some("alice"), "/fw", List, Allow),
            (Some("alice"), "/public/a.bin", Read, Allow),
            (Some("alice"), "/other/x", Read, Deny),
            (Some("alice"), "/fwx/x", Read, Deny),
            // bob: read-only below /fw/ap, may navigate to it
            (Some("bob"), "/fw/ap/x.bin", Read, Allow),
            (Some("bob"), "/fw/ap", List, Deny),
            (Some("bob"), "/fw", List, Allow),
            (Some("bob"), "/fw/b.bin", Read, Deny),
            // carol: list everything, read nothing but /public
            (Some("carol"), "/fw", List, Allow),
            (Some("carol"), "/fw/a.bin", Read, Deny),
            (Some("carol"), "/public/a.bin", Read, Allow),
            // dave: no grants of his own, only anonymous ones
            (Some("dave"), "/fw/a.bin", Read, Deny),
            (Some("dave"), "/public/a.bin", Read, Allow),
        ];
        for (who, path, action, want) in cases {
            assert_eq!(
                decide(&c, *who, &p(path), *action),
                *want,
                "{who:?} {path} {action:?}"
            );
        }
        // Empty config: nobody may do anything.
        let empty = SiteConfig::default();
        assert_eq!(decide(&empty, None, &p("/"), List), Deny);
        assert_eq!(decide(&empty, Some("alice"), &p("/x"), Read), Deny);
    }

    #[test]
    fn visible_entries() {
        let c = config();
        assert!(visible(&c, None, &p("/public"), true));
        assert!(!visible(&c, None, &p("/fw"), true));
        assert!(visible(&c, Some("bob"), &p("/fw"), true));
        assert!(visible(&c, Some("bob"), &p("/fw/ap"), true));
        assert!(!visible(&c, Some("bob"), &p("/fw/other"), true));
        assert!(!visible(&c, Some("bob"), &p("/fw/b.bin"), false));
        assert!(visible(&c, Some("bob"), &p("/fw/ap/x.bin"), false));
        assert!(!visible(&c, Some("carol"), &p("/fw/a.bin"), false));
        assert!(visible(&c, Some("carol"), &p("/fw/sub"), true));
    }

    pub(crate) fn hash(pw: &str) -> String {
        let salt = SaltString::from_b64("c2l0ZWNhc3RzYWx0c2FsdA").unwrap();
        let a = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8, 1, 1, None).unwrap(),
        );
        a.hash_password(pw.as_bytes(), &salt).unwrap().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_logins_verify_once() {
        tokio::time::timeout(Duration::from_secs(30), async {
            let mut c = config();
            c.users.push(SiteUser {
                name: "alice".into(),
                password_hash: Some(hash("secret")),
                ssh_keys: vec![],
            });
            let auth = Arc::new(Authenticator::new(
                Arc::new(RwLock::new(Arc::new(c))),
                &HttpConfig::default(),
            ));
            let ip: IpAddr = "10.0.0.1".parse().unwrap();
            let tasks: Vec<_> = (0..200)
                .map(|_| {
                    let auth = auth.clone();
                    tokio::spawn(async move { auth.authenticate(ip, "alice", "secret").await })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap(), AuthOutcome::User("alice".into()));
            }
            assert_eq!(auth.verifications(), 1);
            assert!(auth.inflight.lock().unwrap().is_empty());
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn authenticate_caches_and_limits() {
        tokio::time::timeout(Duration::from_secs(30), async {
            let mut c = config();
            c.users.push(SiteUser {
                name: "alice".into(),
                password_hash: Some(hash("secret")),
                ssh_keys: vec![],
            });
            let shared = Arc::new(RwLock::new(Arc::new(c.clone())));
            let http = HttpConfig {
                auth_failures_before_429: 3,
                auth_cache_ttl: Duration::from_secs(60),
                ..HttpConfig::default()
            };
            let auth = Authenticator::new(shared.clone(), &http);
            let ip: IpAddr = "10.0.0.1".parse().unwrap();
            let other: IpAddr = "10.0.0.2".parse().unwrap();
            assert_eq!(
                auth.authenticate(ip, "alice", "secret").await,
                AuthOutcome::User("alice".into())
            );
            assert_eq!(
                auth.authenticate(ip, "alice", "secret").await,
                AuthOutcome::User("alice".into())
            );
            assert_eq!(auth.cache.lock().unwrap().len(), 1);
            assert_eq!(auth.verifications(), 1);
            assert_eq!(
                auth.authenticate(ip, "alice", "wrong").await,
                AuthOutcome::Invalid
            );
            assert_eq!(
                auth.authenticate(ip, "nobody", "x").await,
                AuthOutcome::Invalid
            );
            assert_eq!(
                auth.authenticate(ip, "alice", "wrong").await,
                AuthOutcome::Invalid
            );
            // Over the limit: even the right password is refused, before argon2.
            assert!(matches!(
                auth.authenticate(ip, "alice", "secret").await,
                AuthOutcome::TooMany(_)
            ));
            // Another address is unaffected.
            assert_eq!(
                auth.authenticate(other, "alice", "secret").await,
                AuthOutcome::User("alice".into())
            );
            // A changed password invalidates the cached login.
            c.users[0].password_hash = Some(hash("new"));
            *shared.write().unwrap() = Arc::new(c);
            assert_eq!(
                auth.authenticate(other, "alice", "secret").await,
                AuthOutcome::Invalid
            );
            assert_eq!(
                auth.authenticate(other, "alice", "new").await,
                AuthOutcome::User("alice".into())
            );
        })
        .await
        .unwrap();
    }
}
