//! The FTP server against real clients (busybox ftpget, curl, lftp) and a raw control
//! connection for exact replies. Needs the clients from scripts/install-test-deps.sh.
#![allow(clippy::missing_panics_doc)]

mod common;

use std::time::{Duration, Instant};

use common::ftp::Ftp;
use common::{content, pw, run, sha, start, T};
use tokio::process::Command;

fn curl() -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "50"]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_ftpget_downloads_a_file() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let out = edge.path("a.bin");
        let o = run(Command::new("busybox").args([
            "ftpget",
            "-u",
            "alice",
            "-p",
            pw("alice"),
            "-P",
            &edge.ftp.port().to_string(),
            "127.0.0.1",
            out.to_str().unwrap(),
            "/fw/a.bin",
        ]))
        .await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            sha(&std::fs::read(&out).unwrap()),
            sha(&content("/fw/a.bin"))
        );
        // Relative to the login directory (the root), as devices usually write it.
        let out = edge.path("readme.txt");
        let o = run(Command::new("busybox").args([
            "ftpget",
            "-P",
            &edge.ftp.port().to_string(),
            "127.0.0.1",
            out.to_str().unwrap(),
            "pub/readme.txt",
        ]))
        .await;
        assert!(
            o.status.success(),
            "anonymous: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(std::fs::read(&out).unwrap(), content("/pub/readme.txt"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_epsv_pasv_resume_and_listing() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let url = format!("ftp://alice:{}@{}/fw/a.bin", pw("alice"), edge.ftp);
        let want = content("/fw/a.bin");
        for (name, extra) in [("epsv.bin", None), ("pasv.bin", Some("--disable-epsv"))] {
            let out = edge.path(name);
            let mut c = curl();
            c.args(["-o", out.to_str().unwrap()]);
            if let Some(x) = extra {
                c.arg(x);
            }
            let o = run(c.arg(&url)).await;
            assert!(
                o.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(sha(&std::fs::read(&out).unwrap()), sha(&want), "{name}");
        }
        // Resume: a partial file (cut inside a chunk) completed with `-C -` (REST + RETR).
        let out = edge.path("resume.bin");
        std::fs::write(&out, &want[..123_457]).unwrap();
        let o = run(curl().args(["-C", "-", "-o", out.to_str().unwrap(), &url])).await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(sha(&std::fs::read(&out).unwrap()), sha(&want));
        // Directory listing (LIST) and names only (NLST).
        let o = run(curl().arg(format!("ftp://alice:{}@{}/fw/", pw("alice"), edge.ftp))).await;
        let list = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success());
        for name in ["a.bin", "ap", "other", "empty.bin"] {
            assert!(list.contains(name), "{list}");
        }
        assert!(
            list.lines()
                .any(|l| l.starts_with('d') && l.ends_with("ap")),
            "{list}"
        );
        let o = run(curl().args([
            "-l",
            &format!("ftp://alice:{}@{}/fw/", pw("alice"), edge.ftp),
        ]))
        .await;
        let mut names: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        names.sort();
        assert_eq!(names, ["a.bin", "ap", "empty.bin", "other"]);
        // An empty file downloads as empty.
        let out = edge.path("empty.bin");
        let o = run(curl().args([
            "-o",
            out.to_str().unwrap(),
            &format!("ftp://alice:{}@{}/fw/empty.bin", pw("alice"), edge.ftp),
        ]))
        .await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(&out).unwrap().is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_mirrors_a_folder() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let out = edge.path("mirror");
        let script = format!(
            "set net:max-retries 1; set net:timeout 20; mirror /fw {}; quit",
            out.display()
        );
        let o = run(Command::new("lftp").args([
            "-u",
            &format!("alice,{}", pw("alice")),
            "-p",
            &edge.ftp.port().to_string(),
            "-e",
            &script,
            "127.0.0.1",
        ]))
        .await;
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        for (rel, path) in [
            ("a.bin", "/fw/a.bin"),
            ("ap/x.bin", "/fw/ap/x.bin"),
            ("other/y.bin", "/fw/other/y.bin"),
            ("empty.bin", "/fw/empty.bin"),
        ] {
            let got = std::fs::read(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(sha(&got), sha(&content(path)), "{rel}");
        }
        // bob may read /fw/ap but list nothing: the mirror of /fw/ap gets nothing and fails.
        let out = edge.path("bob");
        let o = run(Command::new("lftp").args([
            "-u",
            &format!("bob,{}", pw("bob")),
            "-p",
            &edge.ftp.port().to_string(),
            "-e",
            &format!(
                "set net:max-retries 1; mirror /fw/ap {}; quit",
                out.display()
            ),
            "127.0.0.1",
        ]))
        .await;
        assert!(!out.join("x.bin").exists());
        assert!(!o.status.success());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_530() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        for (user, pass) in [("alice", "wrong"), ("nobody", "x")] {
            let (mut f, _) = Ftp::connect(edge.ftp).await;
            assert_eq!(f.cmd(&format!("USER {user}")).await.code, 331);
            let r = f.cmd(&format!("PASS {pass}")).await;
            assert_eq!(r.code, 530, "{r:?}");
            // Not logged in: nothing is served.
            assert_eq!(f.cmd("SIZE /pub/readme.txt").await.code, 530);
        }
        // curl reports a refused login (exit 67).
        let o = run(curl().arg(format!("ftp://alice:wrong@{}/fw/a.bin", edge.ftp))).await;
        assert_eq!(
            o.status.code(),
            Some(67),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Anonymous works only where anonymous has grants.
        let mut f = Ftp::login(edge.ftp, "anonymous", "me@example.com").await;
        assert_eq!(f.cmd("SIZE /pub/readme.txt").await.code, 213);
        let r = f.cmd("SIZE /fw/a.bin").await;
        assert_eq!(r.code, 550, "{r:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn repeated_failures_lock_the_address_out() {
    tokio::time::timeout(T, async {
        let edge = start(|c| c.ftp.login_failures_before_lockout = 3).await;
        for _ in 0..3 {
            let (mut f, _) = Ftp::connect(edge.ftp).await;
            f.cmd("USER alice").await;
            assert_eq!(f.cmd("PASS wrong").await.code, 530);
        }
        // Locked out: the right password is refused too.
        let (mut f, _) = Ftp::connect(edge.ftp).await;
        f.cmd("USER alice").await;
        assert_eq!(f.cmd(&format!("PASS {}", pw("alice"))).await.code, 530);
        // HTTP (its own per-minute limit, not reached) is unaffected.
        let r = reqwest::Client::new()
            .get(format!("http://{}/fw/a.bin", edge.http))
            .basic_auth("alice", Some(pw("alice")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_per_address_are_limited() {
    tokio::time::timeout(T, async {
        let edge = start(|c| c.ftp.max_connections_per_ip = 2).await;
        let (_a, g1) = Ftp::connect(edge.ftp).await;
        let (_b, g2) = Ftp::connect(edge.ftp).await;
        assert_eq!((g1.code, g2.code), (220, 220));
        let (_c, g3) = Ftp::connect(edge.ftp).await;
        assert_eq!(g3.code, 421, "{g3:?}");
        drop(_a);
        // The slot is released when the session ends (awaited by polling the greeting).
        let mut code = 0;
        for _ in 0..100 {
            let (_d, g) = Ftp::connect(edge.ftp).await;
            code = g.code;
            if code == 220 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(code, 220);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn idle_control_connection_is_closed() {
    tokio::time::timeout(T, async {
        let edge = start(|c| c.ftp.idle_timeout = Duration::from_secs(1)).await;
        let mut f = Ftp::login(edge.ftp, "alice", pw("alice")).await;
        assert_eq!(f.cmd("NOOP").await.code, 200);
        // Send nothing more: the server says so and closes (the default would wait 5 min).
        // libunftp answers a timeout with 221, not the 421 vsftpd and ProFTPD send.
        let idle_since = Instant::now();
        let rest = tokio::time::timeout(Duration::from_secs(10), f.read_until_closed())
            .await
            .expect("the server closes an idle control connection (idle_timeout = 1s)");
        let idle = idle_since.elapsed();
        assert!(
            rest.starts_with("221 ") && rest.ends_with("\r\n") && rest.lines().count() == 1,
            "{rest:?}"
        );
        assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn commands_sizes_times_and_listings() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let mut f = Ftp::login(edge.ftp, "alice", pw("alice")).await;
        let feat = f.cmd("FEAT").await;
        assert_eq!(feat.code, 211);
        for x in ["SIZE", "MDTM", "REST STREAM", "EPSV", "MLST"] {
            assert!(feat.text.contains(x), "{feat:?}");
        }
        assert_eq!(f.cmd("TYPE I").await.code, 200);
        assert_eq!(f.cmd("TYPE A").await.code, 200);
        assert_eq!(f.cmd("TYPE I").await.code, 200);
        assert_eq!(f.cmd("NOOP").await.code, 200);
        assert_eq!(f.cmd("PWD").await.text.trim(), "257 \"/\"");
        let r = f.cmd("SIZE /fw/a.bin").await;
        assert_eq!(r.text.trim(), "213 700000");
        let r = f.cmd("MDTM /fw/a.bin").await;
        assert_eq!(r.text.trim(), "213 20231114221320");
        assert_eq!(f.cmd("CWD /fw").await.code, 250);
        assert_eq!(f.cmd("SIZE a.bin").await.text.trim(), "213 700000");
        assert_eq!(f.cmd("CWD ap").await.code, 250);
        assert_eq!(f.cmd("PWD").await.text.trim(), "257 \"/fw/ap\"");
        assert_eq!(f.cmd("CDUP").await.code, 250);
        assert_eq!(f.cmd("PWD").await.text.trim(), "257 \"/fw\"");
        assert_eq!(f.cmd("CWD nonexistent").await.code, 550);
        assert_eq!(f.cmd("CWD a.bin").await.code, 550);
        // libunftp hands MLST its argument without the working directory: use absolute paths.
        let r = f.cmd("MLST /fw/a.bin").await;
        assert_eq!(r.code, 250, "{r:?}");
        assert!(
            r.text.contains("type=file") && r.text.contains("size=700000"),
            "{r:?}"
        );
        let (_, listing, fin) = f.data_cmd("MLSD", None).await;
        assert_eq!(fin.unwrap().code, 226);
        let listing = String::from_utf8(listing).unwrap();
        assert!(
            listing.contains("type=dir") && listing.contains(" ap\r\n"),
            "{listing}"
        );
        assert!(
            listing.contains("size=700000") && listing.contains(" a.bin\r\n"),
            "{listing}"
        );
        let (_, names, _) = f.data_cmd("NLST", None).await;
        assert_eq!(
            String::from_utf8(names).unwrap(),
            "a.bin\r\nap\r\nempty.bin\r\nother\r\n"
        );
        // RETR with REST, in the middle of a chunk.
        assert_eq!(f.cmd("REST 650000").await.code, 350);
        let tail = f.retr("a.bin").await;
        assert_eq!(tail, content("/fw/a.bin")[650_000..]);
        // REST past the end sends nothing.
        assert_eq!(f.cmd("REST 900000").await.code, 350);
        assert!(f.retr("a.bin").await.is_empty());
        assert_eq!(f.cmd("PASV").await.code, 227);
        // Active mode is off by default.
        let r = f.cmd("PORT 127,0,0,1,200,10").await;
        assert!(r.code >= 500, "{r:?}");
        assert_eq!(f.cmd("QUIT").await.code, 221);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn writes_are_refused() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let mut f = Ftp::login(edge.ftp, "alice", pw("alice")).await;
        let (pre, _, fin) = f.data_cmd("STOR /fw/new.bin", Some(b"hello")).await;
        let code = fin.map_or(pre.code, |r| r.code);
        assert_eq!(code, 550, "STOR");
        let (pre, _, fin) = f.data_cmd("APPE /fw/a.bin", Some(b"hello")).await;
        assert_eq!(fin.map_or(pre.code, |r| r.code), 550, "APPE");
        for c in ["DELE /fw/a.bin", "MKD /fw/new", "RMD /fw/ap", "XMKD /fw/x"] {
            let r = f.cmd(c).await;
            assert_eq!(r.code, 550, "{c}: {r:?}");
        }
        let r = f.cmd("RNFR /fw/a.bin").await;
        if r.code == 350 {
            let r = f.cmd("RNTO /fw/b.bin").await;
            assert_eq!(r.code, 550, "RNTO: {r:?}");
        } else {
            assert_eq!(r.code, 550, "RNFR: {r:?}");
        }
        for c in ["SITE CHMOD 777 /fw/a.bin", "SITE MD5 /fw/a.bin", "BOGUS x"] {
            let r = f.cmd(c).await;
            assert!((500..=504).contains(&r.code) || r.code == 550, "{c}: {r:?}");
        }
        // Nothing changed.
        assert_eq!(f.cmd("SIZE /fw/a.bin").await.text.trim(), "213 700000");
        assert_eq!(f.cmd("SIZE /fw/new.bin").await.code, 550);
        // curl upload fails too.
        let src = edge.path("up.bin");
        std::fs::write(&src, b"x").unwrap();
        let o = run(curl().args([
            "-T",
            src.to_str().unwrap(),
            &format!("ftp://alice:{}@{}/fw/up.bin", pw("alice"), edge.ftp),
        ]))
        .await;
        assert!(!o.status.success());
        assert!(edge
            .core
            .catalog
            .lookup(&"/fw/up.bin".parse().unwrap())
            .is_none());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn traversal_stays_inside_the_catalog() {
    tokio::time::timeout(T, async {
        let edge = start(|_| {}).await;
        let mut f = Ftp::login(edge.ftp, "anonymous", "x").await;
        // Up from the root stays at the root.
        assert_eq!(f.cmd("CWD /pub").await.code, 250);
        assert_eq!(
            f.cmd("SIZE ../../../../pub/readme.txt").await.text.trim(),
            "213 20"
        );
        assert_eq!(f.cmd("CWD ../../..").await.code, 250);
        assert_eq!(f.cmd("SIZE pub/readme.txt").await.text.trim(), "213 20");
        // Out of /pub into /fw: anonymous has no grant there.
        assert_eq!(f.cmd("SIZE /pub/../fw/a.bin").await.code, 550);
        for bad in [
            "RETR ../../../../etc/passwd",
            "RETR /etc/passwd",
            "RETR ..\\..\\etc\\passwd",
            "RETR ~/../../etc/passwd",
            "RETR //etc//passwd",
            "RETR %2e%2e/%2e%2e/etc/passwd",
            "RETR /pub/%00",
        ] {
            let (pre, data, fin) = f.data_cmd(bad, None).await;
            let code = fin.map_or(pre.code, |r| r.code);
            assert!(code >= 550, "{bad}: {code}");
            assert!(data.is_empty(), "{bad}");
        }
        let r = f.cmd("SIZE ..\\pub\\readme.txt").await;
        assert!(r.code >= 550, "{r:?}");
        // `~` is an ordinary (absent) name inside the catalog.
        assert_eq!(f.cmd("CWD ~").await.code, 550);
        assert_eq!(f.cmd("PWD").await.text.trim(), "257 \"/pub/../../..\"");
        assert_eq!(f.cmd("SIZE pub/readme.txt").await.text.trim(), "213 20");
        // curl with encoded dots.
        let o = run(curl().arg(format!("ftp://{}/pub/%2e%2e/%2e%2e/etc/passwd", edge.ftp))).await;
        assert!(!o.status.success());
        assert!(!String::from_utf8_lossy(&o.stdout).contains("root:"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_downloads_are_identical() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let edge = start(|c| c.ftp.max_connections_per_ip = 256).await;
        let url = format!("ftp://alice:{}@{}/fw/a.bin", pw("alice"), edge.ftp);
        let want = sha(&content("/fw/a.bin"));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let url = url.clone();
                tokio::spawn(async move {
                    let mut c = curl();
                    c.args(["--retry", "0", &url]);
                    c.stdin(std::process::Stdio::null()).kill_on_drop(true);
                    let o = c.output().await.unwrap();
                    (i, o)
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            let (i, o) = t.await.unwrap();
            assert!(
                o.status.success(),
                "download {i}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(sha(&o.stdout), want, "download {i}");
            ok += 1;
        }
        assert_eq!(ok, 200);
        // One argon2 verification for all of them.
        assert_eq!(edge.core.auth.verifications(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn explicit_ftps_with_a_configured_certificate() {
    tokio::time::timeout(T, async {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.path().join("ftps.pem");
        let key = dir.path().join("ftps.key");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        let edge = start(|c| {
            c.ftp.ftps_cert = Some(cert.clone());
            c.ftp.ftps_key = Some(key.clone());
        })
        .await;
        let (mut f, _) = Ftp::connect(edge.ftp).await;
        assert_eq!(f.cmd("AUTH TLS").await.code, 234);
        drop(f);
        let out = edge.path("tls.bin");
        let o = run(curl().args([
            "--ssl-reqd",
            "-k",
            "-o",
            out.to_str().unwrap(),
            &format!("ftp://alice:{}@{}/fw/a.bin", pw("alice"), edge.ftp),
        ]))
        .await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            sha(&std::fs::read(&out).unwrap()),
            sha(&content("/fw/a.bin"))
        );
    })
    .await
    .unwrap();
}

/// PASV and EPSV hand out ports from `ftp.passive_ports`, and PASV announces
/// `ftp.advertised_address` (the edge's address as seen from behind NAT) instead of its own.
#[tokio::test]
async fn passive_ports_and_the_advertised_address() {
    tokio::time::timeout(T, async {
        let edge = start(|c| {
            c.ftp.passive_ports = "25100-25109".to_owned().try_into().unwrap();
            c.ftp.advertised_address = Some("10.9.8.7".to_owned());
        })
        .await;
        let mut f = Ftp::login(edge.ftp, "alice", pw("alice")).await;
        for _ in 0..3 {
            let r = f.cmd("PASV").await;
            assert_eq!(r.code, 227, "{r:?}");
            let inner = r
                .text
                .split(['(', ')'])
                .nth(1)
                .expect("227 (h1,h2,h3,h4,p1,p2)");
            let n: Vec<u16> = inner
                .split(',')
                .map(|x| x.trim().parse().unwrap())
                .collect();
            assert_eq!(&n[..4], &[10, 9, 8, 7], "{r:?}");
            let port = n[4] * 256 + n[5];
            assert!((25100..=25109).contains(&port), "{r:?}");
            let r = f.cmd("EPSV").await;
            assert_eq!(r.code, 229, "{r:?}");
            let port: u16 = r.text.split('|').nth(3).unwrap().parse().unwrap();
            assert!((25100..=25109).contains(&port), "{r:?}");
        }
    })
    .await
    .unwrap();
}
