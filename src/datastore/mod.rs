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
            adjust: None,
            finish: None,
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
        while let Some(ev) = rx.recv().await {
            self.apply(ev);
            while let Ok(ev) = rx.try_recv() {
                self.apply(ev);
            }
            if let Some(d) = self.derive() {
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

/// Starts the etcd v3 source (endpoints and TLS from calico/node's environment variables).
pub fn etcd_source() -> anyhow::Result<mpsc::Receiver<ViewEvent>> {
    anyhow::bail!("the etcd datastore is not built yet")
}
