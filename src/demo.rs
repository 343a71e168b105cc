//! `sitecast demo`: an origin and one site on loopback, with sample content, until Ctrl-C.
//!
//! Everything runs in this process on free ports. State lives in DIR (default
//! `./sitecast-demo-data`) and survives restarts: the edge stays enrolled, the demo user keeps
//! its password, the sample is re-uploaded only if it changed (the origin dedups it anyway).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::json;
use sitecast_edge::EdgeConfig;
use sitecast_origin::OriginConfig;
use tokio_util::sync::CancellationToken;

use crate::ctl::{encode_path, Client};
use crate::demo_image::{SAMPLE_REPO, SAMPLE_TAG};

const SITE: &str = "demo-site";
const NODE: &str = "demo-node";
const USER: &str = "demo";
const SAMPLE_PATH: &str = "/firmware/demo-ap/1.0.0/fw.bin";
const SAMPLE_LEN: usize = 16 << 20;

/// `sitecast demo` arguments.
#[derive(Args)]
pub(crate) struct DemoArgs {
    /// State directory, kept across runs.
    #[arg(long, default_value = "sitecast-demo-data")]
    dir: PathBuf,
    /// Write the endpoints and credentials here as KEY=VALUE lines once everything is ready.
    #[arg(long)]
    env_file: Option<PathBuf>,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    crate::init_tracing();
    let dir = absolute(&args.dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cancel = CancellationToken::new();
    crate::cancel_on_signals(cancel.clone());

    // Origin.
    let origin_cfg = OriginConfig {
        data_dir: dir.join("origin"),
        api_listen: "127.0.0.1:0".parse()?,
        quic_listen: "127.0.0.1:0".parse()?,
        registry_listen: "127.0.0.1:0".parse()?,
        ..OriginConfig::default()
    }
    .validate()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let origin = tokio::spawn(sitecast_origin::run(origin_cfg, cancel.clone(), tx));
    let ready = rx.await.context("the origin stopped before it was ready")?;
    let token = std::fs::read_to_string(&ready.admin_token_file)
        .with_context(|| format!("reading {}", ready.admin_token_file.display()))?
        .trim()
        .to_owned();
    let api = format!("http://{}", ready.api);
    let client = Client::new(&api, Some(token.clone()), None)?;

    // Site, user, grant, sample.
    let join_token = ensure_site(&client, &dir).await?;
    let password = ensure_user(&client, &dir).await?;
    ensure_grant(&client).await?;
    let sample = dir.join("sample-fw.bin");
    let sample_sha = write_sample(&sample)?;
    client
        .upload(&sample, SAMPLE_PATH, |_| {})
        .await
        .context("uploading the sample firmware")?;
    let image_digest = crate::demo_image::write(&dir.join("sample-image"))?;
    let reg = crate::ctl::layout::Registry::new(&ready.registry.to_string(), token.clone(), None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::ctl::layout::push(&reg, &dir.join("sample-image"), SAMPLE_REPO)
        .await
        .map_err(|e| anyhow::anyhow!("pushing the sample image: {e}"))?;

    // Edge.
    let edge_cfg = EdgeConfig {
        data_dir: dir.join("edge"),
        origin: Some(ready.quic.to_string()),
        join_token,
        node: NODE.to_owned(),
        http_listen: "127.0.0.1:0".parse()?,
        metrics_listen: "127.0.0.1:0".parse()?,
        ftp: sitecast_edge::FtpConfig {
            listen: "127.0.0.1:0".parse()?,
            ..Default::default()
        },
        sftp: sitecast_edge::SftpConfig {
            listen: "127.0.0.1:0".parse()?,
            ..Default::default()
        },
        oci: sitecast_edge::OciConfig {
            listen: "127.0.0.1:0".parse()?,
            ..Default::default()
        },
        ..EdgeConfig::default()
    }
    .validate()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let edge = tokio::spawn(sitecast_edge::run(edge_cfg, cancel.clone(), tx));
    let edge_ready = rx.await.context("the edge stopped before it was ready")?;

    // Push and wait.
    let push = client
        .post(
            "/api/v1/pushes",
            &json!({"content": [SAMPLE_PATH], "images": [format!("{SAMPLE_REPO}:{SAMPLE_TAG}")], "sites": [SITE]}),
        )
        .await
        .context("creating the push")?;
    let id = crate::ctl::output_id(&push["id"]);
    wait_complete(&client, &id, &cancel).await?;

    let http = edge_ready.http.to_string();
    let ftp = edge_ready.ftp.map(|a| a.to_string()).unwrap_or_default();
    let sftp = edge_ready.sftp.map(|a| a.to_string()).unwrap_or_default();
    let mirror = edge_ready.oci.map(|a| a.to_string()).unwrap_or_default();
    let image = format!("{SAMPLE_REPO}:{SAMPLE_TAG}");
    let short_image = format!(
        "{}:{SAMPLE_TAG}",
        SAMPLE_REPO.trim_start_matches("docker.io/")
    );
    let sftp_port = edge_ready.sftp.map(|a| a.port()).unwrap_or_default();
    let ftp_host = edge_ready
        .ftp
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let ftp_port = edge_ready.ftp.map(|a| a.port()).unwrap_or_default();
    let sample_name = SAMPLE_PATH.rsplit('/').next().unwrap_or("sample-fw.bin");
    let env = [
        ("SITECAST_API", api.clone()),
        ("SITECAST_TOKEN", token.clone()),
        ("SITECAST_ORIGIN_REGISTRY", ready.registry.to_string()),
        ("SITECAST_SITE", SITE.to_owned()),
        ("SITECAST_EDGE_HTTP", http.clone()),
        ("SITECAST_EDGE_FTP", ftp.clone()),
        ("SITECAST_EDGE_SFTP", sftp.clone()),
        ("SITECAST_DEMO_USER", USER.to_owned()),
        ("SITECAST_DEMO_PASSWORD", password.clone()),
        ("SITECAST_SAMPLE_PATH", SAMPLE_PATH.to_owned()),
        ("SITECAST_SAMPLE_SHA256", sample_sha.clone()),
        ("SITECAST_EDGE_REGISTRY", mirror.clone()),
        ("SITECAST_SAMPLE_IMAGE", image.clone()),
        ("SITECAST_SAMPLE_IMAGE_DIGEST", image_digest.clone()),
    ];
    if let Some(f) = &args.env_file {
        let mut text = String::new();
        for (k, v) in &env {
            let _ = writeln!(text, "{k}={v}");
        }
        write_atomic(f, text.as_bytes())?;
    }
    println!(
        "\nsitecast demo is running (state in {dir}). Ctrl-C to stop.\n\n\
         origin REST API   {api}   (admin token in {tokfile})\n\
         origin registry   {registry}   (OCI; the admin token is the password)\n\
         edge HTTP         http://{http}\n\
         edge FTP          ftp://{ftp}\n\
         edge SFTP         {sftp}\n\
         edge registry     {mirror}   (OCI mirror; {image} is pushed, anyone may pull it)\n\
         edge metrics      http://{metrics}/metrics\n\n\
         Try:\n\
         \x20 curl -u {USER}:{password} -O http://{http}{SAMPLE_PATH}\n\
         \x20 curl -u {USER}:{password} -O ftp://{ftp}{SAMPLE_PATH}\n\
         \x20 busybox ftpget -u {USER} -p {password} -P {ftp_port} {ftp_host} {sample_name} {SAMPLE_PATH}\n\
         \x20 sftp -P {sftp_port} {USER}@127.0.0.1:{SAMPLE_PATH} .   (password: {password})\n\
         \x20 curl -u {USER}:{password} -H 'Accept: application/json' http://{http}/firmware/\n\
         \x20 curl -u {USER}:{password} -r 0-1023 http://{http}{SAMPLE_PATH} | xxd | head\n\
         \x20 export SITECAST_API={api} SITECAST_TOKEN={token}\n\
         \x20 {exe} ctl artifact list\n\
         \x20 {exe} ctl push show {id}\n\
         \x20 skopeo copy --dest-tls-verify=false --dest-creds sitecast:{token} oci:LAYOUT:TAG docker://{registry}/docker.io/library/NAME:TAG\n\
         \x20 skopeo inspect --tls-verify=false docker://{mirror}/{short_image}\n\
         \x20 ctr images pull --plain-http {mirror}/{short_image}\n\
         \x20 # containerd through the mirror: /etc/containerd/certs.d/docker.io/hosts.toml\n\
         \x20 #   server = \"https://registry-1.docker.io\"\n\
         \x20 #   [host.\"http://{mirror}\"]\n\
         \x20 #     capabilities = [\"pull\", \"resolve\"]\n\
         \x20 # then: ctr images pull --hosts-dir /etc/containerd/certs.d {image}\n\n\
         The sample's SHA-256 is {sample_sha}; the sample image is {image_digest}.",
        dir = dir.display(),
        tokfile = ready.admin_token_file.display(),
        registry = ready.registry,
        metrics = edge_ready.metrics,
        // The binary that is running, so the hint works from a fresh clone (`cargo run`) too.
        exe = std::env::current_exe()
            .map_or_else(|_| "sitecast".to_owned(), |p| p.display().to_string()),
    );

    cancel.cancelled().await;
    let (o, e) = tokio::join!(origin, edge);
    o.context("origin task panicked")??;
    e.context("edge task panicked")??;
    Ok(ExitCode::SUCCESS)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_owned())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// The site exists afterwards; returns a join token if the edge still has to enroll.
async fn ensure_site(c: &Client, dir: &Path) -> anyhow::Result<Option<String>> {
    let enrolled = dir.join("edge/identity/node.pem").exists();
    match c.get(&format!("/api/v1/sites/{SITE}")).await {
        Ok(_) if enrolled => Ok(None),
        Ok(_) => {
            let v = c
                .post(&format!("/api/v1/sites/{SITE}/join-token"), &json!({}))
                .await?;
            Ok(v["join_token"].as_str().map(str::to_owned))
        }
        Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
            let v = c
                .post(
                    "/api/v1/sites",
                    &json!({"name": SITE, "labels": {"env": "demo"}}),
                )
                .await?;
            Ok(v["join_token"].as_str().map(str::to_owned))
        }
        Err(e) => Err(e.into()),
    }
}

/// The demo user exists with the password kept in DIR.
async fn ensure_user(c: &Client, dir: &Path) -> anyhow::Result<String> {
    let file = dir.join("demo-password");
    if let Ok(p) = std::fs::read_to_string(&file) {
        return Ok(p.trim().to_owned());
    }
    let password: String = {
        use rand::Rng as _;
        rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(20)
            .map(char::from)
            .collect()
    };
    let _ = c.delete(&format!("/api/v1/users/{USER}")).await;
    c.post(
        "/api/v1/users",
        &json!({"name": USER, "password": password}),
    )
    .await
    .context("creating the demo user")?;
    write_atomic(&file, password.as_bytes())?;
    Ok(password)
}

async fn ensure_grant(c: &Client) -> anyhow::Result<()> {
    let grants = c.get("/api/v1/grants").await?;
    let exists = grants["grants"].as_array().is_some_and(|gs| {
        gs.iter()
            .any(|g| g["user"] == USER && g["path"] == "/firmware")
    });
    if !exists {
        c.post(
            "/api/v1/grants",
            &json!({"user": USER, "path": "/firmware", "site": SITE, "read": true, "list": true}),
        )
        .await
        .context("granting the demo user")?;
    }
    // Anyone at the site may pull the sample image (containerd and skopeo without credentials).
    let image_path = format!("/oci/{SAMPLE_REPO}");
    let exists = grants["grants"].as_array().is_some_and(|gs| {
        gs.iter()
            .any(|g| g["user"].is_null() && g["path"] == image_path.as_str())
    });
    if !exists {
        c.post(
            "/api/v1/grants",
            &json!({"anonymous": true, "path": image_path, "site": SITE, "read": true, "list": false}),
        )
        .await
        .context("granting anonymous pulls of the sample image")?;
    }
    Ok(())
}

/// A deterministic 16 MiB "firmware" (BLAKE3 XOF of a fixed key); returns its SHA-256.
fn write_sample(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let mut data = vec![0u8; SAMPLE_LEN];
    blake3::Hasher::new()
        .update(b"sitecast demo firmware 1.0.0")
        .finalize_xof()
        .fill(&mut data);
    data[..16].copy_from_slice(b"SCFW1\0demo-ap\0\0\0");
    let sha = hex::encode(sha2::Sha256::digest(&data));
    if std::fs::metadata(path).map(|m| m.len()).ok() != Some(SAMPLE_LEN as u64) {
        write_atomic(path, &data)?;
    }
    Ok(sha)
}

fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

async fn wait_complete(c: &Client, id: &str, cancel: &CancellationToken) -> anyhow::Result<()> {
    let path = format!("/api/v1/pushes/{}", encode_path(id).trim_start_matches('/'));
    loop {
        let url = format!("{path}?wait_ms=5000");
        let v = tokio::select! {
            v = c.get(&url) => v?,
            () = cancel.cancelled() => bail!("interrupted while waiting for the push"),
        };
        match v["state"].as_str() {
            Some("complete") => return Ok(()),
            Some("failed") => bail!("the demo push failed: {}", v["sites"]),
            _ => {}
        }
    }
}
