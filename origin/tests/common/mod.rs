//! Starting a real origin on loopback for tests.
#![allow(dead_code)]

use std::time::Duration;

use sitecast_origin::{run, OriginConfig, OriginReady};
use tokio_util::sync::CancellationToken;

pub struct Origin {
    pub ready: OriginReady,
    pub token: String,
    pub dir: tempfile::TempDir,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), sitecast_origin::Error>>,
    pub http: reqwest::Client,
}

impl Origin {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut OriginConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = OriginConfig::local(dir.path());
        cfg.fsync = false;
        cfg.accounting_flush = Duration::from_millis(100);
        f(&mut cfg);
        let cancel = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(cfg, cancel.clone(), tx));
        let ready = rx.await.expect("origin ready");
        let token = std::fs::read_to_string(&ready.admin_token_file)
            .unwrap()
            .trim()
            .to_owned();
        Self {
            ready,
            token,
            dir,
            cancel,
            task,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ready.api)
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
