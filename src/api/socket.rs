//! The API's Unix socket: parent directory, stale-file handling, mode 0600.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::{UnixListener, UnixStream};

use super::ApiError;

/// Prepares `path` and binds a listener on it.
///
/// * A missing parent directory is created with mode 0700 (so the socket is never reachable
///   by others, even in the instant between `bind` and `chmod`).
/// * An existing socket file is removed if nobody answers on it (a daemon that died without
///   cleaning up); if a daemon does answer, this is an error rather than a hijack.
/// * Anything else at `path` (a regular file, a directory) is left alone: an error.
pub(super) async fn bind_unix(path: &Path) -> Result<UnixListener, ApiError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| ApiError::SocketDir {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ApiError::SocketInUse(path.to_path_buf()));
            }
            tracing::info!(socket = %path.display(), "removing stale API socket");
            std::fs::remove_file(path).map_err(|source| ApiError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(ApiError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|source| ApiError::BindUnix {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ApiError::Permissions {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

/// Removes the socket file on shutdown (best effort).
pub(super) fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(socket = %path.display(), error = %e, "cannot remove API socket");
    }
}
