//! `sitecast ctl`: the admin client of the origin's REST API (see docs/internals.md).

mod archive;
mod client;
pub(crate) mod layout;
mod output;
mod progress;
mod push;
mod secret;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use progress::{progress_bar, push_report, registry_token, upload};

pub(crate) use client::{encode_path, ApiError, Client};
pub(crate) use output::id_text as output_id;

/// `sitecast ctl` arguments.
#[derive(Args)]
pub(crate) struct CtlArgs {
    /// Origin REST API base URL.
    #[arg(
        long,
        env = "SITECAST_API",
        default_value = "http://127.0.0.1:8440",
        global = true
    )]
    api: String,
    /// Admin bearer token.
    #[arg(long, env = "SITECAST_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
    /// A PEM file of CA certificates to verify an HTTPS origin with, besides the system's
    /// roots (the origin's `<data_dir>/ca/ca.pem` when it issues its own certificate).
    #[arg(long, env = "SITECAST_CA", global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Upload, list, show and delete artifacts.
    #[command(subcommand)]
    Artifact(ArtifactCmd),
    /// Channels: paths that name a version (`/fw/stable/fw.bin` → `/fw/2.1.0/fw.bin`).
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// Sites and their join tokens.
    #[command(subcommand)]
    Site(SiteCmd),
    /// Users with passwords.
    #[command(subcommand)]
    User(UserCmd),
    /// Grants of read/list access to users or anonymous.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Users' pull and push access to the origin's registry, by repository pattern.
    #[command(subcommand)]
    RegistryGrant(RegistryGrantCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Pushes of content to sites.
    #[command(subcommand)]
    Push(push::PushCmd),
    /// OCI images in the origin's registry.
    #[command(subcommand)]
    Image(ImageCmd),
    /// The audit log of mutating API calls, newest first (admin tokens only).
    Audit {
        /// Only the calls made with the token of this name.
        #[arg(long = "token-name", value_name = "NAME")]
        token_name: Option<String>,
        /// Entries per page (1-1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The `next` cursor a previous page printed.
        #[arg(long)]
        before: Option<i64>,
    },
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Copy an image from an upstream registry into the origin's registry (stored under
    /// HOST/PATH, e.g. docker.io/library/nginx); prints what was imported.
    Import {
        /// `[host[:port]/]path[:tag][@sha256:…]`, e.g. registry.example:5000/team/app:1.4.
        reference: String,
        /// Keep only this platform of an index, os/arch[/variant] (repeatable; default all).
        #[arg(long = "platform")]
        platforms: Vec<String>,
        /// Every tag of the repository.
        #[arg(long)]
        all_tags: bool,
        /// Plain HTTP to the upstream.
        #[arg(long)]
        insecure: bool,
        /// User name for the upstream (its password from SITECAST_UPSTREAM_PASSWORD).
        #[arg(long, requires = "password")]
        username: Option<String>,
        /// Password for the upstream.
        #[arg(
            long,
            env = "SITECAST_UPSTREAM_PASSWORD",
            hide_env_values = true,
            requires = "username"
        )]
        password: Option<String>,
    },
    /// Push every tag of an OCI image-layout folder into REPO of the origin's registry
    /// (byte-exact; blobs the repository holds are skipped).
    PushLayout {
        /// The layout folder (oci-layout, index.json, blobs/).
        dir: PathBuf,
        /// Repository, e.g. docker.io/library/nginx.
        repo: String,
        /// The origin's registry, HOST:PORT or URL.
        #[arg(long, env = "SITECAST_REGISTRY", default_value = "127.0.0.1:8442")]
        registry: String,
    },
    /// Push an image archive into REPO of the origin's registry: an OCI archive (byte-exact) or
    /// a Docker archive from `docker save` (its manifest is written anew, as `docker push`
    /// does).
    PushArchive {
        /// The tar file.
        file: PathBuf,
        /// Repository, e.g. docker.io/library/nginx.
        repo: String,
        /// The origin's registry, HOST:PORT or URL.
        #[arg(long, env = "SITECAST_REGISTRY", default_value = "127.0.0.1:8442")]
        registry: String,
    },
}

#[derive(Subcommand)]
enum ChannelCmd {
    /// Point (or move) channel PATH at the version at VERSION: its content is published at
    /// PATH, so pushes following PATH deliver the move; prints what it set going.
    Set { path: String, version: String },
    /// List channels.
    List,
}

#[derive(Subcommand)]
enum ArtifactCmd {
    /// Upload FILE as the artifact at PATH (streamed; a progress bar on a terminal).
    Upload { file: PathBuf, path: String },
    /// List artifacts, optionally below a prefix.
    List {
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Show one artifact.
    Show { path: String },
    /// Delete one artifact.
    Delete { path: String },
}

#[derive(Subcommand)]
enum SiteCmd {
    /// Create a site; prints its one-time join token.
    Create {
        name: String,
        /// Label k=v (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Bandwidth limit towards this site (e.g. 5Mbit/s).
        #[arg(long, value_parser = crate::rate::parse_rate)]
        max_rate: Option<u64>,
        /// A DNS name or IP address of the HTTPS certificate the origin issues to the site's
        /// edges (those with `tls_from_origin`); repeatable.
        #[arg(long = "https-name")]
        https_names: Vec<String>,
        /// IANA time zone its transfer windows are read in (default UTC), e.g. Asia/Shanghai.
        #[arg(long)]
        time_zone: Option<String>,
        /// A transfer window `DAYS HH:MM DURATION` in site time, e.g. 'mon-fri 01:00 4h'
        /// (repeatable); pushes use the link only inside one. None: any time.
        #[arg(long = "window")]
        windows: Vec<String>,
        /// Disk quota for the site's content (e.g. 20GiB): pushes past it are refused.
        #[arg(long, value_parser = sitecast_runtime::size::parse)]
        quota: Option<u64>,
        /// How long the join token is valid (e.g. 2h; default 24h, at most 365days).
        #[arg(long)]
        join_token_ttl: Option<String>,
    },
    /// Set the names of the site's HTTPS certificate (none clears them); its connected edges
    /// that take their certificate from the origin get a new one at once.
    HttpsNames {
        name: String,
        /// DNS names and IP addresses.
        names: Vec<String>,
    },
    /// Change a site: the labels (all of them), its bandwidth cap, HTTPS names, time zone,
    /// transfer windows. Transfers pause or resume at once.
    Set {
        name: String,
        /// Label k=v (repeatable): replaces every label; `--no-labels` removes them all.
        #[arg(long = "label", value_parser = parse_label, conflicts_with = "no_labels")]
        labels: Vec<(String, String)>,
        /// Remove every label.
        #[arg(long)]
        no_labels: bool,
        /// Bandwidth limit towards this site (e.g. 5Mbit/s).
        #[arg(long, value_parser = crate::rate::parse_rate, conflicts_with = "no_max_rate")]
        max_rate: Option<u64>,
        /// Remove the bandwidth limit.
        #[arg(long)]
        no_max_rate: bool,
        /// HTTPS certificate names (repeatable): replaces them.
        #[arg(long = "https-name")]
        https_names: Vec<String>,
        /// IANA time zone its transfer windows are read in (default UTC), e.g. Asia/Shanghai.
        #[arg(long)]
        time_zone: Option<String>,
        /// Transfer windows (repeatable, as for `create`): replace them all.
        #[arg(long = "window", conflicts_with = "no_windows")]
        windows: Vec<String>,
        /// Remove every window: the link may be used any time.
        #[arg(long)]
        no_windows: bool,
        /// Disk quota for the site's content (e.g. 20GiB).
        #[arg(long, value_parser = sitecast_runtime::size::parse, conflicts_with = "no_quota")]
        quota: Option<u64>,
        /// Remove the quota.
        #[arg(long)]
        no_quota: bool,
    },
    /// List sites.
    List,
    /// Show a site with its nodes.
    Show { name: String },
    /// Delete a site (revokes its nodes).
    Delete { name: String },
    /// Revoke one node of a site: its certificate stops working at once and its session is
    /// closed; the edge keeps serving what it holds and stops dialing the origin until it is
    /// started with a fresh join token.
    RevokeNode { name: String, node: String },
    /// Issue a new one-time join token (invalidates an unused one).
    JoinToken {
        name: String,
        /// How long it is valid (e.g. 2h; default 24h, at most 365days).
        #[arg(long)]
        ttl: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user with a password, SSH keys, or both. The password is read from stdin
    /// (`--password-stdin`), a file (`--password-file`) or SITECAST_USER_PASSWORD; `--password`
    /// on the command line is visible to other local users (`ps`) and in shell history.
    Create {
        name: String,
        #[command(flatten)]
        password: secret::PasswordArgs,
        /// An OpenSSH public key file for SFTP, e.g. ~/.ssh/id_ed25519.pub (repeatable).
        #[arg(long = "ssh-key", value_name = "FILE")]
        ssh_keys: Vec<PathBuf>,
    },
    /// Change a user's password and/or SSH keys; their grants stay. The password sources are
    /// those of `create`.
    Set {
        name: String,
        #[command(flatten)]
        password: secret::PasswordArgs,
        /// Remove the password (the user keeps SSH keys).
        #[arg(long, group = "secret")]
        no_password: bool,
        /// OpenSSH public key files (repeatable): replace every key.
        #[arg(long = "ssh-key", value_name = "FILE")]
        ssh_keys: Vec<PathBuf>,
    },
    /// List users.
    List,
    /// Delete a user.
    Delete { name: String },
    /// Add an OpenSSH public key (for SFTP) from FILE, e.g. ~/.ssh/id_ed25519.pub.
    AddKey { name: String, file: PathBuf },
}

#[derive(Subcommand)]
enum RegistryGrantCmd {
    /// Let a user pull (and with --push also push and delete) repositories matching a pattern.
    Create {
        /// The user.
        #[arg(long)]
        user: String,
        /// Repository pattern with `*`/`?`, e.g. 'docker.io/library/*'.
        #[arg(long)]
        repository: String,
        /// Also allow pushes and deletes.
        #[arg(long)]
        push: bool,
    },
    /// List registry grants.
    List,
    /// Delete a registry grant.
    Delete { id: String },
}

#[derive(Subcommand)]
enum GrantCmd {
    /// Grant read and list access below a path prefix.
    Create {
        /// The user (or --anonymous).
        #[arg(
            long,
            required_unless_present = "anonymous",
            conflicts_with = "anonymous"
        )]
        user: Option<String>,
        /// Anyone, without credentials.
        #[arg(long)]
        anonymous: bool,
        /// Path prefix, e.g. /firmware/ap-x200.
        #[arg(long)]
        path: String,
        /// Only at this site (default: every site).
        #[arg(long, conflicts_with = "labels")]
        site: Option<String>,
        /// Only at sites with these labels.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Do not allow reading content.
        #[arg(long)]
        no_read: bool,
        /// Do not allow listing directories.
        #[arg(long)]
        no_list: bool,
    },
    /// List grants, optionally only a user's, those applying at a site, or covering a path.
    List {
        /// Only grants to this user (`anonymous` for the anonymous ones).
        #[arg(long)]
        user: Option<String>,
        /// Only grants that apply at this site.
        #[arg(long)]
        site: Option<String>,
        /// Only grants covering this path.
        #[arg(long)]
        path: Option<String>,
    },
    /// Delete a grant.
    Delete { id: String },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an API token (the secret is printed once).
    Create {
        name: String,
        /// admin (everything, the default), operator (artifacts, images, sites, pushes) or
        /// viewer (read only).
        #[arg(long)]
        role: Option<String>,
        /// Lifetime, e.g. 90days (default: never expires).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List tokens: names, roles, expiry, last use (never secrets).
    List,
    /// Revoke a token: it stops working with the next request.
    Revoke { name: String },
}

pub(super) fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("invalid label {s:?}: expected key=value")),
    }
}

/// Labels as a JSON object; a key given twice is refused (the last would silently win).
pub(super) fn labels_json(labels: &[(String, String)]) -> Result<Value, ApiError> {
    let mut map = BTreeMap::new();
    for (k, v) in labels {
        if map.insert(k.clone(), v.clone()).is_some() {
            return Err(ApiError::Invalid(format!(
                "--label {k} is given twice; a site has one value per label"
            )));
        }
    }
    Ok(json!(map))
}

pub(crate) async fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let out = args.output;
    let result = match Client::new(&args.api, args.token.clone(), args.ca.as_deref()) {
        Ok(client) => execute(&client, out, args.command).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            output::error(out, &e);
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn execute(c: &Client, out: Output, cmd: CtlCommand) -> Result<ExitCode, ApiError> {
    let v = match cmd {
        CtlCommand::Channel(ChannelCmd::Set { path, version }) => {
            let path = artifact_path(&path)?;
            let v = c
                .put(
                    &format!("/api/v1/channels{}", encode_path(&path)),
                    &json!({ "version": artifact_path(&version)? }),
                )
                .await?;
            if out == Output::Text {
                println!(
                    "{path} → {version} (sha256 {})",
                    v["sha256"].as_str().unwrap_or("?")
                );
                for p in v["delivered_by"].as_array().into_iter().flatten() {
                    println!("delivered by push {p} (a push following this path)");
                }
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        CtlCommand::Channel(ChannelCmd::List) => c.get("/api/v1/channels").await?,
        CtlCommand::Artifact(a) => match a {
            ArtifactCmd::Upload { file, path } => {
                upload(c, out, &file, &artifact_path(&path)?).await?
            }
            ArtifactCmd::List { prefix } => {
                let q = prefix.map_or(String::new(), |p| format!("?prefix={}", encode_path(&p)));
                c.get(&format!("/api/v1/artifacts{q}")).await?
            }
            ArtifactCmd::Show { path } => {
                let path = artifact_path(&path)?;
                c.get(&format!("/api/v1/artifacts{}", encode_path(&path)))
                    .await?
            }
            ArtifactCmd::Delete { path } => {
                let path = artifact_path(&path)?;
                let url = format!("/api/v1/artifacts{}", encode_path(&path));
                return deleted(c, out, "artifact", &path, &url).await;
            }
        },
        CtlCommand::Site(s) => match s {
            SiteCmd::Create {
                name,
                labels,
                max_rate,
                https_names,
                time_zone,
                windows,
                quota,
                join_token_ttl,
            } => {
                let v = c
                    .post(
                        "/api/v1/sites",
                        &json!({"name": name, "labels": labels_json(&labels)?, "max_rate": max_rate,
                            "https_names": https_names, "join_token_ttl": join_token_ttl,
                            "time_zone": time_zone, "windows": windows, "quota": quota}),
                    )
                    .await?;
                if out == Output::Text {
                    println!(
                        "site {name} created; join token (shown once, valid until {}):",
                        v["join_token_expires"].as_str().unwrap_or("?")
                    );
                    println!("{}", v["join_token"].as_str().unwrap_or(""));
                    return Ok(ExitCode::SUCCESS);
                }
                v
            }
            SiteCmd::HttpsNames { name, names } => {
                c.put(
                    &format!("/api/v1/sites/{}/https-names", seg(&name)),
                    &json!({ "names": names }),
                )
                .await?
            }
            SiteCmd::Set {
                name,
                labels,
                no_labels,
                max_rate,
                no_max_rate,
                https_names,
                time_zone,
                windows,
                no_windows,
                quota,
                no_quota,
            } => {
                let mut body = serde_json::Map::new();
                if !labels.is_empty() {
                    body.insert("labels".into(), labels_json(&labels)?);
                } else if no_labels {
                    body.insert("labels".into(), json!({}));
                }
                if let Some(r) = max_rate {
                    body.insert("max_rate".into(), json!(r));
                } else if no_max_rate {
                    body.insert("max_rate".into(), Value::Null);
                }
                if !https_names.is_empty() {
                    body.insert("https_names".into(), json!(https_names));
                }
                if let Some(tz) = time_zone {
                    body.insert("time_zone".into(), json!(tz));
                }
                if !windows.is_empty() || no_windows {
                    body.insert("windows".into(), json!(windows));
                }
                if let Some(q) = quota {
                    body.insert("quota".into(), json!(q));
                } else if no_quota {
                    body.insert("quota".into(), Value::Null);
                }
                c.patch(
                    &format!("/api/v1/sites/{}", seg(&name)),
                    &Value::Object(body),
                )
                .await?
            }
            SiteCmd::RevokeNode { name, node } => {
                let url = format!("/api/v1/sites/{}/nodes/{}", seg(&name), seg(&node));
                return deleted(c, out, "node", &format!("{name}/{node}"), &url).await;
            }
            SiteCmd::List => c.get("/api/v1/sites").await?,
            SiteCmd::Show { name } => c.get(&format!("/api/v1/sites/{}", seg(&name))).await?,
            SiteCmd::Delete { name } => {
                let url = format!("/api/v1/sites/{}", seg(&name));
                return deleted(c, out, "site", &name, &url).await;
            }
            SiteCmd::JoinToken { name, ttl } => {
                let q = ttl.map_or(String::new(), |t| format!("?ttl={}", seg(&t)));
                let v = c
                    .post(
                        &format!("/api/v1/sites/{}/join-token{q}", seg(&name)),
                        &json!({}),
                    )
                    .await?;
                if out == Output::Text {
                    println!("{}", v["join_token"].as_str().unwrap_or(""));
                    return Ok(ExitCode::SUCCESS);
                }
                v
            }
        },
        CtlCommand::User(u) => match u {
            UserCmd::Create {
                name,
                password,
                ssh_keys,
            } => {
                let password = password.read()?;
                if password.is_none() && ssh_keys.is_empty() {
                    return Err(ApiError::Invalid(
                        "a user needs a password (--password-stdin, --password-file, \
                         --password-env or --password) or an --ssh-key"
                            .into(),
                    ));
                }
                let keys = ssh_keys
                    .iter()
                    .map(|f| secret::read_key(f))
                    .collect::<Result<Vec<_>, _>>()?;
                c.post(
                    "/api/v1/users",
                    &json!({"name": name, "password": password, "ssh_keys": keys}),
                )
                .await?
            }
            UserCmd::Set {
                name,
                password,
                no_password,
                ssh_keys,
            } => {
                let mut body = serde_json::Map::new();
                if let Some(p) = password.read()? {
                    body.insert("password".into(), json!(p));
                } else if no_password {
                    body.insert("password".into(), Value::Null);
                }
                if !ssh_keys.is_empty() {
                    let keys = ssh_keys
                        .iter()
                        .map(|f| secret::read_key(f))
                        .collect::<Result<Vec<_>, _>>()?;
                    body.insert("ssh_keys".into(), json!(keys));
                }
                c.patch(
                    &format!("/api/v1/users/{}", seg(&name)),
                    &Value::Object(body),
                )
                .await?
            }
            UserCmd::List => c.get("/api/v1/users").await?,
            UserCmd::Delete { name } => {
                let url = format!("/api/v1/users/{}", seg(&name));
                return deleted(c, out, "user", &name, &url).await;
            }
            UserCmd::AddKey { name, file } => {
                let key = secret::read_key(&file)?;
                c.post(
                    &format!("/api/v1/users/{}/keys", seg(&name)),
                    &json!({"key": key}),
                )
                .await?
            }
        },
        CtlCommand::Grant(g) => match g {
            GrantCmd::Create {
                user,
                anonymous,
                path,
                site,
                labels,
                no_read,
                no_list,
            } => {
                let labels = if labels.is_empty() {
                    Value::Null
                } else {
                    labels_json(&labels)?
                };
                c.post(
                    "/api/v1/grants",
                    &json!({"user": user, "anonymous": anonymous, "path": path, "site": site,
                            "labels": labels, "read": !no_read, "list": !no_list}),
                )
                .await?
            }
            GrantCmd::List { user, site, path } => {
                let q: Vec<String> = [("user", user), ("site", site), ("path", path)]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", query_value(&v))))
                    .collect();
                let q = if q.is_empty() {
                    String::new()
                } else {
                    format!("?{}", q.join("&"))
                };
                c.get(&format!("/api/v1/grants{q}")).await?
            }
            GrantCmd::Delete { id } => {
                let url = format!("/api/v1/grants/{}", seg(&id));
                return deleted(c, out, "grant", &id, &url).await;
            }
        },
        CtlCommand::RegistryGrant(g) => match g {
            RegistryGrantCmd::Create {
                user,
                repository,
                push,
            } => {
                c.post(
                    "/api/v1/registry-grants",
                    &json!({"user": user, "repository": repository, "push": push}),
                )
                .await?
            }
            RegistryGrantCmd::List => c.get("/api/v1/registry-grants").await?,
            RegistryGrantCmd::Delete { id } => {
                let url = format!("/api/v1/registry-grants/{}", seg(&id));
                return deleted(c, out, "registry grant", &id, &url).await;
            }
        },
        CtlCommand::Token(TokenCmd::List) => c.get("/api/v1/tokens").await?,
        CtlCommand::Token(TokenCmd::Revoke { name }) => {
            let url = format!("/api/v1/tokens/{}", seg(&name));
            return deleted(c, out, "token", &name, &url).await;
        }
        CtlCommand::Audit {
            token_name,
            limit,
            before,
        } => {
            let mut q = format!("?limit={limit}");
            if let Some(t) = token_name {
                q.push_str(&format!("&token={}", query_value(&t)));
            }
            if let Some(b) = before {
                q.push_str(&format!("&before={b}"));
            }
            c.get(&format!("/api/v1/audit{q}")).await?
        }
        CtlCommand::Token(TokenCmd::Create { name, role, ttl }) => {
            let v = c
                .post(
                    "/api/v1/tokens",
                    &json!({"name": name, "role": role, "ttl": ttl}),
                )
                .await?;
            if out == Output::Text {
                println!("{}", v["token"].as_str().unwrap_or(""));
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        CtlCommand::Image(ImageCmd::Import {
            reference,
            platforms,
            all_tags,
            insecure,
            username,
            password,
        }) => {
            let req = json!({"reference": reference, "platforms": platforms, "all_tags": all_tags,
                             "insecure": insecure, "username": username, "password": password});
            let v = if out == Output::Text {
                // Streamed: a progress bar per blob (hidden when stderr is not a terminal).
                let mut bar = indicatif::ProgressBar::hidden();
                let last = c
                    .post_lines("/api/v1/images/import", &req, |e| {
                        match e["event"].as_str() {
                            Some("blob") => {
                                bar.finish_and_clear();
                                let d = e["digest"].as_str().unwrap_or("");
                                bar = progress_bar(
                                    e["size"].as_u64().unwrap_or(0),
                                    &d[..d.len().min(19)],
                                );
                            }
                            Some("bytes") => bar.inc(e["n"].as_u64().unwrap_or(0)),
                            _ => {}
                        }
                    })
                    .await?;
                bar.finish_and_clear();
                match last["event"].as_str() {
                    Some("error") => {
                        let status = match last["code"].as_str() {
                            Some("not_found") => reqwest::StatusCode::NOT_FOUND,
                            Some("bad_request") => reqwest::StatusCode::BAD_REQUEST,
                            Some("upstream") => reqwest::StatusCode::BAD_GATEWAY,
                            _ => reqwest::StatusCode::INTERNAL_SERVER_ERROR,
                        };
                        return Err(ApiError::Api {
                            status,
                            code: last["code"].as_str().unwrap_or("import").to_owned(),
                            message: last["message"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                    Some("done") => last,
                    _ if last["images"].is_array() => last,
                    _ => {
                        return Err(ApiError::Transport(
                            "the import stream ended without a result".into(),
                        ))
                    }
                }
            } else {
                c.post("/api/v1/images/import", &req).await?
            };
            if out == Output::Text {
                for i in v["images"].as_array().into_iter().flatten() {
                    println!(
                        "{}:{} {} ({} manifests, {} blobs fetched, {} bytes, {} already stored)",
                        i["repository"].as_str().unwrap_or(""),
                        i["tag"].as_str().unwrap_or("-"),
                        i["digest"].as_str().unwrap_or(""),
                        i["manifests"],
                        i["blobs_fetched"],
                        i["bytes_fetched"],
                        i["blobs_reused"]
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        CtlCommand::Image(ImageCmd::PushLayout {
            dir,
            repo,
            registry,
        }) => {
            let reg = layout::Registry::new(&registry, registry_token(c)?, c.ca())?;
            let v = layout::push(&reg, &dir, &repo).await?;
            return push_report(out, &repo, v);
        }
        CtlCommand::Image(ImageCmd::PushArchive {
            file,
            repo,
            registry,
        }) => {
            let reg = layout::Registry::new(&registry, registry_token(c)?, c.ca())?;
            let v = archive::push(&reg, &file, &repo).await?;
            return push_report(out, &repo, v);
        }
        CtlCommand::Push(p) => return push::run(c, out, p).await,
    };
    output::print(out, &v);
    Ok(ExitCode::SUCCESS)
}

/// Validate an artifact path locally: an HTTP client would otherwise normalise `..` away and
/// the origin would store `/fw/../x.bin` as `/x.bin`.
fn artifact_path(p: &str) -> Result<String, ApiError> {
    sitecast_protocol::CatalogPath::parse_artifact(p)
        .map(|c| c.as_str().to_owned())
        .map_err(|e| ApiError::Invalid(format!("bad_path: invalid path {p:?}: {e}")))
}

/// DELETE `url` and say what was deleted: `deleted KIND ID`, or with `--output json`
/// `{"deleted":{"kind","id"}}`.
async fn deleted(
    c: &Client,
    out: Output,
    kind: &str,
    id: &str,
    url: &str,
) -> Result<ExitCode, ApiError> {
    c.delete(url).await?;
    match out {
        Output::Text => println!("deleted {kind} {id}"),
        Output::Json => output::print(out, &json!({"deleted": {"kind": kind, "id": id}})),
    }
    Ok(ExitCode::SUCCESS)
}

/// Encode one query string value.
fn query_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Encode one URL path segment.
pub(super) fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
