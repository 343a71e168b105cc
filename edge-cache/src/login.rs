//! Password logins for FTP and SFTP: one path through the edge [`Authenticator`] (argon2
//! hashes from the site config, its success cache and per-minute limit) plus the protocol's
//! own [`LoginGuard`] (growing delay, lock-out).
//!
//! The names `anonymous` and `ftp` (any case, any password) log in as the anonymous principal
//! when the site config grants anything to anonymous — unless a site user has that exact
//! name, who then logs in with their password like everyone else.
//!
//! [`Authenticator`]: crate::access::Authenticator

use std::net::IpAddr;
use std::time::Duration;

use sitecast_protocol::{Principal, SiteConfig};

use crate::access::AuthOutcome;
use crate::core::Core;
use crate::limits::LoginGuard;

/// The outcome of [`password_login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Login {
    /// A site user.
    User(String),
    /// The anonymous principal.
    Anonymous,
    /// Wrong name or password (the failure was counted and the delay already served).
    Rejected,
    /// Too many failures from this address; try again after this long.
    LockedOut(Duration),
}

impl Login {
    /// The principal for [`crate::access::decide`], if logged in (`Some(None)` = anonymous).
    pub(crate) fn principal(&self) -> Option<Option<String>> {
        match self {
            Login::User(u) => Some(Some(u.clone())),
            Login::Anonymous => Some(None),
            Login::Rejected | Login::LockedOut(_) => None,
        }
    }
}

/// Whether `user` asks for an anonymous login on this site.
pub(crate) fn is_anonymous_name(site: &SiteConfig, user: &str) -> bool {
    (user.eq_ignore_ascii_case("anonymous") || user.eq_ignore_ascii_case("ftp"))
        && !site.users.iter().any(|u| u.name == user)
}

/// Whether anonymous has any grant at this site.
pub(crate) fn anonymous_allowed(site: &SiteConfig) -> bool {
    site.grants
        .iter()
        .any(|g| g.principal == Principal::Anonymous)
}

/// Count a failure from `ip` and serve its delay.
pub(crate) async fn fail(guard: &LoginGuard, ip: IpAddr) -> Login {
    let delay = guard.failed(ip);
    tokio::time::sleep(delay).await;
    Login::Rejected
}

/// Check a name and password from `ip` (see the module docs).
pub(crate) async fn password_login(
    core: &Core,
    guard: &LoginGuard,
    ip: IpAddr,
    user: &str,
    password: &str,
) -> Login {
    if let Some(wait) = guard.locked_for(ip) {
        return Login::LockedOut(wait);
    }
    let site = core.site_config();
    if is_anonymous_name(&site, user) {
        return if anonymous_allowed(&site) {
            Login::Anonymous
        } else {
            fail(guard, ip).await
        };
    }
    match core.auth.authenticate(ip, user, password).await {
        AuthOutcome::User(u) => Login::User(u),
        AuthOutcome::Invalid => fail(guard, ip).await,
        AuthOutcome::TooMany(wait) => Login::LockedOut(wait),
    }
}
