//! Kubernetes Secrets that hold BGP passwords, and how a `secretKeyRef` becomes a TCP MD5 key.
//!
//! Calico's `BGPPeer.spec.password.secretKeyRef` and `BGPConfiguration.spec.nodeMeshPassword`
//! name a key of a Secret in calico-node's namespace (calico-bgp.md §1.2). podbgp reads
//! Secrets from two places:
//!
//! * `kind: Secret` (`apiVersion: v1`) documents in the file datastore: `data` (base64) and
//!   `stringData` (plain; wins over `data` for the same key, as the Kubernetes API does).
//!   `metadata.namespace` is not checked: the file is taken to be calico-node's namespace.
//! * `podbgp run --secrets-dir DIR`: `DIR/<secret name>/<key>` files, the layout of Secret
//!   volumes mounted under one directory (the `..data` symlink machinery of the kubelet is
//!   followed; names starting with `.` are skipped).
//!
//! A Secret mounted from the directory is looked at first, then the datastore's.
//!
//! Unlike confd, which renders a peer *without* a password when the Secret cannot be read, a
//! missing Secret or key keeps that peer down ([`TcpAuth::Unavailable`]): an unsigned session
//! would either never come up (the peer signs) or silently drop the protection the operator
//! asked for.
//!
//! Secret values never appear in `Debug` output or error messages and are wiped on drop.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde_json::Value;

use super::model::{ResourceError, SecretKeyRef};
use crate::config::{KeyProblem, Md5Key, TcpAuth, UnavailableKey};

/// Largest value accepted for one key (Kubernetes limits a whole Secret to 1 MiB).
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// One Secret's keys and values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    pub name: String,
    pub data: BTreeMap<String, SecretValue>,
}

/// A secret value; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        crate::config::wipe(&mut self.0);
    }
}

/// Whether `key` is a valid Secret data key (Kubernetes: `[-._a-zA-Z0-9]+`, not `.` or `..`).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn err(name: &str, path: impl Into<String>, msg: impl Into<String>) -> ResourceError {
    ResourceError {
        kind: "Secret".into(),
        name: name.into(),
        path: path.into(),
        message: msg.into(),
    }
}

/// Parses a `kind: Secret` document (`obj` is the whole document, `name` its
/// `metadata.name`). Errors name the field, never the value.
pub fn parse_secret(
    obj: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Secret, ResourceError> {
    if name.is_empty() {
        return Err(err("", "metadata.name", "missing"));
    }
    match obj.get("apiVersion") {
        None => {}
        Some(Value::String(v)) if v == "v1" => {}
        Some(v) => {
            return Err(err(
                name,
                "apiVersion",
                format!("unsupported apiVersion {v} for a Secret (expected v1)"),
            ));
        }
    }
    let known = [
        "apiVersion",
        "kind",
        "metadata",
        "data",
        "stringData",
        "type",
        "immutable",
    ];
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(err(name, k.as_str(), "unknown top-level field"));
    }
    let mut data = BTreeMap::new();
    let mut fields = |field: &str, decode: bool| -> Result<(), ResourceError> {
        let map = match obj.get(field) {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(err(name, field, "expected a mapping of keys to values")),
        };
        for (k, v) in map {
            let path = format!("{field}.{k}");
            if !valid_key(k) {
                return Err(err(
                    name,
                    path,
                    "invalid key (allowed: letters, digits, '-', '_', '.')",
                ));
            }
            let Value::String(text) = v else {
                return Err(err(name, path, "expected a string"));
            };
            let bytes = if decode {
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| err(name, &path, "not valid base64"))?
            } else {
                text.as_bytes().to_vec()
            };
            if bytes.len() > MAX_VALUE_LEN {
                return Err(err(name, path, "value larger than 1 MiB"));
            }
            data.insert(k.clone(), SecretValue(bytes));
        }
        Ok(())
    };
    fields("data", true)?;
    fields("stringData", false)?;
    Ok(Secret {
        name: name.to_string(),
        data,
    })
}

/// Where `secretKeyRef`s are resolved: mounted Secrets (`--secrets-dir`) first, then the
/// datastore's.
#[derive(Clone, Copy, Debug)]
pub struct SecretSource<'a> {
    pub mounted: &'a BTreeMap<String, Secret>,
    pub datastore: &'a BTreeMap<String, Secret>,
}

impl SecretSource<'_> {
    /// The TCP MD5 setting for a password given by `r`.
    pub fn resolve(&self, r: &SecretKeyRef) -> TcpAuth {
        let layers = [self.mounted.get(&r.name), self.datastore.get(&r.name)];
        let value = layers.iter().flatten().find_map(|s| s.data.get(&r.key));
        let problem = match value {
            Some(v) => match Md5Key::new(v.as_bytes()) {
                Ok(k) => return TcpAuth::Md5(k),
                Err(p) => p,
            },
            None if layers.iter().any(Option::is_some) => KeyProblem::NoKey,
            None => KeyProblem::NoSecret,
        };
        TcpAuth::Unavailable(UnavailableKey {
            secret: r.name.clone(),
            key: r.key.clone(),
            problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(doc: Value) -> Result<Secret, ResourceError> {
        let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
        parse_secret(doc.as_object().unwrap(), &name)
    }

    #[test]
    fn data_is_base64_and_string_data_wins() {
        let s = parse(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "bgp", "namespace": "calico-system"},
            "data": {"tor": "czNjcmV0", "other": "YQ=="},
            "stringData": {"other": "plain"},
        }))
        .unwrap();
        assert_eq!(s.data["tor"].as_bytes(), b"s3cret");
        assert_eq!(s.data["other"].as_bytes(), b"plain");
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn errors_name_the_field_not_the_value() {
        let e = parse(json!({"kind": "Secret", "metadata": {"name": "bgp"},
                             "data": {"tor": "not base64!"}}))
        .unwrap_err();
        assert_eq!(e.path, "data.tor");
        assert!(!e.to_string().contains("not base64!"), "{e}");
        let e = parse(json!({"kind": "Secret", "metadata": {"name": "bgp"},
                             "data": {"../x": "YQ=="}}))
        .unwrap_err();
        assert_eq!(e.path, "data.../x");
        let e = parse(json!({"apiVersion": "v2", "kind": "Secret", "metadata": {"name": "bgp"}}))
            .unwrap_err();
        assert_eq!(e.path, "apiVersion");
        let e =
            parse(json!({"kind": "Secret", "metadata": {"name": "bgp"}, "spec": {}})).unwrap_err();
        assert_eq!(e.path, "spec");
        let e = parse(json!({"kind": "Secret", "metadata": {}})).unwrap_err();
        assert_eq!(e.path, "metadata.name");
        let e = parse(json!({"kind": "Secret", "metadata": {"name": "bgp"},
                             "stringData": {"k": 5}}))
        .unwrap_err();
        assert_eq!(e.path, "stringData.k");
    }

    #[test]
    fn resolution_order_and_problems() {
        let secret = |name: &str, kvs: &[(&str, &[u8])]| Secret {
            name: name.into(),
            data: kvs
                .iter()
                .map(|(k, v)| (k.to_string(), SecretValue::new(v.to_vec())))
                .collect(),
        };
        let mounted: BTreeMap<_, _> = [("bgp".to_string(), secret("bgp", &[("a", b"mounted")]))]
            .into_iter()
            .collect();
        let datastore: BTreeMap<_, _> = [
            (
                "bgp".to_string(),
                secret("bgp", &[("a", b"file"), ("b", b"file-b")]),
            ),
            ("empty".to_string(), secret("empty", &[("k", b"")])),
        ]
        .into_iter()
        .collect();
        let src = SecretSource {
            mounted: &mounted,
            datastore: &datastore,
        };
        let r = |name: &str, key: &str| {
            src.resolve(&SecretKeyRef {
                name: name.into(),
                key: key.into(),
            })
        };
        assert_eq!(
            r("bgp", "a").md5().map(|k| k.as_bytes().to_vec()),
            Some(b"mounted".to_vec())
        );
        assert_eq!(
            r("bgp", "b").md5().map(|k| k.as_bytes().to_vec()),
            Some(b"file-b".to_vec())
        );
        let problem = |a: TcpAuth| match a {
            TcpAuth::Unavailable(u) => u.problem,
            other => panic!("{other:?}"),
        };
        assert_eq!(problem(r("bgp", "c")), KeyProblem::NoKey);
        assert_eq!(problem(r("nope", "a")), KeyProblem::NoSecret);
        assert_eq!(problem(r("empty", "k")), KeyProblem::Empty);
        let TcpAuth::Unavailable(u) = r("nope", "a") else {
            unreachable!()
        };
        assert_eq!(
            u.to_string(),
            "password from Secret \"nope\" key \"a\": the Secret does not exist"
        );
    }
}
