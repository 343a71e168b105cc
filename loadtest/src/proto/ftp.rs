//! A small passive-mode FTP client (RFC 959 + RFC 2428 EPSV + RFC 3659 SIZE), enough to download
//! like a device does: greeting, `USER`/`PASS` (anonymous when no user is given), `TYPE I`,
//! `SIZE`, `EPSV` (falling back to `PASV` when refused), `RETR`, then the transfer's final reply.
//!
//! Reply codes map to errors: 530 → `auth`, 550 → `not_found` (retryable: the file may be
//! published later), other unexpected codes → `status`, unparsable lines → `protocol`.
//! The control connection is kept between downloads unless `fresh_connections`.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::target::{Item, Target, Verifier};

/// One FTP reply: code and the text of its last line.
#[derive(Debug)]
struct Reply {
    code: u16,
    text: String,
}

/// An FTP control connection after login.
struct Control {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    peer: SocketAddr,
    epsv_ok: bool,
}

impl Control {
    async fn connect(target: &Target) -> Result<Self> {
        let addr = target.authority()?;
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|source| Error::Connect {
                addr: addr.clone(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let (r, w) = stream.into_split();
        let mut c = Control {
            reader: BufReader::new(r),
            writer: w,
            peer,
            epsv_ok: true,
        };
        let greet = c.reply().await?;
        if greet.code != 220 {
            return Err(Error::Status(format!(
                "greeting {} {}",
                greet.code, greet.text
            )));
        }
        let user = target.user.as_deref().unwrap_or("anonymous");
        let pass = target.password.as_deref().unwrap_or("loadtest@sitecast");
        let r = c.cmd(&format!("USER {user}")).await?;
        match r.code {
            230 => {}
            331 | 332 => {
                let r = c.cmd(&format!("PASS {pass}")).await?;
                if r.code == 530 {
                    return Err(Error::Auth(format!("{user}: {}", r.text)));
                }
                if r.code != 230 && r.code != 202 {
                    return Err(Error::Status(format!("PASS: {} {}", r.code, r.text)));
                }
            }
            530 => return Err(Error::Auth(format!("{user}: {}", r.text))),
            _ => return Err(Error::Status(format!("USER: {} {}", r.code, r.text))),
        }
        let r = c.cmd("TYPE I").await?;
        if r.code != 200 {
            return Err(Error::Status(format!("TYPE I: {} {}", r.code, r.text)));
        }
        Ok(c)
    }

    /// Reads one (possibly multi-line) reply.
    async fn reply(&mut self) -> Result<Reply> {
        let mut line = String::new();
        let first = self.line(&mut line).await?;
        let code = parse_code(&first)?;
        if first.as_bytes().get(3) == Some(&b'-') {
            // Multi-line: ends with a line starting with the same code and a space.
            let end = format!("{code} ");
            loop {
                let l = self.line(&mut line).await?;
                if l.starts_with(&end) {
                    return Ok(Reply {
                        code,
                        text: l[4..].to_string(),
                    });
                }
            }
        }
        Ok(Reply {
            code,
            text: first.get(4..).unwrap_or("").to_string(),
        })
    }

    async fn line(&mut self, buf: &mut String) -> Result<String> {
        buf.clear();
        let n = self.reader.read_line(buf).await?;
        if n == 0 {
            return Err(Error::Protocol("control connection closed".into()));
        }
        Ok(buf.trim_end_matches(['\r', '\n']).to_string())
    }

    async fn cmd(&mut self, cmd: &str) -> Result<Reply> {
        self.writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await?;
        self.reply().await
    }

    /// Opens a passive data connection (EPSV, or PASV when EPSV is refused).
    async fn data(&mut self) -> Result<TcpStream> {
        let addr = if self.epsv_ok {
            let r = self.cmd("EPSV").await?;
            if r.code == 229 {
                Some(SocketAddr::new(self.peer.ip(), parse_epsv(&r.text)?))
            } else {
                self.epsv_ok = false;
                None
            }
        } else {
            None
        };
        let addr = match addr {
            Some(a) => a,
            None => {
                let r = self.cmd("PASV").await?;
                if r.code != 227 {
                    return Err(Error::Status(format!("PASV: {} {}", r.code, r.text)));
                }
                parse_pasv(&r.text)?
            }
        };
        let s = TcpStream::connect(addr)
            .await
            .map_err(|source| Error::Connect {
                addr: addr.to_string(),
                source,
            })?;
        Ok(s)
    }

    async fn retr(&mut self, item: &Item) -> Result<u64> {
        let path = format!("/{}", item.path.trim_start_matches('/'));
        let r = self.cmd(&format!("SIZE {path}")).await?;
        let announced = match r.code {
            213 => r.text.trim().parse::<u64>().ok(),
            550 => return Err(Error::NotFound(path)),
            _ => None, // SIZE is optional (RFC 3659)
        };
        let mut data = self.data().await?;
        let r = self.cmd(&format!("RETR {path}")).await?;
        match r.code {
            125 | 150 => {}
            550 => return Err(Error::NotFound(path)),
            530 => return Err(Error::Auth(format!("RETR {path}: {}", r.text))),
            _ => return Err(Error::Status(format!("RETR {path}: {} {}", r.code, r.text))),
        }
        let mut v = Verifier::default();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = data.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            v.update(&buf[..n]);
        }
        drop(data);
        let done = self.reply().await?;
        if done.code != 226 && done.code != 250 {
            return Err(Error::Status(format!(
                "transfer of {path}: {} {}",
                done.code, done.text
            )));
        }
        let want = item
            .sha256
            .as_deref()
            .ok_or_else(|| Error::Config(format!("no digest for {}", item.path)))?;
        v.finish(&item.path, want, item.size.or(announced))
    }
}

fn parse_code(line: &str) -> Result<u16> {
    line.get(..3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| Error::Protocol(format!("bad FTP reply line {line:?}")))
}

/// `Entering Extended Passive Mode (|||6446|)` → 6446.
fn parse_epsv(text: &str) -> Result<u16> {
    let bad = || Error::Protocol(format!("bad EPSV reply {text:?}"));
    let open = text.find('(').ok_or_else(bad)?;
    let inner = &text[open + 1..];
    let close = inner.find(')').ok_or_else(bad)?;
    let inner = &inner[..close];
    let delim = inner.chars().next().ok_or_else(bad)?;
    let parts: Vec<&str> = inner.split(delim).collect();
    // "|||port|" splits into ["", "", "", "port", ""]
    parts
        .get(3)
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(bad)
}

/// `Entering Passive Mode (127,0,0,1,70,200)` → 127.0.0.1:18120.
fn parse_pasv(text: &str) -> Result<SocketAddr> {
    let bad = || Error::Protocol(format!("bad PASV reply {text:?}"));
    let start = text.find(|c: char| c.is_ascii_digit()).ok_or_else(bad)?;
    let nums: Vec<u8> = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(6)
        .map(|s| s.parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if nums.len() != 6 {
        return Err(bad());
    }
    let ip = std::net::Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]);
    Ok(SocketAddr::new(
        ip.into(),
        u16::from(nums[4]) << 8 | u16::from(nums[5]),
    ))
}

/// One device's FTP client.
pub(crate) struct FtpClient {
    target: Target,
    control: Option<Control>,
}

impl FtpClient {
    pub(crate) fn new(target: &Target) -> Self {
        Self {
            target: target.clone(),
            control: None,
        }
    }

    /// Downloads one item (logging in first when there is no live control connection).
    pub(crate) async fn fetch(&mut self, item: &Item) -> Result<u64> {
        let mut control = match self.control.take() {
            Some(c) => c,
            None => Control::connect(&self.target).await?,
        };
        let result = control.retr(item).await;
        // Keep the connection only after a clean transfer; anything else may have left
        // the control channel mid-reply.
        let clean = matches!(
            &result,
            Ok(_) | Err(Error::NotFound(_)) | Err(Error::Digest { .. })
        );
        if clean && !self.target.fresh_connections {
            self.control = Some(control);
        } else if clean {
            let _ = control.cmd("QUIT").await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passive_replies() {
        assert_eq!(
            parse_epsv("Entering Extended Passive Mode (|||6446|)").unwrap(),
            6446
        );
        assert!(parse_epsv("Entering Extended Passive Mode").is_err());
        assert_eq!(
            parse_pasv("Entering Passive Mode (127,0,0,1,70,200).").unwrap(),
            "127.0.0.1:18120".parse().unwrap()
        );
        assert!(parse_pasv("Entering Passive Mode (127,0,0,1,70)").is_err());
        assert_eq!(parse_code("226 Transfer complete").unwrap(), 226);
        assert!(parse_code("hello").is_err());
    }
}
