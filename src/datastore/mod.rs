//! Where the cluster view comes from (a YAML file of Calico resources, or etcd v3) and how it
//! becomes this node's configuration.
//!
//! A source delivers [`ViewEvent`]s; the [`Follower`] keeps the [`ClusterView`], re-derives this
//! node's configuration after each batch of changes and publishes it only when it changed. The
//! daemon applies each published configuration as a diff (only the sessions and prefixes that
//! changed are touched). A bad input never replaces the last good configuration: a rejected
//! file, an invalid resource in etcd or a derivation error is logged and counted, and routing
//! goes on with what was last known.

pub mod etcd;
pub mod file;

use std::path::PathBuf;
use std::str::FromStr;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::calico::{ClusterView, DeriveOptions, Derived, Resource, ResourceId, derive};

/// Which datastore to follow (`--datastore`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreSpec {
    /// `file:PATH`.
    File(PathBuf),
    /// `etcdv3` (endpoints and TLS from calico/node's environment variables).
    Etcd,
}

impl FromStr for DatastoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("file:") {
            if p.is_empty() {
                return Err("file: needs a path, e.g. file:topologies/mesh.yaml".into());
            }
            return Ok(DatastoreSpec::File(PathBuf::from(p)));
        }
        match s {
            "etcdv3" | "etcd" => Ok(DatastoreSpec::Etcd),
            _ => Err(format!(
                "unknown datastore {s:?} (expected file:PATH or etcdv3)"
            )),
        }
    }
}

impl std::fmt::Display for DatastoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatastoreSpec::File(p) => write!(f, "file:{}", p.display()),
            DatastoreSpec::Etcd => f.write_str("etcdv3"),
        }
    }
}

/// What a source reports.
#[derive(Debug)]
pub enum ViewEvent {
    /// The complete current state (initial load, file change, etcd re-list).
    Snapshot(ClusterView),
    /// Incremental changes: `Some` = created or updated, `None` = deleted.
    Changes(Vec<(ResourceId, Option<Resource>)>),
    /// Something the operator should see; the last good state stays in force.
    Problem(String),
    /// The source is healthy again after a problem (etcd reconnected).
    Recovered,
}

/// Counters for the daemon's metrics and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowerStats {
    pub events: u64,
    pub errors: u64,
    pub derivations: u64,
    pub published: u64,
}

/// An edit applied to every view before derivation.
pub type ViewAdjust = Box<dyn Fn(&mut ClusterView) + Send>;

/// An edit applied to every derived configuration (the demo's next-hop rewrite).
pub type DerivedAdjust = Box<dyn Fn(&mut Derived) + Send>;

/// Keeps the view and publishes this node's derived configuration.
pub struct Follower {
    node: String,
    opts: DeriveOptions,
    view: ClusterView,
    have_view: bool,
    last: Option<Derived>,
    last_error: Option<String>,
    last_notes: Vec<String>,
    pub stats: FollowerStats,
    /// Where [`Follower::run`] publishes `stats` after each batch (metrics).
    stats_tx: Option<watch::Sender<FollowerStats>>,
    /// Edits applied to every view before derivation (the demo's port override).
    pub adjust: Option<ViewAdjust>,
    /// Edits applied to every derived configuration.
    pub finish: Option<DerivedAdjust>,
}

impl Follower {
    pub fn new(node: impl Into<String>, opts: DeriveOptions) -> Self {
        Follower {
            node: node.into(),
            opts,
            view: ClusterView::default(),
            have_view: false,
            last: None,
            last_error: None,
            last_notes: Vec::new(),
            stats: FollowerStats::default(),
            stats_tx: None,
            adjust: None,
            finish: None,
        }
    }

    /// The counters as [`Follower::run`] publishes them: at its start, then after every
    /// batch of events.
    pub fn watch_stats(&mut self) -> watch::Receiver<FollowerStats> {
        let tx = self
            .stats_tx
            .get_or_insert_with(|| watch::channel(self.stats.clone()).0);
        tx.subscribe()
    }

    fn publish_stats(&self) {
        if let Some(tx) = &self.stats_tx {
            tx.send_replace(self.stats.clone());
        }
    }

    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// Applies one event to the view, without deriving.
    pub fn apply(&mut self, ev: ViewEvent) {
        self.stats.events += 1;
        match ev {
            ViewEvent::Snapshot(mut v) => {
                if let Some(f) = &self.adjust {
                    f(&mut v);
                }
                self.view = v;
                self.have_view = true;
            }
            ViewEvent::Changes(changes) => {
                for (id, r) in changes {
                    match r {
                        Some(r) => self.view.upsert(r),
                        None => {
                            self.view.remove(&id);
                        }
                    }
                }
                if let Some(f) = &self.adjust {
                    f(&mut self.view);
                }
            }
            ViewEvent::Problem(p) => {
                self.stats.errors += 1;
                warn!(node = %self.node, "datastore: {p}; keeping the last good state");
            }
            ViewEvent::Recovered => info!(node = %self.node, "datastore: recovered"),
        }
    }

    /// Derives from the current view; returns the new configuration when it differs from the
    /// last one published.
    pub fn derive(&mut self) -> Option<Derived> {
        if !self.have_view {
            return None;
        }
        self.stats.derivations += 1;
        match derive(&self.view, &self.node, &self.opts) {
            Ok(mut d) => {
                if let Some(f) = &self.finish {
                    f(&mut d);
                }
                self.last_error = None;
                if d.notes != self.last_notes {
                    for n in d.notes.iter().filter(|n| !self.last_notes.contains(n)) {
                        warn!(node = %self.node, "{n}");
                    }
                    self.last_notes = d.notes.clone();
                }
                if self.last.as_ref() == Some(&d) {
                    return None;
                }
                self.last = Some(d.clone());
                self.stats.published += 1;
                Some(d)
            }
            Err(e) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(&msg) {
                    self.stats.errors += 1;
                    warn!(node = %self.node, "cannot derive the configuration: {msg}; keeping the last good one");
                    self.last_error = Some(msg);
                }
                None
            }
        }
    }

    /// The last error that kept a configuration from being derived, if it persists.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Runs until `rx` closes: applies every queued event, then derives once, and publishes
    /// the result on `out` when it changed.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<ViewEvent>,
        out: watch::Sender<Option<Derived>>,
    ) {
        self.publish_stats();
        while let Some(ev) = rx.recv().await {
            self.apply(ev);
            while let Ok(ev) = rx.try_recv() {
                self.apply(ev);
            }
            let derived = self.derive();
            self.publish_stats();
            if let Some(d) = derived {
                info!(
                    node = %self.node,
                    peers = d.config.neighbors.len(),
                    blocks = d.config.originate.len(),
                    "datastore: configuration derived"
                );
                if out.send(Some(d)).is_err() {
                    return;
                }
            }
        }
    }
}

/// Starts the file source: its events go to the returned receiver.
pub fn file_source(path: PathBuf) -> mpsc::Receiver<ViewEvent> {
    let (tx, rx) = mpsc::channel(16);
    let (ftx, mut frx) = mpsc::channel(4);
    tokio::spawn(file::watch(path.clone(), ftx));
    tokio::spawn(async move {
        while let Some(ev) = frx.recv().await {
            let ev = match ev {
                file::FileEvent::View(v) => ViewEvent::Snapshot(v),
                file::FileEvent::Rejected(e) => {
                    ViewEvent::Problem(format!("{} rejected: {e}", path.display()))
                }
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Starts the etcd v3 source: endpoints and TLS from calico/node's environment variables
/// (`ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`, `ETCD_USERNAME`,
/// `ETCD_PASSWORD`).
pub fn etcd_source() -> anyhow::Result<mpsc::Receiver<ViewEvent>> {
    let cfg = etcd::EtcdConfig::from_env()
        .map_err(|e| anyhow::anyhow!("etcd datastore configuration: {e}"))?;
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("etcd datastore configuration: {e}"))?;
    info!(endpoints = ?cfg.endpoints, "following the etcd v3 datastore");
    Ok(etcd_source_with(cfg))
}

/// What one etcd key means for the view: `None` for keys podbgp does not read.
fn decode_kv(key: &[u8], value: &[u8]) -> Option<(ResourceId, Result<Resource, String>)> {
    use crate::calico::model::{EtcdKey, parse_etcd_key, parse_etcd_value};
    let key_str = std::str::from_utf8(key).ok()?;
    let k = parse_etcd_key(key_str)?;
    let id = match &k {
        EtcdKey::Resource { kind, name } => match *kind {
            "Node" => ResourceId::Node(name.clone()),
            "BGPConfiguration" => ResourceId::BgpConfiguration(name.clone()),
            "BGPPeer" => ResourceId::BgpPeer(name.clone()),
            _ => ResourceId::IpPool(name.clone()),
        },
        EtcdKey::Affinity { node, cidr } => ResourceId::BlockAffinity(node.clone(), *cidr),
        EtcdKey::Block { cidr } => ResourceId::IpamBlock(*cidr),
    };
    let r = parse_etcd_value(&k, value).map_err(|e| format!("{key_str}: {e}"));
    if let Ok(r) = &r
        && r.id() != id
    {
        return Some((
            id,
            Err(format!(
                "{key_str}: the stored resource is named {}",
                r.id()
            )),
        ));
    }
    Some((id, r))
}

/// [`etcd_source`] with an explicit configuration.
///
/// Snapshots are turned into whole views; an invalid value keeps the last good version of
/// that resource (if any) and is reported, so a bad write never takes a peer or a block away.
/// Incremental changes are passed on as such; an invalid one is reported and skipped.
pub fn etcd_source_with(cfg: etcd::EtcdConfig) -> mpsc::Receiver<ViewEvent> {
    let (tx, rx) = mpsc::channel(64);
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut sync = etcd::Syncer::new(cfg, crate::calico::model::ETCD_PREFIX).spawn(cancel.clone());
    tokio::spawn(async move {
        let _stop = cancel.drop_guard();
        let mut current = ClusterView::default();
        while let Some(ev) = sync.events.recv().await {
            let mut out = Vec::new();
            match ev {
                etcd::SyncEvent::Snapshot { kvs, revision } => {
                    let mut view = ClusterView::default();
                    for kv in &kvs {
                        match decode_kv(&kv.key, &kv.value) {
                            None => {}
                            Some((_, Ok(r))) => view.upsert(r),
                            Some((id, Err(e))) => {
                                out.push(ViewEvent::Problem(format!("invalid value: {e}")));
                                if let Some(old) = resource_of(&current, &id) {
                                    view.upsert(old);
                                }
                            }
                        }
                    }
                    info!(
                        revision,
                        keys = kvs.len(),
                        resources = view.len(),
                        "etcd: listed"
                    );
                    current = view.clone();
                    out.insert(0, ViewEvent::Snapshot(view));
                }
                etcd::SyncEvent::Changes(changes) => {
                    let mut batch = Vec::new();
                    for c in changes {
                        match c {
                            etcd::Change::Put { key, value, .. } => match decode_kv(&key, &value) {
                                None => {}
                                Some((id, Ok(r))) => {
                                    current.upsert(r.clone());
                                    batch.push((id, Some(r)));
                                }
                                Some((_, Err(e))) => out.push(ViewEvent::Problem(format!(
                                    "invalid value ignored, the previous one stays: {e}"
                                ))),
                            },
                            etcd::Change::Delete { key, .. } => {
                                if let Some((id, _)) = decode_kv(&key, b"") {
                                    current.remove(&id);
                                    batch.push((id, None));
                                }
                            }
                        }
                    }
                    if !batch.is_empty() {
                        out.insert(0, ViewEvent::Changes(batch));
                    }
                }
                etcd::SyncEvent::Disconnected { reason } => out.push(ViewEvent::Problem(format!(
                    "etcd unreachable ({reason}); retrying"
                ))),
                etcd::SyncEvent::Resumed { revision } => {
                    info!(revision, "etcd: reconnected, watch resumed");
                    out.push(ViewEvent::Recovered);
                }
            }
            for ev in out {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The resource with `id` in `view`, if present.
fn resource_of(view: &ClusterView, id: &ResourceId) -> Option<Resource> {
    match id {
        ResourceId::Node(n) => view.nodes.get(n).cloned().map(Resource::Node),
        ResourceId::BgpConfiguration(n) => view
            .bgp_configs
            .get(n)
            .cloned()
            .map(Resource::BgpConfiguration),
        ResourceId::BgpPeer(n) => view.peers.get(n).cloned().map(Resource::BgpPeer),
        ResourceId::IpPool(n) => view.pools.get(n).cloned().map(Resource::IpPool),
        ResourceId::BlockAffinity(n, c) => view
            .affinities
            .get(&(n.clone(), *c))
            .cloned()
            .map(Resource::BlockAffinity),
        ResourceId::IpamBlock(c) => view.blocks.get(c).cloned().map(Resource::IpamBlock),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(extra: &str) -> ClusterView {
        let base = "kind: Node\nmetadata: {name: a}\nspec: {bgp: {ipv4Address: 198.18.0.1/24}}\n---\nkind: Node\nmetadata: {name: b}\nspec: {bgp: {ipv4Address: 198.18.0.2/24}}\n";
        file::parse_str(&format!("{base}{extra}")).unwrap()
    }

    #[test]
    fn publishes_only_changes_and_keeps_the_last_good_configuration() {
        let mut f = Follower::new("a", DeriveOptions::default());
        assert!(f.derive().is_none(), "nothing before the first view");
        f.apply(ViewEvent::Snapshot(view("")));
        let first = f.derive().expect("first configuration");
        assert_eq!(first.config.neighbors.len(), 1);
        // The same view again (e.g. a Node status update): nothing to publish.
        f.apply(ViewEvent::Snapshot(view("")));
        assert!(f.derive().is_none());
        // A new block: published.
        let aff = "---\nkind: BlockAffinity\nmetadata: {name: x}\nspec: {node: a, cidr: 10.244.1.0/26, state: confirmed}\n";
        f.apply(ViewEvent::Snapshot(view(aff)));
        let d = f.derive().expect("changed");
        assert_eq!(d.config.originate, vec!["10.244.1.0/26".parse().unwrap()]);
        // This node disappears: an error, nothing published, the last good one stays ours.
        f.apply(ViewEvent::Changes(vec![(
            ResourceId::Node("a".into()),
            None,
        )]));
        assert!(f.derive().is_none());
        assert!(f.last_error().unwrap().contains("\"a\""));
        assert_eq!(f.stats.published, 2);
        // It comes back with the same content: the configuration is the same as before.
        f.apply(ViewEvent::Snapshot(view(aff)));
        assert!(f.derive().is_none());
        assert!(f.last_error().is_none());
    }

    #[tokio::test]
    async fn run_publishes_the_counters_after_each_batch() {
        let mut f = Follower::new("a", DeriveOptions::default());
        f.apply(ViewEvent::Snapshot(view("")));
        let mut stats = f.watch_stats();
        let (tx, rx) = mpsc::channel(4);
        let (out, _configs) = watch::channel(None);
        let task = tokio::spawn(f.run(rx, out));
        tx.send(ViewEvent::Problem("bad file".into()))
            .await
            .unwrap();
        let want = |s: &FollowerStats| s.events == 2 && s.errors == 1;
        let got = stats.wait_for(want).await.unwrap().clone();
        assert_eq!(got.derivations, 1);
        drop(tx);
        task.await.unwrap();
    }

    #[test]
    fn datastore_spec_parses() {
        assert_eq!(
            "file:x.yaml".parse::<DatastoreSpec>(),
            Ok(DatastoreSpec::File("x.yaml".into()))
        );
        assert_eq!("etcdv3".parse::<DatastoreSpec>(), Ok(DatastoreSpec::Etcd));
        assert!("file:".parse::<DatastoreSpec>().is_err());
        assert!(
            "kubernetes"
                .parse::<DatastoreSpec>()
                .unwrap_err()
                .contains("kubernetes")
        );
    }
}
