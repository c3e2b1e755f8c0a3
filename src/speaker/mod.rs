//! The speaker: every session plus the RIB, composed into one deterministic value.
//!
//! This is the one owner of protocol state (quinn-proto shaped): the driver feeds
//! [`Input`]s with `now`, calls [`Speaker::handle_timeout`] at [`Speaker::poll_timeout`], and
//! drains [`Speaker::poll_output`] after each batch. No I/O, no clock reads, no tasks.
//!
//! Batching: inputs only change tables and mark prefixes dirty; the decision process and
//! UPDATE generation run once, lazily, on the first `poll_output` after a batch.
//!
//! Flow control: UPDATEs for a connection are generated only while fewer than
//! [`SEND_WINDOW`] bytes are in flight (reported back by the driver with `Input::Sent`). The
//! rest waits in the peer's Adj-RIB-Out queue, so a slow peer costs at most its table size,
//! never an unbounded message queue, and never slows the other peers.
//!
//! Peer slots: a peer lives in slot `PeerIdx` of `peers` (its RIB source index) from the moment
//! it is configured until it is de-configured (`apply_config`, `reconfig.rs`); freed slots are
//! reused, so churn never grows the table. Each session gets a fresh session id (the high half
//! of its outgoing `ConnId`s), so a late event about a removed peer's connection can never be
//! taken for one of a new peer in the same slot.
//!
//! Invariants: every `by_addr` entry points at an occupied slot; every `conns` entry with
//! `peer: Some(idx)` points at an occupied slot; a free slot has no RIB state (`peer_down` ran).

pub mod query;
mod reconfig;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use tracing::{debug, info, warn};

pub use query::*;

use crate::config::{PeerConfig, SpeakerConfig};
use crate::rib::{self, PeerIdx, PeerMeta, Policy, Rib, RibCfg, SelectionCfg};
use crate::session::{ConnId, Negotiated, Session, SessionAction, SessionEvent, State, cease};
use crate::wire::{self, AsPath, DecodeError, Family, Message, Origin, PathAttrs, RouteRefresh};

/// Bytes of UPDATEs allowed in flight per connection before generation pauses.
pub const SEND_WINDOW: usize = 1 << 20;
/// Prefixes packed per generation step (bounds the work done per call).
const PREFIXES_PER_STEP: usize = 8192;
/// How long paths kept from a restarted peer may stay stale once its session is back, if it
/// never sends End-of-RIB (FRR's `stalepath-time` default).
pub const STALE_PATH_TIME: std::time::Duration = std::time::Duration::from_secs(360);
/// Dirty prefixes decided per flush: a big batch (a full table from a new peer) is decided in
/// slices, and the driver serves KEEPALIVEs, timers and the API between them.
const DECISION_STEP: usize = 16_384;

/// Everything the driver tells the speaker.
#[derive(Debug)]
pub enum Input {
    /// A TCP connection from `remote` was accepted on `local`.
    Accepted {
        conn: ConnId,
        remote: SocketAddr,
        local: SocketAddr,
    },
    /// An outgoing connection requested by `Output::Connect` is up.
    Connected { conn: ConnId, local: SocketAddr },
    /// An outgoing connection failed; `reason` is shown to operators.
    ConnectFailed { conn: ConnId, reason: String },
    /// One framed message.
    Frame { conn: ConnId, frame: Bytes },
    /// The framing check failed (header error).
    FrameError { conn: ConnId, error: DecodeError },
    /// The connection closed or failed.
    Closed { conn: ConnId },
    /// The driver wrote `bytes` of what it was given for `conn` (flow-control credit).
    Sent { conn: ConnId, bytes: usize },
    /// Originate a prefix locally.
    Originate(IpNet),
    /// Stop originating a prefix.
    WithdrawLocal(IpNet),
    /// Administrative shutdown of every session (Cease/Administrative Shutdown).
    Shutdown,
    /// Shutdown for a restart: peers that negotiated graceful restart are left to keep our
    /// routes (the connection is closed without NOTIFICATION, `SessionEvent::StopForRestart`);
    /// the others get Administrative Shutdown.
    ShutdownForRestart,
}

/// Everything the speaker asks the driver to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Connect {
        conn: ConnId,
        remote: SocketAddr,
        bind: Option<IpAddr>,
    },
    Send {
        conn: ConnId,
        bytes: Bytes,
    },
    /// Flush pending writes, then close.
    Close {
        conn: ConnId,
    },
    Event(SpeakerEvent),
}

#[derive(Debug)]
struct Peer {
    cfg: PeerConfig,
    session: Session,
    since: Instant,
    info: String,
    /// Families whose End-of-RIB this session received (RFC 4724 §2).
    eor_in: Vec<Family>,
    /// While this peer's paths are kept as stale (graceful restart helper): when to flush
    /// what is still stale (its restart time while down, [`STALE_PATH_TIME`] once back).
    gr_deadline: Option<Instant>,
    /// The peer's tracing span (`peer{peer=… remote_as=…}`), entered while the speaker works
    /// on this peer's behalf, so every log line about it carries the peer's identity.
    span: tracing::Span,
}

/// The span every log line about peer `pc` is emitted in.
fn peer_span(pc: &PeerConfig) -> tracing::Span {
    tracing::info_span!("peer", peer = %pc.address, remote_as = pc.remote_as)
}

/// Session ids are below 2^31: `ConnId`s with the top bit set belong to the driver (accepted).
const SESSION_ID_LIMIT: u32 = 1 << 31;

#[derive(Debug)]
struct ConnInfo {
    peer: Option<PeerIdx>,
    local: Option<SocketAddr>,
    in_flight: usize,
}

/// The speaker. See the module documentation.
#[derive(Debug)]
pub struct Speaker {
    cfg: SpeakerConfig,
    started: Instant,
    /// Peer slots, indexed by `PeerIdx`; `None` is a free slot (listed in `free`).
    peers: Vec<Option<Peer>>,
    free: Vec<PeerIdx>,
    /// The next session id to hand out (see the module documentation).
    next_session: u32,
    /// True once `next_session` wrapped: from then on a candidate id is checked against the
    /// live sessions.
    session_ids_wrapped: bool,
    by_addr: FxHashMap<IpAddr, PeerIdx>,
    conns: FxHashMap<ConnId, ConnInfo>,
    rib: Rib,
    outputs: VecDeque<Output>,
    scratch: Vec<SessionAction>,
    needs_flush: bool,
    updates_received: u64,
    updates_sent: u64,
    /// Sessions to start again at a time (after a maximum-prefix shutdown): (when, slot,
    /// session id, so a reused slot is never started by mistake).
    restarts: Vec<(Instant, PeerIdx, u32)>,
    /// Graceful restart of this speaker (RFC 4724 §4.1): while set, our OPENs carry the R
    /// bit and peers that negotiated graceful restart get no UPDATE (nor End-of-RIB) until
    /// every peer sent End-of-RIB or the deadline passes.
    recovery: Option<Recovery>,
}

/// See `Speaker::begin_restart_recovery`.
#[derive(Debug)]
struct Recovery {
    deadline: Instant,
    /// Until then peers that are not Established are waited for too; afterwards only the
    /// Established ones (a dead peer must not hold back every other for the whole deferral,
    /// the BIRD behaviour of projectcalico/calico#5262).
    connect_grace: Instant,
    grace_over: bool,
}

/// How long recovery waits for configured peers that have not come up yet.
pub const RECOVERY_CONNECT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl Speaker {
    /// A speaker with every configured session started and local prefixes originated.
    pub fn new(cfg: SpeakerConfig, now: Instant) -> Self {
        let rib = Rib::new(rib_cfg(&cfg));
        let mut s = Speaker {
            started: now,
            peers: Vec::new(),
            free: Vec::new(),
            next_session: 0,
            session_ids_wrapped: false,
            by_addr: FxHashMap::default(),
            conns: FxHashMap::default(),
            rib,
            outputs: VecDeque::new(),
            scratch: Vec::new(),
            needs_flush: true,
            updates_received: 0,
            updates_sent: 0,
            restarts: Vec::new(),
            recovery: None,
            cfg,
        };
        for pc in s.cfg.neighbors.clone() {
            s.add_peer(now, pc);
        }
        for p in s.cfg.originate.clone() {
            s.rib.originate(p, local_attrs());
        }
        s
    }

    /// [`Speaker::new`] with `policy` in place before any session can come up, so the very
    /// first UPDATEs already follow it.
    pub fn with_policy(cfg: SpeakerConfig, policy: Arc<dyn Policy>, now: Instant) -> Self {
        let mut s = Speaker::new(cfg, now);
        s.rib.set_policy(policy);
        s
    }

    /// Installs a new import/export policy live. Every Established peer's advertisements are
    /// re-evaluated against it at once ([`Rib::set_policy`]): prefixes it now accepts are
    /// announced, prefixes it now rejects are withdrawn, nothing else is re-sent, and no
    /// session is reset. Routes already received are not re-imported.
    pub fn set_policy(&mut self, policy: Arc<dyn Policy>) {
        self.rib.set_policy(policy);
        self.needs_flush = true;
    }

    pub fn config(&self) -> &SpeakerConfig {
        &self.cfg
    }

    /// Starts graceful-restart recovery (RFC 4724 §4.1, the restarting speaker): call right
    /// after [`Speaker::new`], before any connection. Our OPENs carry the R bit; UPDATEs to
    /// peers that negotiated graceful restart (which keep our routes meanwhile) are deferred
    /// until every peer is Established and sent End-of-RIB — peers that are restarting
    /// themselves (R bit) or do not do graceful restart are not waited for, and peers that are
    /// not up within [`RECOVERY_CONNECT_GRACE`] neither — or until `deferral` has passed. No
    /// effect without graceful restart in the configuration.
    pub fn begin_restart_recovery(&mut self, now: Instant, deferral: std::time::Duration) {
        if self.cfg.graceful_restart_time.is_none() || deferral.is_zero() {
            return;
        }
        self.recovery = Some(Recovery {
            deadline: now + deferral,
            connect_grace: now + RECOVERY_CONNECT_GRACE.min(deferral),
            grace_over: false,
        });
        for p in self.peers.iter_mut().flatten() {
            p.session.set_restarting(true);
        }
        info!(
            deferral_s = deferral.as_secs(),
            "graceful restart: recovering (R bit set, UPDATEs to graceful-restart peers deferred)"
        );
    }

    /// True while graceful-restart recovery is in progress (Calico's readiness waits for it).
    pub fn recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// Ends recovery when every peer is in sync, or when its deadline has passed.
    fn check_recovery(&mut self, deadline_passed: bool) {
        let Some(r) = &self.recovery else {
            return;
        };
        let wait_for_down = !r.grace_over;
        let synced = !self.rib.has_dirty()
            && self
                .live_peers()
                .all(|(_, p)| match p.session.established() {
                    None => !wait_for_down,
                    Some((_, n)) => match &n.peer_graceful_restart {
                        Some(g) if !g.restart_state => {
                            n.families.iter().all(|f| p.eor_in.contains(f))
                        }
                        _ => true,
                    },
                });
        if !synced && !deadline_passed {
            return;
        }
        self.recovery = None;
        self.needs_flush = true;
        for p in self.peers.iter_mut().flatten() {
            p.session.set_restarting(false);
        }
        if synced {
            info!("graceful restart: recovery done, every peer sent End-of-RIB");
        } else {
            info!("graceful restart: recovery deferral timer expired");
        }
    }

    /// Puts a new peer in a free slot (or a new one) and starts its session. `self.cfg` must
    /// already be the configuration `pc` belongs to.
    fn add_peer(&mut self, now: Instant, pc: PeerConfig) -> PeerIdx {
        let mut session = Session::new(self.alloc_session_id(), pc.session(&self.cfg));
        session.set_restarting(self.recovery.is_some());
        let span = peer_span(&pc);
        let peer = Peer {
            cfg: pc,
            session,
            since: now,
            info: String::new(),
            eor_in: Vec::new(),
            gr_deadline: None,
            span,
        };
        let addr = canonical(peer.cfg.address);
        let idx = match self.free.pop() {
            Some(idx) => {
                self.peers[idx as usize] = Some(peer);
                idx
            }
            None => {
                self.peers.push(Some(peer));
                (self.peers.len() - 1) as PeerIdx
            }
        };
        self.by_addr.insert(addr, idx);
        self.session_event(now, idx, SessionEvent::Start);
        idx
    }

    /// A session id no live session uses. Ids count up (wrapping below 2^31), so one is only
    /// reused after 2^31 sessions, long after any event about its connections is gone.
    fn alloc_session_id(&mut self) -> u32 {
        loop {
            let id = self.next_session;
            self.next_session = (self.next_session + 1) % SESSION_ID_LIMIT;
            if self.next_session == 0 {
                self.session_ids_wrapped = true;
            }
            if !self.session_ids_wrapped || !self.live_peers().any(|(_, p)| p.session.id() == id) {
                return id;
            }
        }
    }

    /// The occupied slots.
    fn live_peers(&self) -> impl Iterator<Item = (PeerIdx, &Peer)> {
        self.peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i as PeerIdx, p)))
    }

    /// Indices of the occupied slots.
    fn peer_indices(&self) -> Vec<PeerIdx> {
        self.live_peers().map(|(i, _)| i).collect()
    }

    fn peer(&self, idx: PeerIdx) -> Option<&Peer> {
        self.peers.get(idx as usize).and_then(Option::as_ref)
    }

    fn peer_mut(&mut self, idx: PeerIdx) -> Option<&mut Peer> {
        self.peers.get_mut(idx as usize).and_then(Option::as_mut)
    }

    /// Handles one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.needs_flush = true;
        match input {
            Input::Accepted {
                conn,
                remote,
                local,
            } => {
                let addr = canonical(remote.ip());
                match self.by_addr.get(&addr).copied() {
                    Some(idx) => {
                        self.conns.insert(
                            conn,
                            ConnInfo {
                                peer: Some(idx),
                                local: Some(local),
                                in_flight: 0,
                            },
                        );
                        self.session_event(now, idx, SessionEvent::Accepted { conn });
                    }
                    None => {
                        // RFC 4271 §8.2.1.1: connections from unconfigured addresses are refused.
                        info!(%remote, "connection from unknown peer refused");
                        self.outputs.push_back(Output::Close { conn });
                    }
                }
            }
            Input::Connected { conn, local } => match self.conn_peer(conn) {
                Some(idx) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.local = Some(local);
                    }
                    self.session_event(now, idx, SessionEvent::Connected { conn });
                }
                // An attempt nobody waits for any more (given up, or its peer was removed):
                // the driver holds a socket for it, so have it closed.
                None => self.outputs.push_back(Output::Close { conn }),
            },
            Input::ConnectFailed { conn, reason } => {
                if let Some(idx) = self.conn_peer(conn) {
                    self.conns.remove(&conn);
                    if let Some(p) = self.peer_mut(idx) {
                        p.info = format!("Connect Socket: {reason}");
                    }
                    self.session_event(now, idx, SessionEvent::ConnectFailed { conn });
                }
            }
            Input::Frame { conn, frame } => {
                if let Some(idx) = self.conn_peer(conn) {
                    self.session_event(now, idx, SessionEvent::Message { conn, frame });
                }
            }
            Input::FrameError { conn, error } => {
                if let Some(idx) = self.conn_peer(conn) {
                    if let Some(p) = self.peer(idx) {
                        p.span.in_scope(|| warn!(%error, "framing error"));
                    }
                    self.session_event(now, idx, SessionEvent::FramingError { conn, error });
                }
            }
            Input::Closed { conn } => {
                if let Some(idx) = self.conn_peer(conn) {
                    self.conns.remove(&conn);
                    self.session_event(now, idx, SessionEvent::Closed { conn });
                }
            }
            Input::Sent { conn, bytes } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.in_flight = c.in_flight.saturating_sub(bytes);
                }
            }
            Input::Originate(p) => self.rib.originate(p, local_attrs()),
            Input::WithdrawLocal(p) => self.rib.withdraw_local(p),
            Input::Shutdown => {
                for idx in self.peer_indices() {
                    let ev = SessionEvent::Stop {
                        subcode: cease::ADMIN_SHUTDOWN,
                        data: Bytes::new(),
                    };
                    self.session_event(now, idx, ev);
                }
            }
            Input::ShutdownForRestart => {
                for idx in self.peer_indices() {
                    self.session_event(now, idx, SessionEvent::StopForRestart);
                }
            }
        }
    }

    /// Runs an operator command.
    pub fn command(&mut self, now: Instant, cmd: Command) -> Result<(), QueryError> {
        self.needs_flush = true;
        match cmd {
            Command::RefreshInbound => {
                for idx in self.peer_indices() {
                    let Some((conn, neg)) = self
                        .peer(idx)
                        .and_then(|p| p.session.established())
                        .map(|(c, n)| (c, n.clone()))
                    else {
                        continue;
                    };
                    for f in &neg.families {
                        self.request_refresh(conn, &neg, *f);
                    }
                }
                Ok(())
            }
            Command::ResetPeer { address, soft } => {
                let idx = *self
                    .by_addr
                    .get(&canonical(address))
                    .ok_or(QueryError::NoSuchPeer(address))?;
                if soft {
                    let established = self
                        .peer(idx)
                        .and_then(|p| p.session.established())
                        .map(|(c, n)| (c, n.clone()));
                    if let Some((conn, neg)) = established {
                        for f in &neg.families {
                            self.request_refresh(conn, &neg, *f);
                            self.rib.refresh_out(idx, *f);
                        }
                    }
                } else {
                    let stop = SessionEvent::Stop {
                        subcode: cease::ADMIN_RESET,
                        data: Bytes::new(),
                    };
                    self.session_event(now, idx, stop);
                    self.session_event(now, idx, SessionEvent::Start);
                }
                Ok(())
            }
        }
    }

    /// Asks the peer on `conn` to send `family` again (RFC 2918), when it negotiated route
    /// refresh.
    fn request_refresh(&mut self, conn: ConnId, neg: &Negotiated, family: Family) {
        if !neg.route_refresh {
            return;
        }
        let mut buf = BytesMut::new();
        let rr = Message::RouteRefresh(RouteRefresh { family, subtype: 0 });
        if wire::encode_message(&rr, &neg.codec, &mut buf).is_ok() {
            self.outputs.push_back(Output::Send {
                conn,
                bytes: buf.freeze(),
            });
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.restarts.iter().any(|r| r.0 <= now) {
            let (due, later): (Vec<_>, Vec<_>) = self.restarts.drain(..).partition(|r| r.0 <= now);
            self.restarts = later;
            for (_, idx, id) in due {
                if self.peer(idx).is_some_and(|p| p.session.id() == id) {
                    self.session_event(now, idx, SessionEvent::Start);
                    self.needs_flush = true;
                }
            }
        }
        if let Some(r) = self.recovery.as_mut()
            && !r.grace_over
            && r.connect_grace <= now
        {
            r.grace_over = true;
            self.needs_flush = true;
        }
        self.check_recovery(self.recovery.as_ref().is_some_and(|r| r.deadline <= now));
        for idx in 0..self.peers.len() as PeerIdx {
            let Some(peer) = self.peers[idx as usize].as_mut() else {
                continue;
            };
            if peer.gr_deadline.is_some_and(|t| t <= now) {
                peer.gr_deadline = None;
                let n = self.rib.flush_stale(idx, None);
                if n > 0 {
                    peer.span.in_scope(|| {
                        info!(removed = n, "graceful restart: stale routes timed out")
                    });
                }
                self.needs_flush = true;
            }
            if peer.session.poll_timeout().is_some_and(|t| t <= now) {
                let mut actions = std::mem::take(&mut self.scratch);
                peer.session.handle_timeout(now, &mut actions);
                self.apply_actions(now, idx, &mut actions);
                self.scratch = actions;
                self.needs_flush = true;
            }
        }
    }

    /// The earliest deadline across all sessions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.live_peers()
            .flat_map(|(_, p)| [p.session.poll_timeout(), p.gr_deadline])
            .flatten()
            .chain(self.restarts.iter().map(|r| r.0))
            .chain(self.recovery.as_ref().map(|r| {
                if r.grace_over {
                    r.deadline
                } else {
                    r.connect_grace
                }
            }))
            .min()
    }

    /// The next thing for the driver to do; `None` when idle. Runs the decision process and
    /// UPDATE generation first when inputs arrived since the last call.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() && self.needs_flush {
            self.needs_flush = false;
            self.flush();
            if self.rib.has_dirty() {
                self.needs_flush = true;
            }
        }
        self.outputs.pop_front()
    }

    fn flush(&mut self) {
        let changes = self.rib.run_decision_step(DECISION_STEP);
        // The deadline is checked in handle_timeout; being in sync ends recovery here.
        self.check_recovery(false);
        for change in changes {
            let next_hops: Vec<IpAddr> = change
                .paths
                .iter()
                .filter_map(|p| p.next_hop_addr())
                .collect();
            let peer = change.paths.first().and_then(|p| {
                (p.src != rib::LOCAL)
                    .then(|| self.peer(p.src).map(|x| x.cfg.address))
                    .flatten()
            });
            debug!(prefix = %change.prefix, ?next_hops, "best path changed");
            self.outputs
                .push_back(Output::Event(SpeakerEvent::BestPath {
                    prefix: change.prefix,
                    next_hops,
                    peer,
                }));
        }
        let mut msgs = Vec::new();
        for idx in 0..self.peers.len() {
            let Some((conn, neg)) = self.peers[idx]
                .as_ref()
                .and_then(|p| p.session.established())
            else {
                continue;
            };
            if self.recovery.is_some() && neg.peer_graceful_restart.is_some() {
                // Restarting: this peer keeps our old routes until our End-of-RIB; it gets
                // the table once every peer's is in (RFC 4724 §4.1).
                continue;
            }
            loop {
                let in_flight = self.conns.get(&conn).map_or(usize::MAX, |c| c.in_flight);
                if in_flight >= SEND_WINDOW || !self.rib.has_pending(idx as PeerIdx) {
                    break;
                }
                msgs.clear();
                let n = self
                    .rib
                    .take_updates(idx as PeerIdx, PREFIXES_PER_STEP, &mut msgs);
                let bytes: usize = msgs.iter().map(|m| m.len()).sum();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.in_flight += bytes;
                }
                if let Some(p) = self.peers[idx].as_mut() {
                    p.session.note_sent(n as u64, n as u64);
                }
                self.updates_sent += n as u64;
                for m in msgs.drain(..) {
                    self.outputs.push_back(Output::Send { conn, bytes: m });
                }
            }
        }
    }

    /// Initial convergence: every configured peer is Established and has sent End-of-RIB for
    /// every negotiated family, and the decision process has nothing left to run. A peer that
    /// never comes up keeps this false; callers pair it with a timeout (the FIB sweep does).
    pub fn initial_sync_done(&self) -> bool {
        !self.rib.has_dirty()
            && self.live_peers().all(|(_, p)| {
                p.session
                    .established()
                    .is_some_and(|(_, n)| n.families.iter().all(|f| p.eor_in.contains(f)))
            })
    }

    /// True when more UPDATE generation is waiting only for flow-control credit.
    pub fn wants_flush(&self) -> bool {
        self.needs_flush
    }

    fn conn_peer(&self, conn: ConnId) -> Option<PeerIdx> {
        self.conns.get(&conn).and_then(|c| c.peer).or_else(|| {
            // Outgoing ConnIds carry the session id in their high half; the session must
            // still own the connection (ids are never shared by two live sessions).
            let id = conn.0 >> 32;
            self.live_peers()
                .find(|(_, p)| u64::from(p.session.id()) == id && p.session.owns(conn))
                .map(|(i, _)| i)
        })
    }

    fn session_event(&mut self, now: Instant, idx: PeerIdx, ev: SessionEvent) {
        let Some(peer) = self.peers.get_mut(idx as usize).and_then(Option::as_mut) else {
            return;
        };
        let span = peer.span.clone();
        let _entered = span.enter();
        let mut actions = std::mem::take(&mut self.scratch);
        peer.session.handle(now, ev, &mut actions);
        self.apply_actions(now, idx, &mut actions);
        self.scratch = actions;
    }

    fn apply_actions(&mut self, now: Instant, idx: PeerIdx, actions: &mut Vec<SessionAction>) {
        let mut list = std::mem::take(actions).into_iter();
        while let Some(a) = list.next() {
            let Some(peer) = self.peers.get_mut(idx as usize).and_then(Option::as_mut) else {
                // Only reachable through a logic error (actions of a freed slot); the
                // connections involved are already closed by the removal.
                debug_assert!(false, "actions for free peer slot {idx}");
                return;
            };
            match a {
                SessionAction::Connect { conn } => {
                    self.conns.insert(
                        conn,
                        ConnInfo {
                            peer: Some(idx),
                            local: None,
                            in_flight: 0,
                        },
                    );
                    let remote = SocketAddr::new(peer.cfg.address, peer.cfg.port);
                    self.outputs.push_back(Output::Connect {
                        conn,
                        remote,
                        bind: peer.cfg.local_address,
                    });
                }
                SessionAction::Send { conn, bytes } => {
                    self.outputs.push_back(Output::Send { conn, bytes })
                }
                SessionAction::Close { conn } => {
                    self.conns.remove(&conn);
                    self.outputs.push_back(Output::Close { conn });
                }
                SessionAction::StateChange { from, to, cause } => {
                    info!(%from, %to, %cause, "session state change");
                    peer.since = now;
                    peer.info = match to {
                        State::Established => "Established".to_string(),
                        _ => match self.rib.stale_len(idx) {
                            0 => cause.to_string(),
                            n => format!("{cause}; graceful restart: {n} routes kept"),
                        },
                    };
                    let ev = SpeakerEvent::PeerState {
                        address: peer.cfg.address,
                        from,
                        to,
                        cause: cause.to_string(),
                    };
                    self.outputs.push_back(Output::Event(ev));
                }
                SessionAction::Established { conn, negotiated } => {
                    let local = self.conns.get(&conn).and_then(|c| c.local);
                    let (mut v4, mut v6) = (None, None);
                    match local.map(|l| canonical(l.ip())) {
                        Some(IpAddr::V4(a)) => v4 = Some(a),
                        Some(IpAddr::V6(a)) => v6 = Some(a),
                        None => {}
                    }
                    v4 = self.cfg.next_hop_ipv4.or(v4);
                    v6 = self.cfg.next_hop_ipv6.or(v6);
                    let meta = PeerMeta {
                        address: peer.cfg.address,
                        remote_as: negotiated.remote_as,
                        local_as: peer.cfg.local_as,
                        remote_id: negotiated.remote_id,
                        role: peer.cfg.role,
                        next_hop: peer.cfg.next_hop,
                        allowed_local_as: peer.cfg.allowed_local_as,
                        local_v4: v4,
                        local_v6: v6,
                        families: negotiated.families.clone(),
                        codec: negotiated.codec.clone(),
                    };
                    peer.eor_in.clear();
                    self.rib.peer_up(idx, meta);
                    if self.rib.stale_len(idx) > 0 {
                        // RFC 4724 §4.2: stale families the peer no longer lists with the F
                        // bit (or no longer negotiates) go at once; the rest wait for its
                        // End-of-RIB, bounded by the stale-path time.
                        let keep: Vec<Family> = negotiated
                            .peer_graceful_restart
                            .as_ref()
                            .map(|g| {
                                g.families
                                    .iter()
                                    .filter(|f| {
                                        f.forwarding_preserved
                                            && negotiated.families.contains(&f.family)
                                    })
                                    .map(|f| f.family)
                                    .collect()
                            })
                            .unwrap_or_default();
                        for f in self.rib.stale_families(idx) {
                            if !keep.contains(&f) {
                                let n = self.rib.flush_stale(idx, Some(f));
                                info!(family = %f, removed = n,
                                      "graceful restart: forwarding state not preserved, stale routes removed");
                            }
                        }
                        peer.gr_deadline =
                            (self.rib.stale_len(idx) > 0).then(|| now + STALE_PATH_TIME);
                    }
                }
                SessionAction::Down { cause, retain } => {
                    peer.eor_in.clear();
                    let kept = match &retain {
                        Some(r) => self.rib.peer_down_graceful(idx, &r.families),
                        None => {
                            self.rib.peer_down(idx);
                            0
                        }
                    };
                    match retain.filter(|_| kept > 0) {
                        Some(r) => {
                            info!(%cause, stale = kept, restart_time_s = r.restart_time.as_secs(),
                                  "session down, routes kept as stale (graceful restart)");
                            peer.gr_deadline = Some(now + r.restart_time);
                        }
                        None => {
                            info!(%cause, "session down, routes withdrawn");
                            peer.gr_deadline = None;
                        }
                    }
                }
                SessionAction::Update(u) => {
                    self.updates_received += 1;
                    if let Some(e) = &u.treat_as_withdraw {
                        warn!(type_code = e.type_code, subcode = e.subcode,
                              data = %hex(&e.data), "malformed attribute: treat-as-withdraw (RFC 7606)");
                    }
                    for e in &u.discarded {
                        warn!(type_code = e.type_code, subcode = e.subcode,
                              data = %hex(&e.data), "malformed attribute discarded (RFC 7606)");
                    }
                    if let Some(f) = u.end_of_rib() {
                        debug!(family = %f, "end-of-rib received");
                        if !peer.eor_in.contains(&f) {
                            peer.eor_in.push(f);
                        }
                        let n = self.rib.flush_stale(idx, Some(f));
                        if n > 0 {
                            info!(family = %f, removed = n,
                                  "graceful restart: end-of-rib, stale routes not re-announced removed");
                        }
                        if peer.gr_deadline.is_some() && self.rib.stale_len(idx) == 0 {
                            peer.gr_deadline = None;
                        }
                    }
                    self.rib.apply_update(idx, *u);
                    if let Some(m) = peer.cfg.max_prefixes
                        && self.rib.adj_in_len(idx) > m.limit as usize
                    {
                        // Nothing more from this connection is applied.
                        drop(list);
                        self.max_prefixes_exceeded(now, idx, m);
                        return;
                    }
                }
                SessionAction::RouteRefresh(rr) => self.rib.refresh_out(idx, rr.family),
            }
        }
    }

    /// Closes a session whose peer sent more prefixes than allowed: Cease / Maximum Number of
    /// Prefixes Reached with the RFC 4486 data (AFI, SAFI, the limit), its routes withdrawn,
    /// and the session left down until `restart_after` (if any) or an operator reset.
    fn max_prefixes_exceeded(&mut self, now: Instant, idx: PeerIdx, m: crate::config::MaxPrefixes) {
        let c = self.rib.peer_counts(idx);
        let family = if c.received_v6 > c.received_v4 {
            Family::IPV6_UNICAST
        } else {
            Family::IPV4_UNICAST
        };
        let mut data = BytesMut::with_capacity(7);
        data.extend_from_slice(&family.afi.to_be_bytes());
        data.extend_from_slice(&[family.safi]);
        data.extend_from_slice(&m.limit.to_be_bytes());
        if let Some(p) = self.peer(idx) {
            let _entered = p.span.enter();
            warn!(
                limit = m.limit,
                received = c.received_v4 + c.received_v6,
                restart_after_s = m.restart_after.map(|d| d.as_secs()),
                "maximum prefixes exceeded: closing the session (Cease/1)"
            );
        }
        let stop = SessionEvent::Stop {
            subcode: wire::cease_subcode::MAX_PREFIXES,
            data: data.freeze(),
        };
        self.session_event(now, idx, stop);
        if let (Some(after), Some(p)) = (m.restart_after, self.peer(idx)) {
            self.restarts.push((now + after, idx, p.session.id()));
        }
    }

    /// Answers a read-only query.
    pub fn query(&self, q: &Query) -> Result<View, QueryError> {
        match q {
            Query::Speaker => Ok(View::Speaker(SpeakerView {
                local_as: self.cfg.local_as,
                router_id: self.cfg.router_id,
                listen: self.cfg.listen,
                started: self.started,
                peers_configured: self.live_peers().count(),
                peers_established: self
                    .live_peers()
                    .filter(|(_, p)| p.session.state() == State::Established)
                    .count(),
                loc_rib_prefixes: self.rib.loc_rib_len(),
                decision_runs: self.rib.decision_runs(),
                updates_received: self.updates_received,
                updates_sent: self.updates_sent,
                fib: None,
                recovering: self.recovering(),
            })),
            Query::Peers => Ok(View::Peers(
                self.live_peers()
                    .map(|(i, p)| self.peer_view(i, p))
                    .collect(),
            )),
            Query::Peer(addr) => {
                let (idx, p) = self
                    .by_addr
                    .get(&canonical(*addr))
                    .and_then(|&i| Some((i, self.peer(i)?)))
                    .ok_or(QueryError::NoSuchPeer(*addr))?;
                Ok(View::Peer(Box::new(self.peer_view(idx, p))))
            }
            Query::Routes {
                table,
                peer,
                prefix,
            } => {
                let mut routes = self.routes(*table, *peer, *prefix)?;
                routes.sort_by_key(|r| (r.prefix, !r.best, r.peer));
                Ok(View::Routes(routes))
            }
        }
    }

    fn peer_view(&self, idx: PeerIdx, p: &Peer) -> PeerView {
        let st = p.session.stats();
        let neg = p.session.established().map(|(_, n)| n);
        let counts = self.rib.peer_counts(idx);
        let families = p
            .cfg
            .families
            .iter()
            .map(|f| {
                let v4 = *f == Family::IPV4_UNICAST;
                let received = if v4 {
                    counts.received_v4
                } else {
                    counts.received_v6
                };
                FamilyCounters {
                    family: *f,
                    received,
                    accepted: received,
                    advertised: if v4 {
                        counts.advertised_v4
                    } else {
                        counts.advertised_v6
                    },
                }
            })
            .collect();
        PeerView {
            address: p.cfg.address,
            port: p.cfg.port,
            remote_as: p.cfg.remote_as,
            local_as: p.cfg.local_as,
            role: p.cfg.role,
            origin: p.cfg.origin,
            state: p.session.state(),
            since: p.since,
            info: p.info.clone(),
            remote_id: neg.map(|n| n.remote_id),
            hold_time: neg.map_or(0, |n| n.hold_time),
            keepalive: neg.map_or(0, |n| n.keepalive),
            families,
            updates_received: st.updates_in,
            updates_sent: st.updates_out,
            messages_received: st.messages_in,
            messages_sent: st.messages_out,
            last_error: st.last_error.as_ref().map(|c| c.to_string()),
            passive: p.cfg.passive,
            description: p.cfg.description.clone(),
            established_transitions: st.established_transitions,
        }
    }

    fn routes(
        &self,
        table: TableKind,
        peer: Option<IpAddr>,
        prefix: Option<IpNet>,
    ) -> Result<Vec<RouteView>, QueryError> {
        let peer_idx = match peer {
            Some(a) => Some(
                *self
                    .by_addr
                    .get(&canonical(a))
                    .ok_or(QueryError::NoSuchPeer(a))?,
            ),
            None => None,
        };
        let addr_of = |src: PeerIdx| {
            (src != rib::LOCAL)
                .then(|| self.peer(src).map(|p| p.cfg.address))
                .flatten()
        };
        match table {
            // The kernel table is the driver's (it owns the FIB manager); a driver with a
            // FIB answers this query itself.
            TableKind::Fib => Err(QueryError::NoFib),
            TableKind::LocRib => Ok(self
                .rib
                .loc_rib(prefix)
                .into_iter()
                .filter(|(_, path, _, _)| peer_idx.is_none_or(|i| i == path.src))
                .map(|(p, path, best, reason)| RouteView {
                    stale: self.rib.is_stale(path.src, &p),
                    ..route_view(
                        p,
                        &path.attrs,
                        path.next_hop_addr(),
                        addr_of(path.src),
                        best,
                        reason.as_str(),
                    )
                })
                .collect()),
            TableKind::AdjRibIn => {
                let idx = peer_idx.ok_or(QueryError::PeerRequired(table))?;
                Ok(self
                    .rib
                    .adj_in(idx, prefix)
                    .into_iter()
                    .map(|(p, path)| RouteView {
                        stale: self.rib.is_stale(idx, &p),
                        ..route_view(
                            p,
                            &path.attrs,
                            path.next_hop_addr(),
                            addr_of(idx),
                            false,
                            "",
                        )
                    })
                    .collect())
            }
            TableKind::AdjRibOut => {
                let idx = peer_idx.ok_or(QueryError::PeerRequired(table))?;
                Ok(self
                    .rib
                    .adj_out(idx, prefix)
                    .into_iter()
                    .map(|(p, attrs, nh)| {
                        let nh = nh.map(|n| match n {
                            wire::MpNextHop::V4(a) => IpAddr::V4(a),
                            wire::MpNextHop::V6 { global, .. } => IpAddr::V6(global),
                        });
                        route_view(p, &attrs, nh, None, true, "")
                    })
                    .collect())
            }
        }
    }
}

fn route_view(
    prefix: IpNet,
    a: &PathAttrs,
    nh: Option<IpAddr>,
    peer: Option<IpAddr>,
    best: bool,
    reason: &str,
) -> RouteView {
    RouteView {
        prefix,
        next_hops: nh.into_iter().collect(),
        peer,
        as_path: a
            .as_path
            .iter()
            .flat_map(|p| p.segments.iter().flat_map(|s| s.asns.iter().copied()))
            .collect(),
        origin: a.origin,
        med: a.med,
        local_pref: a.local_pref,
        communities: a.communities.clone(),
        originator_id: a.originator_id,
        cluster_list: a.cluster_list.clone(),
        best,
        reason: reason.to_string(),
        stale: false,
        kernel: None,
    }
}

/// The RIB-wide settings a speaker configuration implies.
fn rib_cfg(cfg: &SpeakerConfig) -> RibCfg {
    RibCfg {
        local_as: cfg.local_as,
        router_id: cfg.router_id,
        cluster_id: cfg.cluster_id,
        selection: SelectionCfg {
            always_compare_med: false,
            max_ecmp: cfg.max_ecmp,
        },
    }
}

/// Attributes of a locally originated prefix: ORIGIN IGP, empty AS_PATH.
fn local_attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        ..PathAttrs::default()
    }
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) as plain IPv4.
pub fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
