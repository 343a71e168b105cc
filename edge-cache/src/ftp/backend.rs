//! The libunftp storage back-end: a read-only view of the published catalog (see
//! [`crate::vfs`]). Every path libunftp hands over (already joined to the session's working
//! directory) is normalised with [`vfs::resolve`] before anything is looked up.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use unftp_core::storage::{
    Error as FtpError, ErrorKind, Fileinfo, Metadata, Permissions, Result as FtpResult,
    StorageBackend, FEATURE_RESTART,
};

use super::auth::FtpUser;
use crate::core::Core;
use crate::vfs::{self, Content, Node, VfsError};

/// Metadata of one catalog node, as libunftp wants it.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    len: u64,
    dir: bool,
    modified: u64,
}

impl From<&Node> for Meta {
    fn from(n: &Node) -> Self {
        Self {
            len: n.len(),
            dir: n.is_dir(),
            modified: n.modified(),
        }
    }
}

impl Metadata for Meta {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_dir(&self) -> bool {
        self.dir
    }
    fn is_file(&self) -> bool {
        !self.dir
    }
    fn is_symlink(&self) -> bool {
        false
    }
    fn modified(&self) -> FtpResult<SystemTime> {
        Ok(UNIX_EPOCH + Duration::from_secs(self.modified))
    }
    fn gid(&self) -> u32 {
        0
    }
    fn uid(&self) -> u32 {
        0
    }
    fn permissions(&self) -> Permissions {
        Permissions(if self.dir { 0o555 } else { 0o444 })
    }
}

/// The read-only catalog back-end (one per FTP session).
pub(crate) struct CatalogFs {
    pub(crate) core: Arc<Core>,
}

impl fmt::Debug for CatalogFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CatalogFs")
    }
}

fn ftp_err(e: VfsError) -> FtpError {
    let kind = match &e {
        VfsError::BadPath(_) => ErrorKind::FileNameNotAllowedError,
        VfsError::Denied => ErrorKind::PermissionDenied,
        VfsError::NotFound | VfsError::IsDir => ErrorKind::PermanentFileNotAvailable,
        VfsError::NotDir => ErrorKind::PermanentDirectoryNotAvailable,
        VfsError::Internal(msg) => {
            tracing::error!(error = %msg, "ftp: cannot serve");
            ErrorKind::LocalError
        }
    };
    FtpError::new(kind, e)
}

fn read_only() -> FtpError {
    FtpError::new(
        ErrorKind::PermissionDenied,
        "this server is read-only".to_owned(),
    )
}

pub(crate) fn catalog_path(path: &Path) -> Result<sitecast_protocol::CatalogPath, VfsError> {
    let text = path.to_str().ok_or(VfsError::BadPath(
        sitecast_protocol::PathError::BadCharacter,
    ))?;
    Ok(vfs::resolve("/", text)?)
}

impl CatalogFs {
    fn stat(&self, user: &FtpUser, path: &Path) -> Result<Node, VfsError> {
        let p = catalog_path(path)?;
        vfs::stat(&self.core, user.principal(), &p)
    }
}

#[async_trait]
impl StorageBackend<FtpUser> for CatalogFs {
    type Metadata = Meta;

    fn name(&self) -> &'static str {
        "sitecast-catalog"
    }

    fn supported_features(&self) -> u32 {
        FEATURE_RESTART
    }

    async fn metadata<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> FtpResult<Meta> {
        self.stat(user, path.as_ref())
            .map(|n| Meta::from(&n))
            .map_err(ftp_err)
    }

    async fn list<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> FtpResult<Vec<Fileinfo<PathBuf, Meta>>> {
        let p = catalog_path(path.as_ref()).map_err(ftp_err)?;
        let nodes = vfs::list(&self.core, user.principal(), &p).map_err(ftp_err)?;
        Ok(nodes
            .iter()
            .map(|n| Fileinfo {
                path: PathBuf::from(n.path().as_str()),
                metadata: Meta::from(n),
            })
            .collect())
    }

    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> FtpResult<u64>
    where
        W: tokio::io::AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + fmt::Debug,
    {
        let p = catalog_path(path.as_ref()).map_err(ftp_err)?;
        let m = vfs::file(&self.core, user.principal(), &p).map_err(ftp_err)?;
        let content = Content::open(&self.core, &m).await.map_err(ftp_err)?;
        let Some(first) = content.chunk_at(start_pos) else {
            return Ok(0);
        };
        let mut sent = 0u64;
        // Batches of about 1 MiB, read on a blocking thread; `buffered(2)`: the next batch is
        // read while this one is written.
        let content = &content;
        let mut batches =
            futures::stream::iter(content.batches(first..content.chunks(), vfs::READ_BATCH_BYTES))
                .map(|(from, to)| async move { (from, content.chunk_range(from, to).await) })
                .buffered(2);
        while let Some((from, data)) = batches.next().await {
            for (i, data) in (from..).zip(data.map_err(ftp_err)?) {
                let skip = usize::try_from(start_pos.saturating_sub(content.chunk_start(i)))
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let piece = &data[skip..];
                output.write_all(piece).await?;
                sent += piece.len() as u64;
                self.core
                    .metrics
                    .ftp_bytes_served
                    .fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
        }
        output.flush().await?;
        Ok(sent)
    }

    async fn get<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        _path: P,
        _start_pos: u64,
    ) -> FtpResult<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        // RETR goes through `get_into`; `get` is only used by SITE MD5, which is off.
        Err(FtpError::from(ErrorKind::CommandNotImplemented))
    }

    async fn put<
        P: AsRef<Path> + Send + fmt::Debug,
        R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        _user: &FtpUser,
        _input: R,
        _path: P,
        _start_pos: u64,
    ) -> FtpResult<u64> {
        Err(read_only())
    }

    async fn del<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        _path: P,
    ) -> FtpResult<()> {
        Err(read_only())
    }

    async fn mkd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        _path: P,
    ) -> FtpResult<()> {
        Err(read_only())
    }

    async fn rename<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        _from: P,
        _to: P,
    ) -> FtpResult<()> {
        Err(read_only())
    }

    async fn rmd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        _path: P,
    ) -> FtpResult<()> {
        Err(read_only())
    }

    async fn cwd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> FtpResult<()> {
        match self.stat(user, path.as_ref()) {
            Ok(Node::Dir { .. }) => Ok(()),
            Ok(Node::File(_)) => Err(ftp_err(VfsError::NotDir)),
            Err(e) => Err(ftp_err(e)),
        }
    }
}
