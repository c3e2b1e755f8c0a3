//! A Calico node: the datastore follower, the BGP driver and the API, wired together.
//!
//! `podbgp run --datastore ... --node NAME` and `podbgp demo` both start nodes this way. The
//! node waits for the first complete view and a successful derivation before it opens any
//! session (Calico never renders a partial configuration), then applies every later derived
//! configuration as a diff through [`DriverHandle::reload`]. Calico's export policy
//! ([`CalicoPolicy`], from the IP pools) is installed with the first configuration and
//! replaced whenever the pools change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::api::{ApiHandle, ApiListen, Clock};
use crate::calico::{CalicoPolicy, DeriveOptions, Derived};
use crate::config::render_yaml;
use crate::datastore::{
    DatastoreSpec, DerivedAdjust, Follower, ViewAdjust, ViewEvent, file_source,
};
use crate::driver::{Driver, DriverHandle, FibSetup};
use crate::fib::{FibConfig, FibContext, NetlinkFib};
use crate::metrics::{MetricsHandle, MetricsServer};

/// How to start a node.
pub struct NodeOptions {
    pub datastore: DatastoreSpec,
    pub node: String,
    pub derive: DeriveOptions,
    pub api: Option<ApiListen>,
    /// TLS for a TCP API listener.
    pub api_tls: Option<crate::api::ApiTls>,
    /// Edits applied to every view before derivation (the demo's free-port override).
    pub adjust: Option<ViewAdjust>,
    /// Edits applied to every derived configuration (the demo's next-hop rewrite).
    pub finish: Option<DerivedAdjust>,
    /// Kernel route installation; `None` installs nothing.
    pub fib: Option<FibOptions>,
    /// Where to serve Prometheus metrics and the HTTP probes (`/metrics`, `/livez`,
    /// `/readyz`); `None` serves nothing.
    pub metrics: Option<SocketAddr>,
}

/// How a node installs routes into the kernel (issue 5, calico-bgp.md §4).
#[derive(Clone, Debug)]
pub struct FibOptions {
    /// Protocol, table and metric of our routes.
    pub config: FibConfig,
    /// The IPIP device (`tunl0`).
    pub ipip_device: String,
    /// Install only prefixes inside an IP pool.
    pub pool_guard: bool,
    /// Sweep stale routes at the latest this long after start.
    pub sweep_after: Duration,
    /// Leave routes in the kernel on stop.
    pub keep_on_stop: bool,
}

impl Default for FibOptions {
    fn default() -> Self {
        FibOptions {
            config: FibConfig::default(),
            ipip_device: crate::fib::desired::DEFAULT_IPIP_DEVICE.to_string(),
            pool_guard: true,
            sweep_after: Duration::from_secs(60),
            keep_on_stop: true,
        }
    }
}

impl FibOptions {
    /// The [`FibContext`] for a derived configuration under these options.
    pub fn context(&self, d: &Derived) -> FibContext {
        FibContext {
            ipip_device: self.ipip_device.clone(),
            pool_guard: self.pool_guard,
            ..FibContext::from_derived(d)
        }
    }

    /// The driver set-up: a netlink table in this thread's namespace, ownership followed with
    /// a route monitor.
    pub fn setup(&self, d: &Derived) -> FibSetup {
        let cfg = self.config.clone();
        FibSetup {
            open: Box::new(move || {
                let mut fib = NetlinkFib::open(cfg)?;
                fib.set_verify_replaces(false);
                fib.enable_monitor()?;
                Ok(Box::new(fib) as Box<dyn crate::fib::Fib + Send>)
            }),
            protocol: self.config.protocol,
            ctx: self.context(d),
            blackholes: d.blackholes.clone(),
            sweep_after: self.sweep_after,
            keep_on_stop: self.keep_on_stop,
        }
    }
}

/// A running node.
pub struct RunningNode {
    pub driver: DriverHandle,
    /// The configuration in force (the last one derived).
    pub derived: watch::Receiver<Option<Derived>>,
    pub task: JoinHandle<Result<(), crate::driver::DriverError>>,
    /// Where the metrics endpoint listens (port 0 resolved), when it does.
    pub metrics_addr: Option<SocketAddr>,
    api_stop: Option<tokio::sync::oneshot::Sender<()>>,
    api_task: Option<JoinHandle<Result<(), crate::api::ApiError>>>,
    metrics_stop: Option<tokio::sync::oneshot::Sender<()>>,
    metrics_task: Option<JoinHandle<()>>,
}

impl RunningNode {
    /// Closes every session, stops the API and waits for the driver.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.driver.shutdown().await;
        self.wait().await
    }

    /// Waits until the driver stops (after a shutdown request), then stops the API.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        let r = (&mut self.task).await;
        if let Some(s) = self.api_stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.api_task.take() {
            match t.await {
                Ok(Err(e)) => tracing::warn!("API server: {e}"),
                Err(e) => tracing::warn!("API task: {e}"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(s) = self.metrics_stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.metrics_task.take() {
            let _ = t.await;
        }
        r.context("driver task")?.context("driver")?;
        Ok(())
    }
}

fn source(spec: &DatastoreSpec) -> anyhow::Result<mpsc::Receiver<ViewEvent>> {
    match spec {
        DatastoreSpec::File(p) => Ok(file_source(p.clone())),
        DatastoreSpec::Etcd => crate::datastore::etcd_source(),
    }
}

/// Starts a node and returns once its sessions are configured.
pub async fn start(opts: NodeOptions) -> anyhow::Result<RunningNode> {
    // Bound first: a bad address fails the start, before any session.
    let metrics = match opts.metrics {
        Some(addr) => Some(MetricsServer::bind(addr).await?),
        None => None,
    };
    let mut rx = source(&opts.datastore)?;
    let mut follower = Follower::new(opts.node.clone(), opts.derive.clone());
    follower.adjust = opts.adjust;
    follower.finish = opts.finish;
    let datastore_stats = follower.watch_stats();
    let fatal_at_start = matches!(opts.datastore, DatastoreSpec::File(_));

    // Initial sync: the first complete view, and a configuration derived from it.
    let first = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        let ev = match ev {
            Ok(Some(ev)) => ev,
            Ok(None) => anyhow::bail!("datastore {} closed before the first sync", opts.datastore),
            Err(_) => {
                info!(datastore = %opts.datastore, "waiting for the datastore ...");
                continue;
            }
        };
        if fatal_at_start && let ViewEvent::Problem(p) = &ev {
            anyhow::bail!("{p}");
        }
        follower.apply(ev);
        if let Some(d) = follower.derive() {
            break d;
        }
        if let Some(e) = follower.last_error() {
            if fatal_at_start {
                anyhow::bail!("datastore {}: {e}", opts.datastore);
            }
            info!(datastore = %opts.datastore, "waiting: {e}");
        }
    };
    info!(
        node = %opts.node,
        datastore = %opts.datastore,
        router_id = %first.config.router_id,
        peers = first.config.neighbors.len(),
        blocks = first.config.originate.len(),
        "initial configuration derived"
    );
    // The export policy is in force from the first UPDATE on.
    let mut policy = CalicoPolicy::from_derived(&first);
    let (mut driver, handle) = Driver::with_policy(first.config.clone(), Arc::new(policy.clone()));
    if let Some(f) = &opts.fib {
        driver = driver.with_fib(f.setup(&first));
    }
    let fib_opts = opts.fib.clone();
    let (yaml_tx, yaml_rx) = watch::channel(render_yaml(&first.config));
    let (derived_tx, derived_rx) = watch::channel(Some(first));
    let (follow_tx, mut follow_rx) = watch::channel(None);
    tokio::spawn(follower.run(rx, follow_tx));
    let h = handle.clone();
    tokio::spawn(async move {
        while follow_rx.changed().await.is_ok() {
            let d = follow_rx.borrow_and_update().clone();
            if let Some(d) = d {
                let _ = yaml_tx.send(render_yaml(&d.config));
                // Policy first: routes in a pool that stops being exported are withdrawn
                // before new originations go out.
                let p = CalicoPolicy::from_derived(&d);
                if p != policy {
                    h.set_policy(Arc::new(p.clone())).await;
                    policy = p;
                }
                h.reload(d.config.clone()).await;
                if let Some(f) = &fib_opts {
                    h.set_fib_facts(f.context(&d), d.blackholes.clone()).await;
                }
                if derived_tx.send(Some(d)).is_err() {
                    return;
                }
            }
        }
    });

    let (mut api_stop, mut api_task) = (None, None);
    if let Some(listen) = opts.api {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let api = ApiHandle {
            requests: handle.api.clone(),
            events: handle.events.clone(),
            config_yaml: yaml_rx,
            clock: Clock::now(),
        };
        info!(%listen, "API listening");
        api_task = Some(tokio::spawn(crate::api::serve_with_tls(
            listen,
            opts.api_tls.clone(),
            api,
            async {
                let _ = stop_rx.await;
            },
        )));
        api_stop = Some(stop_tx);
    }
    let (mut metrics_stop, mut metrics_task, mut metrics_addr) = (None, None, None);
    if let Some(server) = metrics {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let m = MetricsHandle {
            requests: handle.api.clone(),
            datastore: Some(datastore_stats),
            clock: Clock::now(),
        };
        metrics_addr = server.local_addr();
        metrics_task = Some(tokio::spawn(server.serve(m, async {
            let _ = stop_rx.await;
        })));
        metrics_stop = Some(stop_tx);
    }
    let task = tokio::spawn(driver.run());
    Ok(RunningNode {
        driver: handle,
        derived: derived_rx,
        task,
        metrics_addr,
        api_stop,
        api_task,
        metrics_stop,
        metrics_task,
    })
}
