//! `podbgp run --secrets-dir DIR`: Kubernetes Secrets mounted as files, `DIR/<secret>/<key>`
//! (one Secret volume per subdirectory, as a pod spec mounts them under a common path).
//!
//! The kubelet writes a Secret volume as `..<timestamp>/` with a `..data` symlink to it and one
//! symlink per key (`<key> -> ..data/<key>`), and swaps `..data` atomically on update. Names
//! starting with `.` are skipped and symlinks are followed, so each key is read once, from
//! whatever `..data` points to at that moment.
//!
//! The directory is read once at start (a missing or unreadable `DIR` stops the start: a typo
//! would otherwise keep every password-protected peer down without a clear cause), then polled
//! every [`POLL`]; a change is sent to the [`super::Follower`] as
//! [`ViewEvent::MountedSecrets`], which derives again (only sessions whose key changed are
//! reset). A problem later on (the directory vanished, a file too large) is reported once and
//! the last good set stays in force.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::ViewEvent;
use crate::calico::secret::{MAX_VALUE_LEN, Secret, SecretValue, valid_key};

/// How often the directory is read again.
pub const POLL: Duration = Duration::from_secs(2);

/// Why the directory cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsDirError {
    #[error("--secrets-dir {path}: {message}")]
    Read { path: String, message: String },
    #[error("--secrets-dir: {path} is larger than 1 MiB")]
    TooLarge { path: String },
}

fn read_err(path: &Path, e: std::io::Error) -> SecretsDirError {
    SecretsDirError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Reads every `DIR/<secret>/<key>` file. Entries that cannot be Secrets or keys (hidden
/// names, plain files at the top level, invalid key names) are skipped.
pub fn read(dir: &Path) -> Result<BTreeMap<String, Secret>, SecretsDirError> {
    let mut out = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| read_err(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| read_err(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let sub = entry.path();
        // Follows symlinks; a dangling one is skipped like any non-directory.
        if name.starts_with('.') || !std::fs::metadata(&sub).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let mut data = BTreeMap::new();
        for f in std::fs::read_dir(&sub).map_err(|e| read_err(&sub, e))? {
            let f = f.map_err(|e| read_err(&sub, e))?;
            let Some(key) = f.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = f.path();
            if key.starts_with('.') || !valid_key(&key) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            if meta.len() > MAX_VALUE_LEN as u64 {
                return Err(SecretsDirError::TooLarge {
                    path: path.display().to_string(),
                });
            }
            let bytes = std::fs::read(&path).map_err(|e| read_err(&path, e))?;
            data.insert(key, SecretValue::new(bytes));
        }
        out.insert(name.clone(), Secret { name, data });
    }
    Ok(out)
}

/// Polls `dir` and sends [`ViewEvent::MountedSecrets`] whenever what it holds differs from
/// `current` (the set read at start). Returns when the receiver is gone.
pub async fn watch(
    dir: PathBuf,
    mut current: BTreeMap<String, Secret>,
    tx: mpsc::Sender<ViewEvent>,
) {
    let mut last_problem: Option<SecretsDirError> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return,
        }
        let d = dir.clone();
        let read = tokio::task::spawn_blocking(move || read(&d)).await;
        let ev = match read {
            Ok(Ok(secrets)) => {
                last_problem = None;
                if secrets == current {
                    continue;
                }
                current = secrets.clone();
                ViewEvent::MountedSecrets(secrets)
            }
            Ok(Err(e)) => {
                if last_problem.as_ref() == Some(&e) {
                    continue;
                }
                last_problem = Some(e.clone());
                ViewEvent::Problem(format!("{e}; the secrets read before stay in force"))
            }
            Err(_) => continue,
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "podbgp-secrets-{tag}-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_the_kubelet_layout() {
        let s = Scratch::new("layout");
        // bgp-secrets/..2026_01_01/{tor,rr}, ..data -> ..2026_01_01, tor -> ..data/tor
        let sec = s.0.join("bgp-secrets");
        let ts = sec.join("..2026_01_01");
        std::fs::create_dir_all(&ts).unwrap();
        std::fs::write(ts.join("tor"), b"s3cret").unwrap();
        std::fs::write(ts.join("rr"), b"rr-pass\n").unwrap();
        std::os::unix::fs::symlink("..2026_01_01", sec.join("..data")).unwrap();
        for k in ["tor", "rr"] {
            std::os::unix::fs::symlink(format!("..data/{k}"), sec.join(k)).unwrap();
        }
        // A plain directory works too, and stray entries are skipped.
        std::fs::create_dir_all(s.0.join("mesh")).unwrap();
        std::fs::write(s.0.join("mesh/password"), b"m").unwrap();
        std::fs::write(s.0.join("not-a-secret"), b"x").unwrap();
        std::fs::create_dir_all(s.0.join(".hidden")).unwrap();
        let got = read(&s.0).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), vec!["bgp-secrets", "mesh"]);
        let bgp = &got["bgp-secrets"].data;
        assert_eq!(bgp.keys().collect::<Vec<_>>(), vec!["rr", "tor"]);
        assert_eq!(bgp["tor"].as_bytes(), b"s3cret");
        // Used as is, trailing newline included (like the Secret's bytes).
        assert_eq!(bgp["rr"].as_bytes(), b"rr-pass\n");
        assert_eq!(got["mesh"].data["password"].as_bytes(), b"m");
    }

    #[test]
    fn missing_dir_and_large_files_are_errors() {
        let s = Scratch::new("errors");
        let e = read(&s.0.join("nope")).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        std::fs::create_dir_all(s.0.join("big")).unwrap();
        std::fs::write(s.0.join("big/k"), vec![b'x'; MAX_VALUE_LEN + 1]).unwrap();
        assert!(matches!(read(&s.0), Err(SecretsDirError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn watch_reports_changes_only() {
        let s = Scratch::new("watch");
        std::fs::create_dir_all(s.0.join("bgp")).unwrap();
        std::fs::write(s.0.join("bgp/tor"), b"one").unwrap();
        let first = read(&s.0).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(watch(s.0.clone(), first, tx));
        std::fs::write(s.0.join("bgp/tor"), b"two").unwrap();
        let ev = tokio::time::timeout(POLL * 5, rx.recv()).await.unwrap();
        match ev {
            Some(ViewEvent::MountedSecrets(m)) => {
                assert_eq!(m["bgp"].data["tor"].as_bytes(), b"two")
            }
            other => panic!("{other:?}"),
        }
        drop(rx);
        let _ = tokio::time::timeout(POLL * 3, task).await;
    }
}
