//! Protocol clients. Each simulated device owns one [`Client`]; `fetch` downloads one item,
//! verifies it and returns the bytes received and the number of digests checked.

pub(crate) mod ftp;
pub(crate) mod http;
pub(crate) mod oci;
pub(crate) mod sftp;

use crate::error::Result;
use crate::target::{Item, Proto, Target};

/// Per-run state shared by every device (SSH keys loaded once).
#[derive(Clone)]
pub(crate) enum Shared {
    Plain(Target),
    Sftp(sftp::SftpShared),
}

impl Shared {
    pub(crate) fn new(target: &Target) -> Result<Self> {
        Ok(match target.proto {
            Proto::Sftp => Shared::Sftp(sftp::SftpShared::new(target)?),
            _ => Shared::Plain(target.clone()),
        })
    }
}

/// One simulated device's connection state.
pub(crate) enum Client {
    Http(http::HttpClient),
    Ftp(ftp::FtpClient),
    Sftp(sftp::SftpClient),
    Oci(oci::OciClient),
}

impl Client {
    pub(crate) fn new(shared: &Shared) -> Result<Self> {
        Ok(match shared {
            Shared::Sftp(s) => Client::Sftp(sftp::SftpClient::new(s)),
            Shared::Plain(t) => match t.proto {
                Proto::Http => Client::Http(http::HttpClient::new(t)?),
                Proto::Ftp => Client::Ftp(ftp::FtpClient::new(t)),
                Proto::Oci => Client::Oci(oci::OciClient::new(t)?),
                Proto::Sftp => Client::Sftp(sftp::SftpClient::new(&sftp::SftpShared::new(t)?)),
            },
        })
    }

    /// Downloads and verifies one item: (bytes, digests verified).
    pub(crate) async fn fetch(&mut self, item: &Item) -> Result<(u64, u64)> {
        match self {
            Client::Http(c) => c.fetch(item).await.map(|b| (b, 1)),
            Client::Ftp(c) => c.fetch(item).await.map(|b| (b, 1)),
            Client::Sftp(c) => c.fetch(item).await.map(|b| (b, 1)),
            Client::Oci(c) => c.fetch(item).await,
        }
    }
}
