//! The FIB manager: what the kernel should hold, what it holds, and the batches that close the
//! gap. Sans-IO: the driver feeds it Loc-RIB changes, Calico facts, kernel reads and kernel
//! events, hands its batches to a [`Fib`](super::Fib) (on the writer thread,
//! [`worker`](super::worker)) and reports the results back.
//!
//! **Coalescing.** A change only marks its prefix dirty; [`FibManager::take_batch`] computes
//! the route of each dirty prefix at that moment. While a batch is in the kernel, a prefix
//! that changes ten times is written once, with its last state. A batch never holds one
//! prefix twice.
//!
//! **Ownership.** `kernel` holds the routes we know to be ours in the table, `foreign` the
//! prefixes another protocol holds at our metric. A prefix of ours is changed with
//! [`FibOp::Replace`]; any other with [`FibOp::Add`], which the kernel refuses when something
//! is there ([`FibError::Exists`]: the table is then read again). A foreign prefix is never
//! written; when its route goes away (a kernel event), ours is installed.
//!
//! **Start, convergence and the sweep** (issue 5, RFC 4724 §4.1 in spirit). [`FibManager::load`]
//! takes the table read at start: our routes found there are kept (`stale`) until
//! [`FibManager::converge`], which the driver calls once every established peer has sent
//! End-of-RIB or a timeout passed; a stale route that is still unwanted then is deleted. Until
//! the first `load`, nothing is written.
//!
//! **Repair.** A kernel event that deletes or changes one of our routes behind our back marks
//! the prefix dirty, so the next batch puts it back (the driver polls events at least every
//! [`worker::POLL`](super::worker::POLL)).
//!
//! **Failures.** A route the kernel refuses is retried after [`RETRY_AFTER`], doubling up to
//! [`RETRY_MAX`]; a route that cannot be expressed is not retried. Each failure is counted.
//!
//! **Logging.** Nothing per prefix is logged above DEBUG (a table flushed by hand must not
//! become ten thousand log lines): each prefix's event is logged at DEBUG, and each batch
//! result or batch of kernel events adds one INFO/WARN line per kind of event, with the count
//! and the first prefix as an example ([`Tally`]).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};
use tracing::{debug, info, warn};

use super::desired::{FibContext, compute};
use super::{FibError, FibOp, FibRoute, KernelEvent, KernelTable};

/// First retry of a failed route.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest wait between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Counters, for the API and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibStats {
    /// Routes of ours in the kernel, as far as we know.
    pub installed: usize,
    /// Prefixes we want but another protocol holds.
    pub foreign: usize,
    pub adds: u64,
    pub replaces: u64,
    pub deletes: u64,
    pub failures: u64,
    /// Routes put back after someone else deleted or changed them.
    pub repairs: u64,
    /// Stale routes deleted by the sweep after convergence.
    pub swept: u64,
    /// Batches handed to the kernel.
    pub batches: u64,
}

#[derive(Clone, Copy, Debug)]
struct Retry {
    at: Instant,
    delay: Duration,
}

/// Prefixes that met the same fate in one call, for a single summary line (see the module
/// documentation, "Logging").
#[derive(Debug, Default)]
struct Tally {
    count: usize,
    /// The first prefix, and a detail (protocol or error) to show with it.
    first: Option<(IpNet, String)>,
}

impl Tally {
    fn add(&mut self, prefix: IpNet, detail: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some((prefix, detail()));
        }
    }

    /// `(count, first prefix, its detail)` when anything was added.
    fn summary(&self) -> Option<(usize, String, &str)> {
        let (p, d) = self.first.as_ref()?;
        Some((self.count, p.to_string(), d.as_str()))
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct FibManager {
    ctx: FibContext,
    /// The Loc-RIB: each prefix's ECMP next hops (best first); absent when it has none.
    best: FxHashMap<IpNet, Vec<IpAddr>>,
    blackholes: FxHashSet<IpNet>,
    kernel: FxHashMap<IpNet, FibRoute>,
    foreign: FxHashMap<IpNet, u8>,
    stale: FxHashSet<IpNet>,
    loaded: bool,
    converged: bool,
    dirty: FxHashSet<IpNet>,
    queue: Vec<IpNet>,
    retry: FxHashMap<IpNet, Retry>,
    /// Set by [`FibError::Exists`]: the table must be read again.
    reload_wanted: bool,
    stats: FibStats,
}

impl FibManager {
    pub fn new(ctx: FibContext) -> FibManager {
        FibManager {
            ctx,
            best: FxHashMap::default(),
            blackholes: FxHashSet::default(),
            kernel: FxHashMap::default(),
            foreign: FxHashMap::default(),
            stale: FxHashSet::default(),
            loaded: false,
            converged: false,
            dirty: FxHashSet::default(),
            queue: Vec::new(),
            retry: FxHashMap::default(),
            reload_wanted: false,
            stats: FibStats::default(),
        }
    }

    fn mark(&mut self, prefix: IpNet) {
        if self.dirty.insert(prefix) {
            self.queue.push(prefix);
        }
    }

    /// The route we want for `prefix` now.
    pub fn desired(&self, prefix: &IpNet) -> Option<FibRoute> {
        if self.blackholes.contains(prefix) {
            return Some(FibRoute::blackhole(*prefix));
        }
        self.best
            .get(prefix)
            .and_then(|hops| compute(*prefix, hops, &self.ctx))
    }

    /// A Loc-RIB best-path change: the prefix's ECMP next hops, best first (empty: gone, or
    /// only locally originated).
    pub fn best_changed(&mut self, prefix: IpNet, next_hops: &[IpAddr]) {
        let prefix = prefix.trunc();
        if next_hops.is_empty() {
            if self.best.remove(&prefix).is_none() {
                return;
            }
        } else {
            self.best.insert(prefix, next_hops.to_vec());
        }
        self.mark(prefix);
    }

    /// New Calico facts (pools, subnets, ...): every prefix whose route may differ is
    /// recomputed.
    pub fn set_context(&mut self, ctx: FibContext) {
        if ctx == self.ctx {
            return;
        }
        self.ctx = ctx;
        let all: Vec<IpNet> = self
            .best
            .keys()
            .chain(self.kernel.keys())
            .copied()
            .collect();
        for p in all {
            self.mark(p);
        }
    }

    /// The local blocks to blackhole (replaces the previous set).
    pub fn set_blackholes(&mut self, blocks: impl IntoIterator<Item = IpNet>) {
        let new: FxHashSet<IpNet> = blocks.into_iter().map(|p| p.trunc()).collect();
        let changed: Vec<IpNet> = new
            .symmetric_difference(&self.blackholes)
            .copied()
            .collect();
        self.blackholes = new;
        for p in changed {
            self.mark(p);
        }
    }

    /// The table as read from the kernel (at start, or again after lost events). Our routes in
    /// it are kept until convergence when nothing wants them yet.
    pub fn load(&mut self, table: KernelTable) {
        let first = !self.loaded;
        self.loaded = true;
        self.reload_wanted = false;
        self.kernel = table.own.into_iter().map(|r| (r.prefix, r)).collect();
        self.foreign = table.foreign.into_iter().collect();
        if first && !self.converged {
            self.stale = self
                .kernel
                .keys()
                .filter(|p| self.desired(p).is_none())
                .copied()
                .collect();
            info!(
                kept = self.kernel.len(),
                unclaimed = self.stale.len(),
                foreign = self.foreign.len(),
                "kernel routes read at start; ours are kept until initial convergence"
            );
        }
        let all: Vec<IpNet> = self
            .kernel
            .keys()
            .chain(self.best.keys())
            .chain(self.blackholes.iter())
            .chain(self.foreign.keys())
            .copied()
            .collect();
        for p in all {
            self.mark(p);
        }
    }

    /// Initial convergence is reached: stale routes nobody claimed are deleted.
    pub fn converge(&mut self) {
        if self.converged {
            return;
        }
        self.converged = true;
        let stale: Vec<IpNet> = self.stale.iter().copied().collect();
        let n = stale.iter().filter(|p| self.desired(p).is_none()).count();
        info!(
            stale = n,
            "initial convergence: sweeping kernel routes no longer wanted"
        );
        for p in stale {
            self.mark(p);
        }
    }

    pub fn is_converged(&self) -> bool {
        self.converged
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// True when the table must be read again ([`FibManager::load`]).
    pub fn wants_reload(&self) -> bool {
        self.reload_wanted
    }

    /// Asks for a re-read of the table (kernel events were lost).
    pub fn request_reload(&mut self) {
        self.reload_wanted = true;
    }

    /// Kernel events for our table. Our own requests' notifications are already filtered out
    /// by the adapter; what is left is someone else's doing.
    pub fn kernel_events(&mut self, events: Vec<KernelEvent>, protocol: u8) {
        let (mut taken, mut deleted, mut freed) =
            (Tally::default(), Tally::default(), Tally::default());
        for ev in events {
            match ev {
                KernelEvent::New { route, protocol: p } if p == protocol => {
                    let prefix = route.prefix;
                    self.foreign.remove(&prefix);
                    let ok = self
                        .desired(&prefix)
                        .is_some_and(|d| d.satisfied_by(&route));
                    self.kernel.insert(prefix, route);
                    if !ok {
                        debug!(%prefix, "our route was changed outside podbgp: repairing");
                        self.stats.repairs += 1;
                        self.mark(prefix);
                    }
                }
                KernelEvent::New { route, protocol: p } => {
                    let prefix = route.prefix;
                    if self.kernel.remove(&prefix).is_some() || self.desired(&prefix).is_some() {
                        debug!(%prefix, protocol = p,
                               "a route of another protocol now holds this prefix; left untouched");
                        taken.add(prefix, || p.to_string());
                    }
                    self.foreign.insert(prefix, p);
                    self.stale.remove(&prefix);
                }
                KernelEvent::Del {
                    prefix,
                    protocol: p,
                } if p == protocol => {
                    if self.kernel.remove(&prefix).is_some() && self.desired(&prefix).is_some() {
                        debug!(%prefix, "our route was deleted outside podbgp: repairing");
                        deleted.add(prefix, String::new);
                        self.stats.repairs += 1;
                        self.mark(prefix);
                    }
                    self.stale.remove(&prefix);
                }
                KernelEvent::Del { prefix, .. } => {
                    if self.foreign.remove(&prefix).is_some() && self.desired(&prefix).is_some() {
                        debug!(%prefix, "the other protocol's route is gone: installing ours");
                        freed.add(prefix, String::new);
                        self.mark(prefix);
                    }
                }
            }
        }
        if let Some((routes, first, protocol)) = taken.summary() {
            warn!(
                routes,
                first,
                protocol,
                "routes of another protocol now hold prefixes of ours; left untouched"
            );
        }
        if let Some((routes, first, _)) = deleted.summary() {
            info!(
                routes,
                first, "routes of ours were deleted outside podbgp: repairing"
            );
        }
        if let Some((routes, first, _)) = freed.summary() {
            info!(
                routes,
                first, "another protocol's routes are gone: installing ours"
            );
        }
    }

    /// Up to `max` operations for the dirty prefixes whose retry time (if any) has come.
    /// Empty until the table was loaded.
    pub fn take_batch(&mut self, now: Instant, max: usize) -> Vec<FibOp> {
        let mut ops = Vec::new();
        if !self.loaded {
            return ops;
        }
        for (p, r) in &self.retry {
            if r.at <= now && !self.dirty.contains(p) {
                self.dirty.insert(*p);
                self.queue.push(*p);
            }
        }
        let mut keep = Vec::new();
        while ops.len() < max {
            let Some(prefix) = self.queue.pop() else {
                break;
            };
            if self.retry.get(&prefix).is_some_and(|r| r.at > now) {
                keep.push(prefix);
                continue;
            }
            self.dirty.remove(&prefix);
            if let Some(op) = self.op_for(prefix) {
                ops.push(op);
            }
        }
        self.queue.extend(keep);
        if !ops.is_empty() {
            self.stats.batches += 1;
        }
        ops
    }

    fn op_for(&mut self, prefix: IpNet) -> Option<FibOp> {
        if self.foreign.contains_key(&prefix) {
            return None;
        }
        let want = self.desired(&prefix);
        match (want, self.kernel.get(&prefix)) {
            (Some(w), Some(have)) if w.satisfied_by(have) => {
                self.stale.remove(&prefix);
                self.retry.remove(&prefix);
                None
            }
            (Some(w), Some(_)) => {
                self.stale.remove(&prefix);
                Some(FibOp::Replace(w))
            }
            (Some(w), None) => Some(FibOp::Add(w)),
            (None, Some(_)) if !self.converged && self.stale.contains(&prefix) => None,
            (None, Some(_)) => Some(FibOp::Delete(prefix)),
            (None, None) => {
                self.stale.remove(&prefix);
                self.retry.remove(&prefix);
                None
            }
        }
    }

    /// The outcome of a batch from [`FibManager::take_batch`]: `errors` as
    /// [`Fib::apply`](super::Fib::apply) returned them.
    pub fn batch_done(&mut self, now: Instant, ops: &[FibOp], errors: Vec<(IpNet, FibError)>) {
        let failed: FxHashMap<IpNet, FibError> = errors.into_iter().collect();
        let (mut foreign, mut exists, mut invalid, mut retrying) = (
            Tally::default(),
            Tally::default(),
            Tally::default(),
            Tally::default(),
        );
        for op in ops {
            let prefix = op.prefix();
            let Some(e) = failed.get(&prefix) else {
                match op {
                    FibOp::Add(r) | FibOp::Replace(r) => {
                        if matches!(op, FibOp::Add(_)) {
                            self.stats.adds += 1;
                        } else {
                            self.stats.replaces += 1;
                        }
                        self.kernel.insert(prefix, r.clone());
                    }
                    FibOp::Delete(_) => {
                        if self.stale.remove(&prefix) {
                            self.stats.swept += 1;
                        }
                        self.stats.deletes += 1;
                        self.kernel.remove(&prefix);
                    }
                }
                self.retry.remove(&prefix);
                continue;
            };
            match e {
                FibError::NotInstalled => {
                    self.kernel.remove(&prefix);
                    self.retry.remove(&prefix);
                }
                FibError::ForeignRoute { protocol } => {
                    debug!(%prefix, protocol, "a route of another protocol holds this prefix; left untouched");
                    foreign.add(prefix, || protocol.to_string());
                    self.kernel.remove(&prefix);
                    self.foreign.insert(prefix, *protocol);
                    self.retry.remove(&prefix);
                }
                FibError::Exists => {
                    debug!(%prefix, "an unknown route holds this prefix; reading the table again");
                    exists.add(prefix, String::new);
                    self.stats.failures += 1;
                    self.reload_wanted = true;
                    self.schedule_retry(now, prefix);
                }
                FibError::Invalid(why) => {
                    debug!(%prefix, why, "route cannot be installed");
                    invalid.add(prefix, || why.to_string());
                    self.stats.failures += 1;
                    self.retry.remove(&prefix);
                }
                e => {
                    self.stats.failures += 1;
                    // Once per prefix and outage above DEBUG (in the summary), not per retry.
                    if !self.retry.contains_key(&prefix) {
                        retrying.add(prefix, || e.to_string());
                    }
                    debug!(%prefix, error = %e, "kernel route failed; retrying");
                    self.schedule_retry(now, prefix);
                }
            }
        }
        if let Some((routes, first, protocol)) = foreign.summary() {
            warn!(
                routes,
                first, protocol, "routes of another protocol hold prefixes of ours; left untouched"
            );
        }
        if let Some((routes, first, _)) = exists.summary() {
            warn!(
                routes,
                first, "unknown routes hold prefixes of ours; reading the table again"
            );
        }
        if let Some((routes, first, why)) = invalid.summary() {
            warn!(routes, first, why, "routes cannot be installed");
        }
        if let Some((routes, first, error)) = retrying.summary() {
            warn!(routes, first, error, "kernel routes failed; retrying");
        }
    }

    fn schedule_retry(&mut self, now: Instant, prefix: IpNet) {
        let delay = self
            .retry
            .get(&prefix)
            .map_or(RETRY_AFTER, |r| (r.delay * 2).min(RETRY_MAX));
        self.retry.insert(
            prefix,
            Retry {
                at: now + delay,
                delay,
            },
        );
    }

    /// When a retry is due (the driver wakes up then).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry.values().map(|r| r.at).min()
    }

    /// True when a batch is ready now.
    pub fn has_work(&self, now: Instant) -> bool {
        self.loaded
            && (self.queue.iter().any(|p| !self.retry.contains_key(p))
                || self.retry.values().any(|r| r.at <= now))
    }

    /// Forgets every wish: the next batches delete all our routes (stop without keeping
    /// routes). Stale routes go too.
    pub fn withdraw_all(&mut self) {
        self.best.clear();
        self.blackholes.clear();
        self.converged = true;
        self.stale.clear();
        self.retry.clear();
        let all: Vec<IpNet> = self.kernel.keys().copied().collect();
        for p in all {
            self.mark(p);
        }
    }

    pub fn stats(&self) -> FibStats {
        FibStats {
            installed: self.kernel.len(),
            foreign: self
                .foreign
                .keys()
                .filter(|p| self.desired(p).is_some())
                .count(),
            ..self.stats
        }
    }

    /// Our routes in the kernel as far as we know, sorted by prefix (for the API's FIB table).
    pub fn installed(&self) -> Vec<FibRoute> {
        let mut v: Vec<FibRoute> = self.kernel.values().cloned().collect();
        v.sort_by_key(|r| r.prefix);
        v
    }

    /// Our route for exactly `prefix` in the kernel, as far as we know.
    pub fn installed_route(&self, prefix: &IpNet) -> Option<&FibRoute> {
        self.kernel.get(prefix)
    }

    /// True for a route of ours found in the kernel at start that nothing claims yet: it is
    /// kept until initial convergence, then swept.
    pub fn is_stale(&self, prefix: &IpNet) -> bool {
        !self.converged && self.stale.contains(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calico::PoolInfo;
    use crate::calico::model::EncapMode;
    use crate::fib::{Fib, FibConfig, MemoryFib, NextHop, RTPROT_BIRD};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ctx() -> FibContext {
        FibContext {
            pools: vec![PoolInfo {
                name: "default".into(),
                cidr: net("10.244.0.0/16"),
                ipip: EncapMode::Never,
                vxlan: EncapMode::Never,
                disable_bgp_export: false,
            }],
            local_subnets: vec![net("198.18.0.0/24")],
            ..FibContext::default()
        }
    }

    fn via(prefix: &str, gw: &str) -> FibRoute {
        FibRoute::unicast(net(prefix), vec![NextHop::via(ip(gw))])
    }

    /// Runs every batch the manager has against `fib` until it has none.
    fn settle(m: &mut FibManager, fib: &mut MemoryFib, now: Instant) -> Vec<Vec<FibOp>> {
        let mut batches = Vec::new();
        loop {
            let ops = m.take_batch(now, 1000);
            if ops.is_empty() {
                return batches;
            }
            let errs = fib.apply(&ops);
            m.batch_done(now, &ops, errs);
            batches.push(ops);
        }
    }

    fn own(fib: &mut MemoryFib) -> Vec<FibRoute> {
        fib.dump_own().unwrap()
    }

    #[test]
    fn nothing_is_written_before_the_table_is_loaded() {
        let mut m = FibManager::new(ctx());
        m.best_changed(net("10.244.1.0/26"), &[ip("198.18.0.12")]);
        assert!(m.take_batch(Instant::now(), 100).is_empty());
        m.load(KernelTable::default());
        assert_eq!(
            m.take_batch(Instant::now(), 100),
            vec![FibOp::Add(via("10.244.1.0/26", "198.18.0.12"))]
        );
    }

    #[test]
    fn changes_coalesce_and_outside_pool_is_not_installed() {
        let now = Instant::now();
        let mut fib = MemoryFib::new(FibConfig::default());
        let mut m = FibManager::new(ctx());
        m.load(fib.dump_table().unwrap());
        let p = net("10.244.1.0/26");
        m.best_changed(p, &[ip("198.18.0.12")]);
        m.best_changed(p, &[ip("198.18.0.13")]);
        m.best_changed(net("192.0.2.0/24"), &[ip("198.18.0.1")]);
        let b = settle(&mut m, &mut fib, now);
        assert_eq!(
            b,
            vec![vec![FibOp::Add(via("10.244.1.0/26", "198.18.0.13"))]]
        );
        // Changed, then back to what is installed: nothing to write.
        m.best_changed(p, &[ip("198.18.0.14")]);
        m.best_changed(p, &[ip("198.18.0.13")]);
        assert!(settle(&mut m, &mut fib, now).is_empty());
        // A change is a replace; a withdraw a delete.
        m.best_changed(p, &[ip("198.18.0.14")]);
        assert_eq!(
            settle(&mut m, &mut fib, now),
            vec![vec![FibOp::Replace(via("10.244.1.0/26", "198.18.0.14"))]]
        );
        m.best_changed(p, &[]);
        assert_eq!(settle(&mut m, &mut fib, now), vec![vec![FibOp::Delete(p)]]);
        assert!(own(&mut fib).is_empty());
        let s = m.stats();
        assert_eq!((s.adds, s.replaces, s.deletes, s.installed), (1, 1, 1, 0));
    }

    #[test]
    fn start_keeps_our_routes_until_convergence_then_sweeps_the_stale_one() {
        let now = Instant::now();
        let mut fib = MemoryFib::new(FibConfig::default());
        // Left by the previous run: two routes of ours.
        fib.apply(&[
            FibOp::Replace(via("10.244.1.0/26", "198.18.0.12")),
            FibOp::Replace(via("10.244.2.0/26", "198.18.0.13")),
        ]);
        let mut m = FibManager::new(ctx());
        m.load(fib.dump_table().unwrap());
        // The same route comes back from BGP: nothing is written.
        m.best_changed(net("10.244.1.0/26"), &[ip("198.18.0.12")]);
        assert!(settle(&mut m, &mut fib, now).is_empty());
        assert_eq!(
            own(&mut fib).len(),
            2,
            "the unclaimed route is kept until convergence"
        );
        m.converge();
        assert_eq!(
            settle(&mut m, &mut fib, now),
            vec![vec![FibOp::Delete(net("10.244.2.0/26"))]]
        );
        assert_eq!(own(&mut fib), vec![via("10.244.1.0/26", "198.18.0.12")]);
        assert_eq!(m.stats().swept, 1);
    }

    #[test]
    fn a_withdraw_before_convergence_still_deletes() {
        let now = Instant::now();
        let mut fib = MemoryFib::new(FibConfig::default());
        fib.apply(&[FibOp::Replace(via("10.244.1.0/26", "198.18.0.12"))]);
        let mut m = FibManager::new(ctx());
        m.load(fib.dump_table().unwrap());
        m.best_changed(net("10.244.1.0/26"), &[ip("198.18.0.12")]);
        settle(&mut m, &mut fib, now);
        m.best_changed(net("10.244.1.0/26"), &[]);
        assert_eq!(
            settle(&mut m, &mut fib, now),
            vec![vec![FibOp::Delete(net("10.244.1.0/26"))]]
        );
    }

    #[test]
    fn foreign_routes_are_never_touched_and_ours_follows_when_they_go() {
        let now = Instant::now();
        let mut fib = MemoryFib::new(FibConfig::default());
        let p = net("10.244.3.0/26");
        fib.add_foreign(via("10.244.3.0/26", "198.18.0.99"), 4);
        let mut m = FibManager::new(ctx());
        m.load(fib.dump_table().unwrap());
        m.best_changed(p, &[ip("198.18.0.12")]);
        assert!(settle(&mut m, &mut fib, now).is_empty());
        assert_eq!(m.stats().foreign, 1);
        // The other protocol's route is deleted: ours goes in.
        fib.remove_by_hand(p);
        m.kernel_events(
            vec![KernelEvent::Del {
                prefix: p,
                protocol: 4,
            }],
            RTPROT_BIRD,
        );
        assert_eq!(
            settle(&mut m, &mut fib, now),
            vec![vec![FibOp::Add(via("10.244.3.0/26", "198.18.0.12"))]]
        );
        // Someone replaces ours with a static route: left alone, and not deleted on withdraw.
        fib.add_foreign(via("10.244.3.0/26", "198.18.0.98"), 4);
        m.kernel_events(
            vec![KernelEvent::New {
                route: via("10.244.3.0/26", "198.18.0.98"),
                protocol: 4,
            }],
            RTPROT_BIRD,
        );
        m.best_changed(p, &[]);
        assert!(settle(&mut m, &mut fib, now).is_empty());
        assert_eq!(fib.table().next().unwrap().0, 4);
    }

    #[test]
    fn an_unknown_route_on_add_asks_for_a_reload() {
        let now = Instant::now();
        let mut fib = MemoryFib::new(FibConfig::default());
        let mut m = FibManager::new(ctx());
        m.load(fib.dump_table().unwrap());
        // Appears after the read, unseen.
        fib.add_foreign(via("10.244.3.0/26", "198.18.0.99"), 3);
        m.best_changed(net("10.244.3.0/26"), &[ip("198.18.0.12")]);
        settle(&mut m, &mut fib, now);
        assert!(m.wants_reload());
        m.load(fib.dump_table().unwrap());
        assert!(!m.wants_reload());
        assert!(settle(&mut m, &mut fib, now + RETRY_MAX).is_empty());
        assert_eq!(m.stats().foreign, 1);
    }

    #[test]
    fn hand_deleted_or_changed_routes_are_repaired() {
        let now = Instant::now();
        let mut fib = MemoryFib::new(FibConfig::default());
        let mut m = FibManager::new(ctx());
        m.load(fib.dump_table().unwrap());
        let p = net("10.244.1.0/26");
        m.best_changed(p, &[ip("198.18.0.12")]);
        settle(&mut m, &mut fib, now);
        fib.remove_by_hand(p);
        m.kernel_events(
            vec![KernelEvent::Del {
                prefix: p,
                protocol: RTPROT_BIRD,
            }],
            RTPROT_BIRD,
        );
        assert_eq!(
            settle(&mut m, &mut fib, now),
            vec![vec![FibOp::Add(via("10.244.1.0/26", "198.18.0.12"))]]
        );
        m.kernel_events(
            vec![KernelEvent::New {
                route: via("10.244.1.0/26", "198.18.0.77"),
                protocol: RTPROT_BIRD,
            }],
            RTPROT_BIRD,
        );
        assert_eq!(
            settle(&mut m, &mut fib, now),
            vec![vec![FibOp::Replace(via("10.244.1.0/26", "198.18.0.12"))]]
        );
        assert_eq!(m.stats().repairs, 2);
    }

    #[test]
    fn failures_are_retried_with_backoff() {
        let now = Instant::now();
        let mut fib = MemoryFib::new(FibConfig::default());
        let mut m = FibManager::new(ctx());
        m.load(fib.dump_table().unwrap());
        let p = net("10.244.1.0/26");
        fib.fail_next(
            p,
            FibError::Kernel {
                op: super::super::OpKind::Add,
                errno: libc::ENETUNREACH,
            },
        );
        m.best_changed(p, &[ip("198.18.0.12")]);
        settle(&mut m, &mut fib, now);
        assert!(own(&mut fib).is_empty());
        assert_eq!(m.poll_timeout(), Some(now + RETRY_AFTER));
        assert!(!m.has_work(now));
        assert!(settle(&mut m, &mut fib, now).is_empty());
        assert!(m.has_work(now + RETRY_AFTER));
        settle(&mut m, &mut fib, now + RETRY_AFTER);
        assert_eq!(own(&mut fib).len(), 1);
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn blackholes_and_context_changes() {
        let now = Instant::now();
        let mut fib = MemoryFib::new(FibConfig::default());
        let mut m = FibManager::new(ctx());
        m.load(fib.dump_table().unwrap());
        m.set_blackholes([net("10.244.7.0/26")]);
        m.best_changed(net("10.244.1.0/26"), &[ip("198.18.9.12")]);
        settle(&mut m, &mut fib, now);
        assert_eq!(
            own(&mut fib),
            vec![
                via("10.244.1.0/26", "198.18.9.12"),
                FibRoute::blackhole(net("10.244.7.0/26"))
            ]
        );
        // The pool turns IPIP CrossSubnet: the off-subnet next hop goes through tunl0.
        let mut c = ctx();
        c.pools[0].ipip = EncapMode::CrossSubnet;
        m.set_context(c);
        settle(&mut m, &mut fib, now);
        assert_eq!(
            own(&mut fib)[0],
            FibRoute::unicast(
                net("10.244.1.0/26"),
                vec![NextHop::onlink(ip("198.18.9.12"), "tunl0")]
            )
        );
        m.set_blackholes([]);
        m.withdraw_all();
        settle(&mut m, &mut fib, now);
        assert!(own(&mut fib).is_empty());
    }
}
