//! libunftp's authentication hooks, adapted to [`crate::login::password_login`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};

use crate::core::Core;
use crate::limits::LoginGuard;
use crate::login::{password_login, Login};

/// The libunftp principal name standing for anonymous (not a valid site user name).
const ANONYMOUS: &str = "\u{0}anonymous";

/// A logged-in FTP user: a site user or anonymous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FtpUser {
    name: Option<String>,
}

impl FtpUser {
    /// The principal for access decisions (`None` = anonymous).
    pub(crate) fn principal(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_deref().unwrap_or("anonymous"))
    }
}

impl UserDetail for FtpUser {}

/// Checks one FTP connection's logins against the site's users.
pub(crate) struct FtpAuth {
    pub(crate) core: Arc<Core>,
    pub(crate) guard: Arc<LoginGuard>,
    /// Set once a login succeeds (the login grace timer reads it).
    pub(crate) logged_in: Arc<AtomicBool>,
}

impl fmt::Debug for FtpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FtpAuth")
    }
}

#[async_trait]
impl Authenticator for FtpAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let password = creds.password.as_deref().unwrap_or("");
        let ip = creds.source_ip;
        let login = password_login(&self.core, &self.guard, ip, username, password).await;
        if matches!(login, Login::User(_) | Login::Anonymous) {
            self.logged_in.store(true, Ordering::Release);
        }
        match login {
            Login::User(u) => {
                tracing::info!(user = %u, client = %ip, "ftp login");
                Ok(Principal { username: u })
            }
            Login::Anonymous => {
                tracing::info!(client = %ip, "ftp anonymous login");
                Ok(Principal {
                    username: ANONYMOUS.to_owned(),
                })
            }
            Login::Rejected => {
                tracing::info!(user = %username, client = %ip, "ftp login rejected");
                Err(AuthenticationError::BadPassword)
            }
            Login::LockedOut(wait) => {
                tracing::warn!(client = %ip, retry_after_secs = wait.as_secs(), "ftp login refused: too many failures");
                Err(AuthenticationError::IpDisallowed)
            }
        }
    }

    fn name(&self) -> &'static str {
        "sitecast"
    }
}

/// Turns an authenticated principal into an [`FtpUser`].
#[derive(Debug)]
pub(crate) struct FtpUsers;

#[async_trait]
impl UserDetailProvider for FtpUsers {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        Ok(FtpUser {
            name: (principal.username != ANONYMOUS).then(|| principal.username.clone()),
        })
    }
}
