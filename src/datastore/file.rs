//! The file datastore: a multi-document YAML file of Calico v3 resources (what `calicoctl apply`
//! takes) plus `BlockAffinity` documents, watched for changes.
//!
//! A file is accepted or rejected as a whole: one bad document (or two documents for the same
//! resource) rejects the edit with a message naming the line, the resource, the field and the
//! value, and the last good view stays in force.
//!
//! Change detection polls the file's metadata (inode, size, mtime) every 250 ms and compares
//! contents when they move. Polling, rather than inotify, follows editors that replace the file
//! by rename and bind-mounted ConfigMaps whose symlink is swapped, and costs one `stat` per tick.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::calico::model::parse_resource;
use crate::calico::{ClusterView, ResourceId};

/// Why a file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    /// YAML syntax error in the document starting at `line`.
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// A document that parses but is not a valid resource.
    #[error("line {line}: {message}")]
    Resource { line: usize, message: String },
    #[error("line {line}: {id} is defined twice (first at line {first})")]
    Duplicate {
        line: usize,
        first: usize,
        id: ResourceId,
    },
}

/// Splits a YAML stream into documents: `(first line number, text)`. A line starting with `---`
/// opens a document; `...` closes one.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_start || line == "..." {
            if !cur.trim().is_empty() {
                docs.push((start, std::mem::take(&mut cur)));
            }
            cur.clear();
            start = i + 1;
            if let Some(rest) = line.strip_prefix("---").filter(|r| !r.trim().is_empty()) {
                // Content on the marker line (`--- {kind: ...}`): keep it, on the same line.
                cur.push_str(rest);
            }
            cur.push('\n');
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        docs.push((start, cur));
    }
    docs
}

/// Parses a whole file into a view. Kinds podbgp does not consume are skipped; a YAML list of
/// resources (`kind: List` with `items`) is accepted, as calicoctl writes them.
pub fn parse_str(text: &str) -> Result<ClusterView, FileError> {
    let mut view = ClusterView::default();
    let mut seen: std::collections::HashMap<ResourceId, usize> = Default::default();
    for (line, doc) in documents(text) {
        let value: serde_json::Value =
            serde_saphyr::from_str(&doc).map_err(|e| FileError::Syntax {
                line,
                message: relocate(&e.to_string(), line),
            })?;
        if value.is_null() {
            continue;
        }
        let items: Vec<&serde_json::Value> = match value.get("kind").and_then(|k| k.as_str()) {
            Some("List") | Some("BGPPeerList") | Some("NodeList") | Some("IPPoolList") => value
                .get("items")
                .and_then(|i| i.as_array())
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            _ => vec![&value],
        };
        for item in items {
            let r = parse_resource(item).map_err(|e| FileError::Resource {
                line,
                message: e.to_string(),
            })?;
            if let Some(r) = r {
                let id = r.id();
                if let Some(first) = seen.get(&id) {
                    return Err(FileError::Duplicate {
                        line,
                        first: *first,
                        id,
                    });
                }
                seen.insert(id, line);
                view.upsert(r);
            }
        }
    }
    Ok(view)
}

/// serde-saphyr reports positions inside the document; say which document they are in.
fn relocate(msg: &str, doc_line: usize) -> String {
    if doc_line <= 1 {
        msg.to_string()
    } else {
        format!("{msg} (in the document starting at line {doc_line})")
    }
}

/// Reads and parses a file.
pub fn load(path: &Path) -> Result<ClusterView, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_str(&text)
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: Option<std::time::SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        len: m.len(),
        mtime: m.modified().ok(),
    })
}

/// What the watcher reports.
#[derive(Debug)]
pub enum FileEvent {
    /// A new good view (the first one, then one per effective change).
    View(ClusterView),
    /// The file changed but was rejected; the last good view stays in force.
    Rejected(FileError),
}

/// Watches `path`, sending the initial load and every later change. Returns when the receiver
/// is dropped.
pub async fn watch(path: PathBuf, tx: tokio::sync::mpsc::Sender<FileEvent>) {
    const TICK: Duration = Duration::from_millis(250);
    let mut last_stamp = None;
    let mut last_text: Option<String> = None;
    loop {
        let s = stamp(&path);
        if s != last_stamp || last_text.is_none() {
            last_stamp = s;
            let ev = match std::fs::read_to_string(&path) {
                Ok(text) if last_text.as_deref() == Some(text.as_str()) => None,
                Ok(text) => {
                    let ev = match parse_str(&text) {
                        Ok(v) => FileEvent::View(v),
                        Err(e) => FileEvent::Rejected(e),
                    };
                    last_text = Some(text);
                    Some(ev)
                }
                Err(e) => {
                    let err = FileError::Read {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    };
                    // Report a vanished file once, then wait for it to come back.
                    last_text = Some(String::from("\u{0}unreadable"));
                    Some(FileEvent::Rejected(err))
                }
            };
            if let Some(ev) = ev
                && tx.send(ev).await.is_err()
            {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_line_numbers() {
        let d = documents("a: 1\n---\nb: 2\n\n--- \nc: 3\n...\n");
        let starts: Vec<usize> = d.iter().map(|(l, _)| *l).collect();
        assert_eq!(starts, vec![1, 2, 5]);
    }

    #[test]
    fn bad_document_names_line_resource_and_field() {
        let text = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.244.0.0/16}\n---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {peerIP: 198.18.0.1, asNumber: 65x}\n";
        let e = parse_str(text).unwrap_err().to_string();
        assert!(e.starts_with("line 5:"), "{e}");
        assert!(
            e.contains("BGPPeer \"tor\"") && e.contains("spec.asNumber") && e.contains("65x"),
            "{e}"
        );
    }

    #[test]
    fn duplicates_are_rejected() {
        let doc = "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.244.0.0/16}\n";
        let e = parse_str(&format!("{doc}---\n{doc}")).unwrap_err();
        assert!(matches!(e, FileError::Duplicate { first: 1, .. }), "{e}");
    }

    #[test]
    fn lists_and_unknown_kinds() {
        let text = "kind: List\nitems:\n  - kind: IPPool\n    metadata: {name: p}\n    spec: {cidr: 10.244.0.0/16}\n---\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {x: 1}\n";
        let v = parse_str(text).unwrap();
        assert_eq!(v.pools.len(), 1);
    }
}
