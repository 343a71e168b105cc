//! A minimal FTP client speaking raw commands, to check exact replies.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// One control connection.
pub struct Ftp {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    addr: SocketAddr,
}

/// A reply: code and full text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Ftp {
    /// Connect and read the greeting.
    pub async fn connect(addr: SocketAddr) -> (Self, Reply) {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        let mut f = Self {
            r: BufReader::new(r),
            w,
            addr,
        };
        let greeting = f.reply().await;
        (f, greeting)
    }

    /// Connect and log in (asserting success).
    pub async fn login(addr: SocketAddr, user: &str, pass: &str) -> Self {
        let (mut f, g) = Self::connect(addr).await;
        assert_eq!(g.code, 220, "{g:?}");
        let r = f.cmd(&format!("USER {user}")).await;
        assert_eq!(r.code, 331, "{r:?}");
        let r = f.cmd(&format!("PASS {pass}")).await;
        assert_eq!(r.code, 230, "login {user}: {r:?}");
        f
    }

    /// Read one (possibly multi-line) reply.
    pub async fn reply(&mut self) -> Reply {
        let mut text = String::new();
        let mut line = String::new();
        self.r.read_line(&mut line).await.unwrap();
        assert!(line.len() >= 3, "short reply {line:?}");
        let code: u16 = line[..3].parse().unwrap();
        text.push_str(&line);
        if line.as_bytes().get(3) == Some(&b'-') {
            loop {
                line.clear();
                let n = self.r.read_line(&mut line).await.unwrap();
                assert!(n > 0, "connection closed inside a multi-line reply");
                text.push_str(&line);
                if line.starts_with(&format!("{code} ")) {
                    break;
                }
            }
        }
        Reply { code, text }
    }

    /// Read the control connection until the server closes it; returns what it sent after the
    /// last reply read (e.g. the reply announcing the close).
    pub async fn read_until_closed(&mut self) -> String {
        let mut rest = Vec::new();
        self.r.read_to_end(&mut rest).await.unwrap();
        String::from_utf8_lossy(&rest).into_owned()
    }

    /// Send a command and read its reply.
    pub async fn cmd(&mut self, c: &str) -> Reply {
        self.w
            .write_all(format!("{c}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// EPSV, then run `c` (RETR, LIST, MLSD, NLST, STOR…) over the data connection. Returns the
    /// preliminary reply, the data received and the final reply (`None` when the preliminary
    /// reply already refused).
    pub async fn data_cmd(
        &mut self,
        c: &str,
        upload: Option<&[u8]>,
    ) -> (Reply, Vec<u8>, Option<Reply>) {
        let r = self.cmd("EPSV").await;
        assert_eq!(r.code, 229, "{r:?}");
        let port: u16 = r
            .text
            .split("|||")
            .nth(1)
            .and_then(|s| s.split('|').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("EPSV reply {r:?}"));
        let mut data = TcpStream::connect((self.addr.ip(), port)).await.unwrap();
        let pre = self.cmd(c).await;
        if pre.code >= 400 {
            return (pre, Vec::new(), None);
        }
        let mut buf = Vec::new();
        if let Some(bytes) = upload {
            let _ = data.write_all(bytes).await;
            let _ = data.shutdown().await;
        } else {
            data.read_to_end(&mut buf).await.unwrap();
        }
        drop(data);
        let fin = self.reply().await;
        (pre, buf, Some(fin))
    }

    /// Download `path` (asserting success).
    pub async fn retr(&mut self, path: &str) -> Vec<u8> {
        let (pre, data, fin) = self.data_cmd(&format!("RETR {path}"), None).await;
        assert_eq!(pre.code, 150, "RETR {path}: {pre:?}");
        let fin = fin.unwrap();
        assert_eq!(fin.code, 226, "RETR {path}: {fin:?}");
        data
    }
}
