//! Site configuration as the origin sends it to edges: users, grants and limits.
//!
//! These are the records an edge enforces offline; the evaluation itself lives in the edge's
//! `access` module so every protocol asks one function.

use serde::{Deserialize, Serialize};

use crate::path::CatalogPath;

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// A named user.
    User(String),
    /// Anyone, without credentials.
    Anonymous,
}

/// What a grant allows below its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Permissions {
    /// Fetch content.
    pub read: bool,
    /// List directories.
    pub list: bool,
}

/// A grant as an edge sees it (already narrowed to the edge's site).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteGrant {
    /// Who.
    pub principal: Principal,
    /// Which part of the catalog (segment-wise prefix).
    pub prefix: CatalogPath,
    /// What.
    pub permissions: Permissions,
}

/// A user as an edge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteUser {
    /// Login name.
    pub name: String,
    /// Argon2 PHC string, if the user may log in with a password.
    pub password_hash: Option<String>,
    /// OpenSSH public keys (`ssh-ed25519 AAAA… comment`).
    pub ssh_keys: Vec<String>,
}

/// Everything an edge needs to enforce access for its site while offline.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SiteConfig {
    /// Increases with every change at the origin.
    pub revision: u64,
    /// The site's name.
    pub site: String,
    /// Users that may log in at this site.
    pub users: Vec<SiteUser>,
    /// Grants that apply at this site.
    pub grants: Vec<SiteGrant>,
}
