//! The SFTP subsystem (russh-sftp): a read-only view of the published catalog for one
//! logged-in principal (see [`crate::vfs`]).
//!
//! - paths are resolved against `/` (the home of every login) with [`vfs::resolve`];
//! - `open` only for reading (any write, create, truncate or append flag: permission denied);
//!   `read` at any offset, filling the whole request across chunk boundaries, with the last
//!   chunk read kept per handle so sequential 32 KiB reads cost one store read per chunk;
//! - `opendir`/`readdir` return the visible entries in one batch, then EOF;
//! - write, remove, mkdir, rmdir, rename, setstat, symlink: permission denied; readlink: no
//!   such file (nothing is a link); other requests: unsupported.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, FileMode, Handle, Name, OpenFlags, Status, StatusCode,
    Version,
};
use russh_sftp::server::StatusReply;

use crate::core::Core;
use crate::vfs::{self, Content, Node, VfsError};

/// Most handles one session may hold open.
const MAX_HANDLES: usize = 256;
/// Largest read answered (OpenSSH asks for 32 KiB, some clients up to 255 KiB).
const MAX_READ: u32 = 256 * 1024;

enum Open {
    File {
        node: Node,
        content: Content,
        /// The last chunk read: (index, bytes).
        cached: Option<(usize, Bytes)>,
    },
    Dir {
        entries: Option<Vec<Node>>,
        node: Node,
    },
}

/// One SFTP session.
pub(crate) struct SftpFs {
    core: Arc<Core>,
    principal: Option<String>,
    handles: HashMap<String, Open>,
    next: u64,
}

impl SftpFs {
    /// A session for `principal` (`None` = anonymous).
    pub(crate) fn new(core: Arc<Core>, principal: Option<String>) -> Self {
        Self {
            core,
            principal,
            handles: HashMap::new(),
            next: 0,
        }
    }

    fn resolve(&self, path: &str) -> Result<sitecast_protocol::CatalogPath, StatusReply> {
        resolve(path).map_err(|e| status(&VfsError::BadPath(e)))
    }

    fn node_of(&self, path: &str) -> Result<Node, StatusReply> {
        let p = self.resolve(path)?;
        vfs::stat(&self.core, self.principal.as_deref(), &p).map_err(|e| status(&e))
    }

    fn add(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(StatusCode::Failure.with_message("too many open handles"));
        }
        self.next += 1;
        let h = format!("h{}", self.next);
        self.handles.insert(h.clone(), open);
        Ok(h)
    }
}

/// The catalog path an SFTP request names: SFTP has no working directory, a relative name
/// is taken from the root.
pub(crate) fn resolve(
    path: &str,
) -> Result<sitecast_protocol::CatalogPath, sitecast_protocol::PathError> {
    vfs::resolve("/", path)
}

fn status(e: &VfsError) -> StatusReply {
    let code = match e {
        VfsError::BadPath(_) | VfsError::NotFound => StatusCode::NoSuchFile,
        VfsError::Denied => StatusCode::PermissionDenied,
        VfsError::IsDir | VfsError::NotDir => StatusCode::Failure,
        VfsError::Internal(msg) => {
            tracing::error!(error = %msg, "sftp: cannot serve");
            StatusCode::Failure
        }
    };
    code.with_message(e.to_string())
}

fn read_only() -> StatusReply {
    StatusCode::PermissionDenied.with_message("this server is read-only")
}

fn bad_handle() -> StatusReply {
    StatusCode::Failure.with_message("invalid handle")
}

fn attrs(n: &Node) -> FileAttributes {
    let mut a = FileAttributes {
        size: Some(n.len()),
        uid: Some(0),
        user: Some("sitecast".to_owned()),
        gid: Some(0),
        group: Some("sitecast".to_owned()),
        permissions: Some(if n.is_dir() { 0o555 } else { 0o444 }),
        atime: Some(u32::try_from(n.modified()).unwrap_or(u32::MAX)),
        mtime: Some(u32::try_from(n.modified()).unwrap_or(u32::MAX)),
    };
    a.set_type(if n.is_dir() {
        FileMode::DIR
    } else {
        FileMode::REG
    });
    a
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_owned(),
        language_tag: "en-US".to_owned(),
    }
}

impl russh_sftp::server::Handler for SftpFs {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let writes = OpenFlags::WRITE
            | OpenFlags::APPEND
            | OpenFlags::CREATE
            | OpenFlags::TRUNCATE
            | OpenFlags::EXCLUDE;
        if pflags.intersects(writes) {
            return Err(read_only());
        }
        let p = self.resolve(&filename)?;
        let m = vfs::file(&self.core, self.principal.as_deref(), &p).map_err(|e| status(&e))?;
        let content = Content::open(&self.core, &m)
            .await
            .map_err(|e| status(&e))?;
        let handle = self.add(Open::File {
            node: Node::File(m),
            content,
            cached: None,
        })?;
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(_) => Ok(ok(id)),
            None => Err(bad_handle()),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let Some(Open::File {
            content, cached, ..
        }) = self.handles.get_mut(&handle)
        else {
            return Err(bad_handle());
        };
        if offset >= content.len() {
            return Err(StatusCode::Eof.into());
        }
        let end = offset
            .saturating_add(u64::from(len.min(MAX_READ)))
            .min(content.len());
        let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
        let mut pos = offset;
        while pos < end {
            let Some(i) = content.chunk_at(pos) else {
                break;
            };
            let data = match cached {
                Some((ci, d)) if *ci == i => d.clone(),
                _ => {
                    let d = content.chunk(i).await.map_err(|e| status(&e))?;
                    *cached = Some((i, d.clone()));
                    d
                }
            };
            let start = content.chunk_start(i);
            let from = usize::try_from(pos - start)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let to = usize::try_from(end - start)
                .unwrap_or(usize::MAX)
                .min(data.len());
            if from >= to {
                break;
            }
            out.extend_from_slice(&data[from..to]);
            pos = start + to as u64;
        }
        self.core
            .metrics
            .sftp_bytes_served
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(Data { id, data: out })
    }

    async fn write(
        &mut self,
        _id: u32,
        _handle: String,
        _offset: u64,
        _data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        Err(read_only())
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.node_of(&path).map(|n| Attrs {
            id,
            attrs: attrs(&n),
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.node_of(&path).map(|n| Attrs {
            id,
            attrs: attrs(&n),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        match self.handles.get(&handle) {
            Some(Open::File { node, .. } | Open::Dir { node, .. }) => Ok(Attrs {
                id,
                attrs: attrs(node),
            }),
            None => Err(bad_handle()),
        }
    }

    async fn setstat(
        &mut self,
        _id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(read_only())
    }

    async fn fsetstat(
        &mut self,
        _id: u32,
        _handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(read_only())
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let p = self.resolve(&path)?;
        let node = vfs::stat(&self.core, self.principal.as_deref(), &p).map_err(|e| status(&e))?;
        if !node.is_dir() {
            return Err(status(&VfsError::NotDir));
        }
        let entries =
            vfs::list(&self.core, self.principal.as_deref(), &p).map_err(|e| status(&e))?;
        let handle = self.add(Open::Dir {
            entries: Some(entries),
            node,
        })?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(Open::Dir { entries, .. }) = self.handles.get_mut(&handle) else {
            return Err(bad_handle());
        };
        let Some(entries) = entries.take() else {
            return Err(StatusCode::Eof.into());
        };
        Ok(Name {
            id,
            files: entries
                .iter()
                .map(|n| File::new(n.path().name(), attrs(n)))
                .collect(),
        })
    }

    async fn remove(&mut self, _id: u32, _filename: String) -> Result<Status, Self::Error> {
        Err(read_only())
    }

    async fn mkdir(
        &mut self,
        _id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(read_only())
    }

    async fn rmdir(&mut self, _id: u32, _path: String) -> Result<Status, Self::Error> {
        Err(read_only())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        // Only normalises (as OpenSSH does for names that need not exist).
        let p = self.resolve(&path)?;
        Ok(Name {
            id,
            files: vec![File::dummy(p.as_str())],
        })
    }

    async fn rename(
        &mut self,
        _id: u32,
        _oldpath: String,
        _newpath: String,
    ) -> Result<Status, Self::Error> {
        Err(read_only())
    }

    async fn readlink(&mut self, _id: u32, _path: String) -> Result<Name, Self::Error> {
        Err(StatusCode::NoSuchFile.with_message("no symbolic links here"))
    }

    async fn symlink(
        &mut self,
        _id: u32,
        _linkpath: String,
        _targetpath: String,
    ) -> Result<Status, Self::Error> {
        Err(read_only())
    }
}
