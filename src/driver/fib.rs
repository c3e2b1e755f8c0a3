//! The driver's side of the kernel FIB: the [`FibManager`] lives in the event loop (it is fed
//! every best-path change as it is drained from the speaker), the writer thread
//! ([`Worker`]) does the netlink calls. At most one command is with the writer at a time;
//! while it works, further changes coalesce in the manager.

use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::fib::worker::{Command, Opener, Report, Worker};
use crate::fib::{FibContext, FibManager};

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
