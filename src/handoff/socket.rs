//! The upgrade socket: a Unix stream socket at a path, created 0600, unlinked only by the
//! process that still owns it.
//!
//! Ownership moves with the socket itself: the old process hands its listening Unix socket to
//! the new one (as the listener named `upgrade`), so the path never goes away during an
//! upgrade and no process re-binds it. A process that handed it off never unlinks the path; a
//! process that stops without handing off unlinks it only if the file at the path is still the
//! one it bound or took over (same device and inode).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::error::{HandoffError, io_err};

/// A listening upgrade socket and the path it owns.
#[derive(Debug)]
pub struct UpgradeSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the file this process owns at `path`.
    file: Option<(u64, u64)>,
}

impl UpgradeSocket {
    /// Creates the socket at `path`, mode 0600. A stale socket file (its process gone) is
    /// replaced; a live one (a running node answers) is an error: take over from it instead.
    pub fn bind(path: impl AsRef<Path>) -> Result<UpgradeSocket, HandoffError> {
        let path = path.as_ref().to_path_buf();
        if UnixStream::connect(&path).is_ok() {
            return Err(HandoffError::Io {
                during: "create the upgrade socket",
                source: io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "a running node listens on {}: take over from it (serve --upgrade)",
                        path.display()
                    ),
                ),
            });
        }
        // Bound under a temporary name, made 0600, then renamed into place: the path never
        // shows a socket with looser permissions, and a stale file is replaced atomically.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(io_err("bind the upgrade socket"))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(HandoffError::Io {
                during: "put the upgrade socket in place (0600)",
                source: e,
            });
        }
        UpgradeSocket::own(listener, path)
    }

    /// The upgrade socket handed over by the old process (listener `upgrade`).
    pub fn inherited(fd: OwnedFd, path: impl AsRef<Path>) -> Result<UpgradeSocket, HandoffError> {
        UpgradeSocket::own(UnixListener::from(fd), path.as_ref().to_path_buf())
    }

    fn own(listener: UnixListener, path: PathBuf) -> Result<UpgradeSocket, HandoffError> {
        listener
            .set_nonblocking(true)
            .map_err(io_err("set the upgrade socket non-blocking"))?;
        let file = std::fs::symlink_metadata(&path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        Ok(UpgradeSocket {
            listener,
            path,
            file,
        })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The socket was handed to another process: this one no longer owns the path.
    pub(crate) fn disown(&mut self) {
        self.file = None;
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    pub(crate) fn raw(&self) -> i32 {
        self.listener.as_raw_fd()
    }
}

impl Drop for UpgradeSocket {
    /// Unlinks the path if this process still owns the file there.
    fn drop(&mut self) {
        let Some(mine) = self.file else {
            return;
        };
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now == Some(mine) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
