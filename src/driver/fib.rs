//! The driver's side of the kernel FIB: the [`FibManager`] lives in the event loop (it is fed
//! every best-path change as it is drained from the speaker), the writer thread
//! ([`Worker`]) does the netlink calls. At most one command is with the writer at a time;
//! while it works, further changes coalesce in the manager.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::fib::worker::{Command, Opener, Report, Worker};
use crate::fib::{FibContext, FibManager, FibRoute, RouteKind};
use crate::speaker::{
    FibCounters, KernelNextHop, KernelRouteKind, KernelRouteView, Query, QueryError, RouteView,
    Speaker, TableKind, View,
};

/// Routes per batch handed to the writer (a few tens of milliseconds of netlink work).
const BATCH: usize = 8192;
/// How long a stop that removes routes may take.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// How the driver installs routes into the kernel.
pub struct FibSetup {
    /// Opens the table on the writer thread (a [`NetlinkFib`](crate::fib::NetlinkFib), or a
    /// fake in tests).
    pub open: Opener,
    /// Our `rtm_protocol` (tells our routes from others' in kernel events).
    pub protocol: u8,
    /// Calico facts at start.
    pub ctx: FibContext,
    /// Local blocks to blackhole at start.
    pub blackholes: Vec<IpNet>,
    /// Sweep stale routes at the latest this long after start, even if some peer has not
    /// sent End-of-RIB (a dead peer cannot stall the sweep).
    pub sweep_after: Duration,
    /// Leave our routes in the kernel when the daemon stops (graceful restart: forwarding
    /// continues, the next start reconciles them). `false` deletes them on a clean stop.
    pub keep_on_stop: bool,
}

impl std::fmt::Debug for FibSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FibSetup")
            .field("protocol", &self.protocol)
            .field("sweep_after", &self.sweep_after)
            .field("keep_on_stop", &self.keep_on_stop)
            .finish_non_exhaustive()
    }
}

/// New facts from the datastore.
#[derive(Debug)]
pub(crate) struct FibFacts {
    pub ctx: FibContext,
    pub blackholes: Vec<IpNet>,
}

pub(crate) struct FibRun {
    pub mgr: FibManager,
    worker: Worker,
    protocol: u8,
    /// A command is with the writer.
    busy: bool,
    sweep_at: Instant,
    keep_on_stop: bool,
}

impl FibRun {
    /// Starts the writer and asks it for the table. `None` when the thread cannot start.
    pub fn start(
        setup: FibSetup,
        reports: mpsc::UnboundedSender<Report>,
        now: Instant,
    ) -> Option<FibRun> {
        let worker = match Worker::spawn(setup.open, reports) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot start the FIB writer thread; routes will not be installed");
                return None;
            }
        };
        let mut mgr = FibManager::new(setup.ctx);
        mgr.set_blackholes(setup.blackholes);
        let busy = worker.send(Command::Load);
        info!(
            protocol = setup.protocol,
            sweep_after_s = setup.sweep_after.as_secs(),
            keep_on_stop = setup.keep_on_stop,
            "installing routes into the kernel"
        );
        Some(FibRun {
            mgr,
            worker,
            protocol: setup.protocol,
            busy,
            sweep_at: now + setup.sweep_after,
            keep_on_stop: setup.keep_on_stop,
        })
    }

    pub fn set_facts(&mut self, facts: FibFacts) {
        self.mgr.set_context(facts.ctx);
        self.mgr.set_blackholes(facts.blackholes);
    }

    /// Converges once every peer has sent End-of-RIB (`synced`) or the sweep timeout passed.
    pub fn check_convergence(&mut self, now: Instant, synced: bool) {
        if self.mgr.is_loaded() && !self.mgr.is_converged() && (synced || now >= self.sweep_at) {
            if !synced {
                info!("FIB sweep timeout reached before every peer sent End-of-RIB");
            }
            self.mgr.converge();
        }
    }

    /// Hands the writer the next command when it is idle.
    pub fn pump(&mut self, now: Instant) {
        if self.busy {
            return;
        }
        if self.mgr.wants_reload() {
            self.busy = self.worker.send(Command::Load);
            return;
        }
        if !self.mgr.has_work(now) {
            return;
        }
        let ops = self.mgr.take_batch(now, BATCH);
        if !ops.is_empty() {
            self.busy = self.worker.send(Command::Apply(ops));
        }
    }

    /// Handles one report; `false` when the FIB is gone for good.
    pub fn on_report(&mut self, now: Instant, report: Report) -> bool {
        match report {
            Report::Loaded(table) => {
                self.busy = false;
                self.mgr.load(table);
            }
            Report::Applied { ops, errors } => {
                self.busy = false;
                self.mgr.batch_done(now, &ops, errors);
            }
            Report::Events(Ok(events)) => self.mgr.kernel_events(events, self.protocol),
            Report::Events(Err(e)) => {
                warn!(error = %e, "kernel route events lost; reading the table again");
                self.mgr.request_reload();
            }
            Report::Failed(_) => return false,
        }
        self.pump(now);
        true
    }

    /// When the manager next wants to run (a retry, or the sweep timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sweep = (!self.mgr.is_converged()).then_some(self.sweep_at);
        [self.mgr.poll_timeout(), sweep].into_iter().flatten().min()
    }

    /// On stop: leaves the routes (the default), or deletes them all, bounded in time.
    pub async fn finish(mut self, reports: &mut mpsc::UnboundedReceiver<Report>) {
        let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
        // Wait for the command in progress, then (when removing) for every delete batch.
        loop {
            if !self.keep_on_stop && self.mgr.is_loaded() {
                // Again after every report: a batch in flight may have added routes.
                self.mgr.withdraw_all();
            }
            if !self.busy {
                if self.keep_on_stop || !self.mgr.is_loaded() {
                    break;
                }
                self.pump(Instant::now());
                if !self.busy {
                    break;
                }
            }
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(r)) => {
                    if !self.on_report(Instant::now(), r) {
                        break;
                    }
                }
                _ => {
                    warn!("FIB writer did not finish in time");
                    break;
                }
            }
        }
        let stats = self.mgr.stats();
        info!(
            installed = stats.installed,
            kept = self.keep_on_stop,
            "FIB writer stopped"
        );
        let worker = self.worker;
        let _ = tokio::task::spawn_blocking(move || worker.stop()).await;
    }
}

/// Answers an API query: the speaker's views, with the kernel table and the FIB counters
/// filled in from the manager (the speaker holds no kernel state).
pub(crate) fn answer(
    speaker: &Speaker,
    fib: Option<&FibManager>,
    query: &Query,
) -> Result<View, QueryError> {
    match (query, fib) {
        (
            Query::Routes {
                table: TableKind::Fib,
                ..
            },
            None,
        ) => Err(QueryError::NoFib),
        (
            Query::Routes {
                table: TableKind::Fib,
                peer,
                prefix,
            },
            Some(mgr),
        ) => Ok(View::Routes(fib_routes(mgr, *peer, *prefix))),
        (Query::Speaker, Some(mgr)) => match speaker.query(query)? {
            View::Speaker(mut v) => {
                v.fib = Some(counters(mgr));
                Ok(View::Speaker(v))
            }
            other => Ok(other),
        },
        _ => speaker.query(query),
    }
}

fn counters(mgr: &FibManager) -> FibCounters {
    let s = mgr.stats();
    FibCounters {
        installed: s.installed as u64,
        foreign: s.foreign as u64,
        adds: s.adds,
        replaces: s.replaces,
        deletes: s.deletes,
        failures: s.failures,
        repairs: s.repairs,
        swept: s.swept,
        batches: s.batches,
    }
}

/// Our kernel routes, sorted by prefix: only `prefix` when given, only routes with a next hop
/// via `gateway` when given.
fn fib_routes(mgr: &FibManager, gateway: Option<IpAddr>, prefix: Option<IpNet>) -> Vec<RouteView> {
    let routes = match prefix {
        Some(p) => mgr.installed_route(&p).cloned().into_iter().collect(),
        None => mgr.installed(),
    };
    routes
        .into_iter()
        .map(|r| kernel_route_view(&r, mgr.is_stale(&r.prefix)))
        .filter(|v| gateway.is_none_or(|g| v.next_hops.contains(&g)))
        .collect()
}

fn kernel_route_view(r: &FibRoute, stale: bool) -> RouteView {
    let (kind, next_hops) = match &r.kind {
        RouteKind::Unicast { nexthops } => (
            KernelRouteKind::Unicast,
            nexthops
                .iter()
                .map(|h| KernelNextHop {
                    gateway: h.gateway,
                    device: h.dev.clone(),
                    onlink: h.onlink,
                })
                .collect(),
        ),
        RouteKind::Blackhole => (KernelRouteKind::Blackhole, Vec::new()),
        RouteKind::Other { rtn_type } => (KernelRouteKind::Other(*rtn_type), Vec::new()),
    };
    RouteView {
        prefix: r.prefix,
        next_hops: next_hops
            .iter()
            .map(|h: &KernelNextHop| h.gateway)
            .collect(),
        peer: None,
        as_path: Vec::new(),
        origin: None,
        med: None,
        local_pref: None,
        communities: Vec::new(),
        originator_id: None,
        cluster_list: Vec::new(),
        best: true,
        reason: String::new(),
        stale,
        kernel: Some(KernelRouteView { kind, next_hops }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::{KernelTable, NextHop};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn fib_table_lists_the_managers_routes_with_filters() {
        let gw: IpAddr = "198.18.0.1".parse().unwrap();
        let mut mgr = FibManager::new(FibContext::default());
        mgr.load(KernelTable {
            own: vec![
                FibRoute::unicast(net("10.244.1.0/26"), vec![NextHop::onlink(gw, "tunl0")]),
                FibRoute::blackhole(net("10.244.7.0/26")),
            ],
            foreign: vec![],
        });
        let all = fib_routes(&mgr, None, None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].prefix, net("10.244.1.0/26"));
        assert_eq!(all[0].next_hops, vec![gw]);
        assert_eq!(all[0].peer, None);
        // Found at start and wanted by nothing yet: kept as stale until convergence.
        assert!(all[0].stale);
        let k = all[0].kernel.as_ref().unwrap();
        assert_eq!(k.kind, KernelRouteKind::Unicast);
        assert_eq!(k.next_hops[0].device.as_deref(), Some("tunl0"));
        assert!(k.next_hops[0].onlink);
        assert_eq!(
            all[1].kernel.as_ref().unwrap().kind,
            KernelRouteKind::Blackhole
        );

        let one = fib_routes(&mgr, None, Some(net("10.244.7.0/26")));
        assert_eq!(one.len(), 1);
        assert!(fib_routes(&mgr, None, Some(net("10.244.9.0/26"))).is_empty());
        let via = fib_routes(&mgr, Some(gw), None);
        assert_eq!(via.len(), 1);
        assert_eq!(via[0].prefix, net("10.244.1.0/26"));

        mgr.converge();
        assert!(!fib_routes(&mgr, None, None)[0].stale);
        let c = counters(&mgr);
        assert_eq!(c.installed, 2);
    }
}
