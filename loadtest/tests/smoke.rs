//! CI smoke test of the load tool binary: tiny in-process servers on 127.0.0.1 port 0 (an axum
//! HTTP server and a minimal passive-mode FTP server), 4 devices × 10 downloads, JSON report
//! checked for counts, zero errors and verified digests; a wrong digest must be reported as a
//! `digest_mismatch` failure with exit code 1. No timing assertions.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_sitecast-loadtest");

fn body() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn http_server() -> SocketAddr {
    let data = body();
    let app = axum::Router::new().route(
        "/fw/a.bin",
        axum::routing::get(move || {
            let d = data.clone();
            async move { d }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    a
}

/// A minimal FTP server: any login, TYPE, SIZE, EPSV, RETR of /fw/a.bin, 550 otherwise.
async fn ftp_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let data = body();
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220-test server\r\n220 ready\r\n")
                    .await
                    .unwrap();
                let mut pasv: Option<TcpListener> = None;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    let (verb, arg) = cmd.split_once(' ').unwrap_or((&cmd, ""));
                    let reply = match verb {
                        "USER" => "331 password please".to_string(),
                        "PASS" => "230 in".into(),
                        "TYPE" => "200 binary".into(),
                        "SIZE" if arg == "/fw/a.bin" => format!("213 {}", data.len()),
                        "SIZE" | "RETR" if arg != "/fw/a.bin" => "550 no such file".into(),
                        "EPSV" => {
                            let d = TcpListener::bind("127.0.0.1:0").await.unwrap();
                            let port = d.local_addr().unwrap().port();
                            pasv = Some(d);
                            format!("229 Entering Extended Passive Mode (|||{port}|)")
                        }
                        "RETR" => {
                            w.write_all(b"150 sending\r\n").await.unwrap();
                            let Some(d) = pasv.take() else { return };
                            let (mut ds, _) = d.accept().await.unwrap();
                            ds.write_all(&data).await.unwrap();
                            ds.shutdown().await.unwrap();
                            "226 done".into()
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => "502 not implemented".into(),
                    };
                    w.write_all(format!("{reply}\r\n").as_bytes())
                        .await
                        .unwrap();
                }
            });
        }
    });
    a
}

async fn run_tool(args: &[String]) -> (i32, Value) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {stdout} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn args(proto: &str, url: &str, digest: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "run",
        "--proto",
        proto,
        "--url",
        url,
        "--path",
        "fw/a.bin",
        "--sha256",
        digest,
        "--clients",
        "4",
        "--requests",
        "40",
        "--json",
        "--timeout",
        "20s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn assert_clean(report: &Value, n: u64, size: u64) {
    assert_eq!(report["requests"], n, "{report}");
    assert_eq!(report["ok"], n, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(
        report["errors"].as_object().map(|m| m.len()),
        Some(0),
        "{report}"
    );
    assert_eq!(report["digests_verified"], n, "{report}");
    assert_eq!(report["bytes"], n * size, "{report}");
    assert_eq!(report["latency_ms"]["n"], n, "{report}");
    assert_eq!(report["clients"], 4);
}

#[tokio::test]
async fn http_fleet_verifies_and_reports() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let a = http_server().await;
        let url = format!("http://{a}");
        let good = sha(&body());
        let (code, r) = run_tool(&args("http", &url, &good, &[])).await;
        assert_eq!(code, 0, "{r}");
        assert_clean(&r, 40, body().len() as u64);
        let (code, r) = run_tool(&args("http", &url, &good, &["--fresh"])).await;
        assert_eq!(code, 0, "{r}");
        assert_clean(&r, 40, body().len() as u64);

        let bad = "0".repeat(64);
        let (code, r) = run_tool(&args("http", &url, &bad, &[])).await;
        assert_eq!(code, 1);
        assert_eq!(r["ok"], 0, "{r}");
        assert_eq!(r["failed"], 40, "{r}");
        assert_eq!(r["errors"]["digest_mismatch"], 40, "{r}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn ftp_fleet_verifies_and_reports() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let a = ftp_server().await;
        let url = format!("ftp://{a}");
        let good = sha(&body());
        for extra in [&[][..], &["--fresh"][..]] {
            let (code, r) = run_tool(&args("ftp", &url, &good, extra)).await;
            assert_eq!(code, 0, "{r}");
            assert_clean(&r, 40, body().len() as u64);
        }
        let (code, r) = run_tool(&args("ftp", &url, &"f".repeat(64), &[])).await;
        assert_eq!(code, 1);
        assert_eq!(r["errors"]["digest_mismatch"], 40, "{r}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn missing_content_is_not_found_and_bad_flags_exit_2() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let a = http_server().await;
        let mut v = args("http", &format!("http://{a}"), &"0".repeat(64), &[]);
        let i = v.iter().position(|s| s == "fw/a.bin").unwrap();
        v[i] = "fw/missing.bin".into();
        let (code, r) = run_tool(&v).await;
        assert_eq!(code, 1);
        assert_eq!(r["errors"]["not_found"], 40, "{r}");

        let out = tokio::process::Command::new(BIN)
            .args([
                "run",
                "--proto",
                "http",
                "--url",
                "http://127.0.0.1:1",
                "--path",
                "x",
            ])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "no digest known for the path");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no expected sha256"));
    })
    .await
    .unwrap();
}
