//! HTTP/1.1 downloads with reqwest. One [`reqwest::Client`] per simulated device, so each device
//! has its own connection (kept alive between downloads unless `fresh_connections`).

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::target::{Item, Target, Verifier};

/// One device's HTTP client.
pub(crate) struct HttpClient {
    client: reqwest::Client,
    base: String,
    user: Option<String>,
    password: Option<String>,
}

/// Builds a reqwest client for one device.
pub(crate) fn build_client(target: &Target) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(target.timeout)
        .connect_timeout(target.timeout.min(std::time::Duration::from_secs(10)))
        .tcp_nodelay(true);
    if target.fresh_connections {
        b = b.pool_max_idle_per_host(0);
    }
    b.build()
        .map_err(|e| Error::Config(format!("http client: {e}")))
}

impl HttpClient {
    pub(crate) fn new(target: &Target) -> Result<Self> {
        Ok(Self {
            client: build_client(target)?,
            base: target.url.trim_end_matches('/').to_string(),
            user: target.user.clone(),
            password: target.password.clone(),
        })
    }

    /// GET one item, hashing the body as it streams; returns the body size.
    pub(crate) async fn fetch(&mut self, item: &Item) -> Result<u64> {
        let url = format!("{}/{}", self.base, item.path.trim_start_matches('/'));
        let mut req = self.client.get(&url);
        if let Some(u) = &self.user {
            req = req.basic_auth(u, self.password.as_deref());
        }
        let resp = req.send().await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::NotFound(url));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::Auth(format!("{url}: {status}")));
        }
        if status != reqwest::StatusCode::OK {
            return Err(Error::Status(format!("{url}: {status}")));
        }
        let mut v = Verifier::default();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            v.update(&chunk?);
        }
        let want = item
            .sha256
            .as_deref()
            .ok_or_else(|| Error::Config(format!("no digest for {}", item.path)))?;
        v.finish(&item.path, want, item.size)
    }
}
