//! The part of containerlab's topology format (`*.clab.yml`) the namespace runner reads.
//!
//! ```yaml
//! name: mesh
//! topology:
//!   nodes:
//!     node-1: {kind: linux, image: podbgp:dev, binds: [...], cmd: "podbgp run ...", exec: [...]}
//!     tor:    {kind: linux, image: quay.io/frrouting/frr:8.4.4, binds: ["tor/frr.conf:/etc/frr/frr.conf"]}
//!     lan:    {kind: bridge}
//!   links:
//!     - endpoints: ["node-1:eth1", "lan:n1"]
//! ```
//!
//! What a node is, for the runner: `kind: bridge` is a Linux bridge; a `linux` node whose image
//! names `frr` runs FRR (zebra + bgpd from the bound `/etc/frr/frr.conf`); one whose image names
//! `podbgp` runs its `cmd`; any other `linux` node is a plain host (a pod) configured by its
//! `exec` lines. Fields the runner does not use (`mgmt`, `labels`, `kinds`, ...) are accepted
//! and ignored, as containerlab would use them; a malformed value is an error naming the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A parse or validation error, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ClabError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

#[derive(Debug, Deserialize)]
struct RawFile {
    name: String,
    topology: RawTopology,
}

#[derive(Debug, Deserialize)]
struct RawTopology {
    #[serde(default)]
    nodes: BTreeMap<String, RawNode>,
    #[serde(default)]
    links: Vec<RawLink>,
}

#[derive(Debug, Default, Deserialize)]
struct RawNode {
    kind: Option<String>,
    image: Option<String>,
    #[serde(default)]
    binds: Vec<String>,
    #[serde(default)]
    exec: Vec<String>,
    cmd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RawLink {
    endpoints: Vec<String>,
}

/// What the runner does with a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Bridge,
    Frr {
        /// Host path of the bound `frr.conf`.
        config: PathBuf,
    },
    Podbgp {
        /// The arguments after `podbgp`, bind paths mapped to host paths.
        args: Vec<String>,
    },
    Host,
}

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub exec: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// One end of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub node: String,
    pub iface: String,
}

/// A whole lab file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabFile {
    pub name: String,
    pub path: PathBuf,
    pub nodes: Vec<Node>,
    pub links: Vec<(Endpoint, Endpoint)>,
}

impl LabFile {
    pub fn load(path: &Path) -> Result<LabFile, ClabError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClabError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        LabFile::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<LabFile, ClabError> {
        let bad = |msg: String| ClabError::Invalid {
            path: path.to_path_buf(),
            msg,
        };
        let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| bad(e.to_string()))?;
        if raw.name.is_empty()
            || raw.name.len() > 12
            || !raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(bad(format!(
                "name: {:?}: use 1-12 characters [A-Za-z0-9-] (it prefixes namespace names)",
                raw.name
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut nodes = Vec::new();
        for (name, n) in &raw.topology.nodes {
            let field = |f: &str| format!("topology.nodes.{name}.{f}");
            if name.is_empty()
                || name.len() > 16
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(format!(
                    "topology.nodes: node name {name:?}: use 1-16 characters [A-Za-z0-9_-]"
                )));
            }
            let binds = n
                .binds
                .iter()
                .map(|b| {
                    parse_bind(b, base).ok_or_else(|| {
                        bad(format!(
                            "{}: {b:?}: expected HOST:CONTAINER[:ro]",
                            field("binds")
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let kind = n.kind.as_deref().unwrap_or("linux");
            let image = n.image.as_deref().unwrap_or("");
            let role = match kind {
                "bridge" | "ovs-bridge" => Role::Bridge,
                "linux" if image.contains("frr") => {
                    let config = binds
                        .iter()
                        .find(|(_, c)| c == "/etc/frr/frr.conf")
                        .map(|(h, _)| h.clone())
                        .ok_or_else(|| {
                            bad(format!(
                                "{}: an FRR node needs a bind to /etc/frr/frr.conf",
                                field("binds")
                            ))
                        })?;
                    Role::Frr { config }
                }
                "linux" if image.contains("podbgp") => {
                    let cmd = n.cmd.as_deref().ok_or_else(|| {
                        bad(format!("{}: a podbgp node needs a cmd", field("cmd")))
                    })?;
                    let mut words = cmd.split_whitespace();
                    if words.next() != Some("podbgp") {
                        return Err(bad(format!(
                            "{}: {cmd:?}: must start with `podbgp`",
                            field("cmd")
                        )));
                    }
                    let args = words.map(|w| map_binds(w, &binds)).collect();
                    Role::Podbgp { args }
                }
                "linux" => Role::Host,
                other => {
                    return Err(bad(format!(
                        "{}: {other:?}: the namespace runner supports linux and bridge",
                        field("kind")
                    )));
                }
            };
            nodes.push(Node {
                name: name.clone(),
                role,
                exec: n.exec.clone(),
                env: n.env.clone(),
            });
        }
        let mut links = Vec::new();
        for (i, l) in raw.topology.links.iter().enumerate() {
            let field = format!("topology.links[{i}].endpoints");
            let [a, b] = l.endpoints.as_slice() else {
                return Err(bad(format!("{field}: expected two endpoints")));
            };
            let ep = |s: &str| -> Result<Endpoint, ClabError> {
                let (node, iface) = s
                    .split_once(':')
                    .ok_or_else(|| bad(format!("{field}: {s:?}: expected NODE:IFACE")))?;
                if !nodes.iter().any(|n| n.name == node) {
                    return Err(bad(format!("{field}: {s:?}: no node {node:?}")));
                }
                if iface.is_empty() || iface.len() > 15 {
                    return Err(bad(format!(
                        "{field}: {s:?}: interface names have 1-15 characters"
                    )));
                }
                Ok(Endpoint {
                    node: node.to_string(),
                    iface: iface.to_string(),
                })
            };
            links.push((ep(a)?, ep(b)?));
        }
        Ok(LabFile {
            name: raw.name,
            path: path.to_path_buf(),
            nodes,
            links,
        })
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// `HOST:CONTAINER[:MODE]`, the host path relative to the lab file's directory.
fn parse_bind(b: &str, base: &Path) -> Option<(PathBuf, String)> {
    let mut parts = b.split(':');
    let host = parts.next().filter(|s| !s.is_empty())?;
    let container = parts.next().filter(|s| s.starts_with('/'))?;
    let host = Path::new(host);
    let host = if host.is_absolute() {
        host.to_path_buf()
    } else {
        base.join(host)
    };
    Some((host, container.to_string()))
}

/// A `cmd` word with a bound container path replaced by the host path (also after `file:`
/// or `=`).
fn map_binds(word: &str, binds: &[(PathBuf, String)]) -> String {
    for (host, container) in binds {
        if let Some(pos) = word.find(container.as_str()) {
            let rest = &word[pos + container.len()..];
            if rest.is_empty() || rest.starts_with('/') {
                return format!("{}{}{rest}", &word[..pos], host.display());
            }
        }
    }
    word.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"
name: mesh
topology:
  nodes:
    node-1:
      kind: linux
      image: podbgp:dev
      binds: ["../../topologies/mesh.yaml:/etc/podbgp/cluster.yaml:ro"]
      cmd: podbgp run --datastore file:/etc/podbgp/cluster.yaml --node node-1
      exec: ["ip addr add 198.18.0.11/24 dev eth1"]
    tor:
      kind: linux
      image: quay.io/frrouting/frr:8.4.4
      binds: ["tor/frr.conf:/etc/frr/frr.conf", "tor/daemons:/etc/frr/daemons"]
    pod-1: {kind: linux, image: alpine:3}
    lan: {kind: bridge}
  links:
    - endpoints: ["node-1:eth1", "lan:n1"]
    - endpoints: ["tor:eth1", "lan:tor"]
"#;

    #[test]
    fn parses_roles_binds_and_links() {
        let f = LabFile::parse(LAB, Path::new("/labs/mesh/mesh.clab.yml")).unwrap();
        assert_eq!(f.name, "mesh");
        assert_eq!(
            f.node("node-1").unwrap().role,
            Role::Podbgp {
                args: "run --datastore file:/labs/mesh/../../topologies/mesh.yaml --node node-1"
                    .split(' ')
                    .map(String::from)
                    .collect()
            }
        );
        assert_eq!(
            f.node("tor").unwrap().role,
            Role::Frr {
                config: "/labs/mesh/tor/frr.conf".into()
            }
        );
        assert_eq!(f.node("pod-1").unwrap().role, Role::Host);
        assert_eq!(f.node("lan").unwrap().role, Role::Bridge);
        assert_eq!(f.links.len(), 2);
        assert_eq!(f.links[1].1.iface, "tor");
    }

    #[test]
    fn errors_name_the_field() {
        let e = LabFile::parse(
            &LAB.replace("\"tor:eth1\"", "\"tor-x:eth1\""),
            Path::new("l.clab.yml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("topology.links[1].endpoints") && e.contains("tor-x"),
            "{e}"
        );
        let e = LabFile::parse(
            &LAB.replace(
                "tor/frr.conf:/etc/frr/frr.conf",
                "tor/frr.conf:/etc/frr/x.conf",
            ),
            Path::new("l.clab.yml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("topology.nodes.tor.binds"), "{e}");
    }
}
