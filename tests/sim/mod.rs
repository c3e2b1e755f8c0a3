//! An in-memory N-speaker harness: no sockets, no threads, one virtual clock, deterministic
//! (ARCHITECTURE.md §11.4 and rule 13; shaped like quinn-proto's `tests/util.rs` `Pair`).
//!
//! Every [`Speaker`] is driven exactly the way the real driver drives it (`handle`,
//! `poll_output` until `None`, `handle_timeout` at `poll_timeout`), but the "network" is a single
//! global FIFO of pending [`Input`]s:
//!
//! * `Output::Connect` from A to an address some live node B listens on: A gets
//!   `Input::Connected` (local address = its `bind` or its own address, an ephemeral port), B
//!   gets `Input::Accepted` with a harness-allocated `ConnId` (top bit set, unique per node).
//!   Nobody listening there (or B stopped) → A gets `Input::ConnectFailed`.
//! * `Output::Send` is split into messages with [`wire::frame_len`]; each becomes an
//!   `Input::Frame` for the other end, and the sender gets `Input::Sent` (flow-control credit).
//!   Since the queue is one FIFO, per-direction order is preserved.
//! * `Output::Close`: the other end gets `Input::Closed` after whatever was queued for it before.
//!   Anything queued *toward* a connection its owner already closed is dropped.
//!
//! Inputs are delivered one at a time, and the receiving speaker's outputs are drained right
//! after, never recursively. Virtual time only moves when nothing is pending anywhere: it jumps
//! to the earliest `poll_timeout()` of the live speakers. Nothing reads the wall clock except
//! `Instant::now()` once, as the base of the virtual clock; every observable result is
//! expressed as a `Duration` since that base, so runs are reproducible bit for bit.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipnet::IpNet;
use podbgp::config::{ConfigDiff, SpeakerConfig};
use podbgp::session::{ConnId, State};
use podbgp::speaker::{
    Command, Input, Output, PeerView, Query, QueryError, RouteView, Speaker, SpeakerEvent,
    TableKind, View,
};
use podbgp::wire::{self, Message, MpNextHop, PathAttrs, SessionCodec};

/// Deliveries processed by one [`Sim::run_idle`] before the harness declares a livelock.
pub const MAX_DELIVERIES_PER_INSTANT: u64 = 2_000_000;
/// Timer firings at one single virtual instant before the harness declares a livelock.
pub const MAX_FIRINGS_PER_INSTANT: u64 = 10_000;
/// First ephemeral port handed out for outgoing connections.
const EPHEMERAL_BASE: u16 = 49152;

/// One simulated node.
pub struct Node {
    pub speaker: Speaker,
    /// Where the node lives: its listen address (or its router id when it listens on 0.0.0.0).
    pub addr: IpAddr,
    /// The socket it accepts connections on; `None` when it does not listen.
    pub listen: Option<SocketAddr>,
    pub alive: bool,
    next_accept: u64,
    next_port: u16,
    /// Every `Output::Event`, with the virtual time it was emitted.
    pub events: Vec<(Duration, SpeakerEvent)>,
}

/// One UPDATE as it went over the simulated wire, decoded by the harness (a packet capture).
#[derive(Clone, Debug, PartialEq)]
pub struct TapUpdate {
    pub at: Duration,
    pub from: usize,
    pub to: usize,
    /// (prefix, next hop, attributes without NEXT_HOP).
    pub announced: Vec<(IpNet, Option<IpAddr>, PathAttrs)>,
    pub withdrawn: Vec<IpNet>,
}

/// One NOTIFICATION as it went over the simulated wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapNotification {
    pub at: Duration,
    pub from: usize,
    pub to: usize,
    pub code: u8,
    pub subcode: u8,
    pub data: Bytes,
}

impl TapNotification {
    /// (code, subcode) with an RFC 8538 Hard Reset (6/9) unwrapped to the NOTIFICATION it
    /// carries in its data (what a deliberate stop becomes when both sides set the N bit).
    pub fn effective(&self) -> (u8, u8) {
        match (self.code, self.subcode, &self.data[..]) {
            (6, 9, [code, subcode, ..]) => (*code, *subcode),
            _ => (self.code, self.subcode),
        }
    }
}

struct Delivery {
    to: usize,
    input: Input,
}

/// The simulation. See the module documentation.
pub struct Sim {
    base: Instant,
    now: Duration,
    pub nodes: Vec<Node>,
    queue: VecDeque<Delivery>,
    /// (node, its ConnId) → (other node, its ConnId). An entry exists while its owner has
    /// not closed the connection and has not been told it is closed.
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    /// Every UPDATE sent, decoded (see [`TapUpdate`]).
    pub tap: Vec<TapUpdate>,
    /// Every NOTIFICATION sent.
    pub notifications: Vec<TapNotification>,
    /// Virtual time of the last best-path change or Established transition anywhere.
    last_change: Duration,
    /// Total inputs delivered (for diagnostics and livelock detection).
    pub delivered: u64,
}

impl Node {
    fn boot(cfg: SpeakerConfig, now: Instant) -> Node {
        let addr = match cfg.listen {
            Some((ip, _)) if !ip.is_unspecified() => ip,
            _ => IpAddr::V4(cfg.router_id),
        };
        let listen = cfg.listen.map(|(_, port)| SocketAddr::new(addr, port));
        Node {
            speaker: Speaker::new(cfg, now),
            addr,
            listen,
            alive: true,
            next_accept: 0,
            next_port: EPHEMERAL_BASE,
            events: Vec::new(),
        }
    }
}

impl Sim {
    /// Starts one speaker per configuration, all at virtual time 0. Nothing is delivered yet.
    pub fn new(configs: Vec<SpeakerConfig>) -> Sim {
        let base = Instant::now();
        let nodes = configs
            .into_iter()
            .map(|cfg| Node::boot(cfg, base))
            .collect::<Vec<_>>();
        for (i, a) in nodes.iter().enumerate() {
            for b in &nodes[i + 1..] {
                assert_ne!(
                    a.addr, b.addr,
                    "two simulated nodes share address {}",
                    a.addr
                );
            }
        }
        Sim {
            base,
            now: Duration::ZERO,
            nodes,
            queue: VecDeque::new(),
            links: BTreeMap::new(),
            tap: Vec::new(),
            notifications: Vec::new(),
            last_change: Duration::ZERO,
            delivered: 0,
        }
    }

    // ---------------------------------------------------------------- clock and driving

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// Virtual time of the last best-path change or Established transition on any node.
    pub fn last_change(&self) -> Duration {
        self.last_change
    }

    /// Delivers everything pending at the current instant (no time passes) until no speaker
    /// has output and no input is queued.
    pub fn run_idle(&mut self) {
        let mut n = 0u64;
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                progressed |= self.drain(i);
            }
            if let Some(d) = self.queue.pop_front() {
                let to = d.to;
                self.deliver(d);
                self.drain(to);
                progressed = true;
                n += 1;
                if n > MAX_DELIVERIES_PER_INSTANT {
                    panic!(
                        "sim livelock: more than {MAX_DELIVERIES_PER_INSTANT} deliveries at \
                         t={:?} without going idle; queue holds {} inputs\n{}",
                        self.now,
                        self.queue.len(),
                        self.describe()
                    );
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// The earliest timer deadline of the live speakers, as virtual time.
    pub fn next_timeout(&self) -> Option<Duration> {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.speaker.poll_timeout())
            .min()
            .map(|t| t.saturating_duration_since(self.base))
    }

    /// Advances the clock to `at` (never backwards) and fires every timer due then.
    fn fire_timers_at(&mut self, at: Duration) {
        self.now = self.now.max(at);
        let now = self.instant();
        let mut firings = 0u64;
        loop {
            let due: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| {
                    self.nodes[i].alive
                        && self.nodes[i]
                            .speaker
                            .poll_timeout()
                            .is_some_and(|t| t <= now)
                })
                .collect();
            if due.is_empty() {
                return;
            }
            for i in due {
                self.nodes[i].speaker.handle_timeout(now);
                firings += 1;
                self.drain(i);
            }
            self.run_idle();
            if firings > MAX_FIRINGS_PER_INSTANT {
                panic!(
                    "sim livelock: timers keep firing at t={:?} ({firings} firings)\n{}",
                    self.now,
                    self.describe()
                );
            }
        }
    }

    /// Runs until `cond` holds (checked whenever the network is idle) or until `max` of
    /// virtual time has passed. Returns the virtual time at which `cond` first held.
    pub fn drive_until(
        &mut self,
        max: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let deadline = self.now + max;
        loop {
            self.run_idle();
            if cond(self) {
                return Some(self.now);
            }
            match self.next_timeout() {
                Some(t) if t <= deadline => self.fire_timers_at(t),
                _ => {
                    self.now = deadline;
                    return None;
                }
            }
        }
    }

    /// Runs for `d` of virtual time, firing every timer due in that span.
    pub fn drive_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        loop {
            self.run_idle();
            match self.next_timeout() {
                Some(t) if t <= deadline => self.fire_timers_at(t),
                _ => break,
            }
        }
        self.now = deadline;
    }

    /// Runs until nothing is pending and, for `quiet` of virtual time, no best path changed and
    /// no session reached or left Established (periodic KEEPALIVEs keep timers armed forever, so
    /// "no timer left" is never reached). Panics if that takes more than `max`. Returns the
    /// virtual time of the last change: the convergence time.
    pub fn settle(&mut self, quiet: Duration, max: Duration) -> Duration {
        let deadline = self.now + max;
        loop {
            self.run_idle();
            let target = self.last_change + quiet;
            match self.next_timeout() {
                Some(t) if t <= target => {
                    if t > deadline {
                        panic!(
                            "sim did not settle within {max:?} (now {:?}, last change {:?})\n{}",
                            self.now,
                            self.last_change,
                            self.describe()
                        );
                    }
                    self.fire_timers_at(t);
                }
                _ => {
                    self.now = self.now.max(target);
                    return self.last_change;
                }
            }
        }
    }

    /// [`Sim::settle`] with 10 s of quiet and at most 10 virtual minutes.
    pub fn drive(&mut self) -> Duration {
        self.settle(Duration::from_secs(10), Duration::from_secs(600))
    }

    // ---------------------------------------------------------------- the network

    fn push(&mut self, to: usize, input: Input) {
        self.queue.push_back(Delivery { to, input });
    }

    /// Drains every output of node `i`; true when there was any.
    fn drain(&mut self, i: usize) -> bool {
        if !self.nodes[i].alive {
            return false;
        }
        let mut any = false;
        while let Some(out) = self.nodes[i].speaker.poll_output() {
            any = true;
            self.execute(i, out);
        }
        any
    }

    fn execute(&mut self, from: usize, out: Output) {
        match out {
            Output::Connect { conn, remote, bind } => self.connect(from, conn, remote, bind),
            Output::Send { conn, bytes } => self.send(from, conn, bytes),
            Output::Close { conn } => {
                if let Some((to, their)) = self.links.remove(&(from, conn)) {
                    self.push(to, Input::Closed { conn: their });
                }
            }
            Output::Event(ev) => {
                // Convergence-relevant changes: best paths, and sessions reaching or leaving
                // Established (failing reconnection attempts to a dead peer cycle through
                // Idle/Connect/Active forever and do not count).
                let relevant = match &ev {
                    SpeakerEvent::BestPath { .. } => true,
                    SpeakerEvent::PeerState { from, to, .. } => {
                        *from == State::Established || *to == State::Established
                    }
                };
                if relevant {
                    self.last_change = self.now;
                }
                self.nodes[from].events.push((self.now, ev));
            }
        }
    }

    fn connect(&mut self, from: usize, conn: ConnId, remote: SocketAddr, bind: Option<IpAddr>) {
        let target = (0..self.nodes.len())
            .find(|&j| j != from && self.nodes[j].alive && self.nodes[j].listen == Some(remote));
        let Some(to) = target else {
            self.push(
                from,
                Input::ConnectFailed {
                    conn,
                    reason: format!("connection refused by {remote} (simulated)"),
                },
            );
            return;
        };
        let a = &mut self.nodes[from];
        let port = a.next_port;
        a.next_port = a.next_port.checked_add(1).unwrap_or(EPHEMERAL_BASE);
        let local = SocketAddr::new(bind.unwrap_or(a.addr), port);
        let b = &mut self.nodes[to];
        b.next_accept += 1;
        let their = ConnId((1 << 63) | b.next_accept);
        let b_local = b.listen.expect("target listens");
        self.links.insert((from, conn), (to, their));
        self.links.insert((to, their), (from, conn));
        self.push(from, Input::Connected { conn, local });
        self.push(
            to,
            Input::Accepted {
                conn: their,
                remote: local,
                local: b_local,
            },
        );
    }

    fn send(&mut self, from: usize, conn: ConnId, bytes: Bytes) {
        let len = bytes.len();
        let Some(&(to, their)) = self.links.get(&(from, conn)) else {
            // Written to a connection that is already gone: the bytes vanish.
            return;
        };
        let mut buf = bytes;
        while !buf.is_empty() {
            match wire::frame_len(&buf, wire::MAX_EXT_MESSAGE_LEN) {
                Ok(Some(n)) => {
                    let frame = buf.split_to(n);
                    self.record_update(from, to, &frame);
                    self.record_notification(from, to, &frame);
                    self.push(to, Input::Frame { conn: their, frame });
                }
                Ok(None) => panic!(
                    "node {from} ({}) wrote a truncated BGP message on {conn:?}: {} octets left",
                    self.nodes[from].addr,
                    buf.len()
                ),
                Err(e) => panic!(
                    "node {from} ({}) wrote an unframeable BGP message on {conn:?}: {e}",
                    self.nodes[from].addr
                ),
            }
        }
        self.push(from, Input::Sent { conn, bytes: len });
    }

    fn record_notification(&mut self, from: usize, to: usize, frame: &Bytes) {
        if frame.get(18) != Some(&3) {
            return;
        }
        match wire::decode_message(frame, &SessionCodec::default()) {
            Ok(Message::Notification(n)) => self.notifications.push(TapNotification {
                at: self.now,
                from,
                to,
                code: n.code,
                subcode: n.subcode,
                data: n.data,
            }),
            other => panic!(
                "node {from} ({}) sent a NOTIFICATION the harness cannot decode: {other:?}",
                self.nodes[from].addr
            ),
        }
    }

    fn record_update(&mut self, from: usize, to: usize, frame: &Bytes) {
        if frame.get(18) != Some(&2) {
            return;
        }
        let cx = SessionCodec {
            four_octet_as: true,
            extended_message: true,
            ibgp: self.nodes[from].speaker.config().local_as
                == self.nodes[to].speaker.config().local_as,
            ..SessionCodec::default()
        };
        let u = match wire::decode_message(frame, &cx) {
            Ok(Message::Update(u)) => u,
            other => panic!(
                "node {from} ({}) sent an UPDATE the harness cannot decode: {other:?}",
                self.nodes[from].addr
            ),
        };
        let mut announced = Vec::new();
        let mut withdrawn: Vec<IpNet> = u.withdrawn.iter().map(|n| n.prefix).collect();
        if let Some(mu) = &u.mp_unreach {
            withdrawn.extend(mu.withdrawn.iter().map(|n| n.prefix));
        }
        let mut attrs = u.attrs.clone();
        let nh = attrs.next_hop.take().map(IpAddr::V4);
        for n in &u.nlri {
            announced.push((n.prefix, nh, attrs.clone()));
        }
        if let Some(mp) = &u.mp_reach {
            let nh = Some(match mp.next_hop {
                MpNextHop::V4(a) => IpAddr::V4(a),
                MpNextHop::V6 { global, .. } => IpAddr::V6(global),
            });
            for n in &mp.nlri {
                announced.push((n.prefix, nh, attrs.clone()));
            }
        }
        self.tap.push(TapUpdate {
            at: self.now,
            from,
            to,
            announced,
            withdrawn,
        });
    }

    fn deliver(&mut self, d: Delivery) {
        let Delivery { to, input } = d;
        if !self.nodes[to].alive {
            return;
        }
        let known = |c: &ConnId| self.links.contains_key(&(to, *c));
        let ok = match &input {
            Input::Frame { conn, .. }
            | Input::Sent { conn, .. }
            | Input::Connected { conn, .. } => known(conn),
            Input::Accepted { conn, .. } => known(conn),
            Input::Closed { conn } => self.links.remove(&(to, *conn)).is_some(),
            _ => true,
        };
        if ok {
            self.delivered += 1;
            let now = self.instant();
            self.nodes[to].speaker.handle(now, input);
        }
    }

    // ---------------------------------------------------------------- interventions

    /// Node `i` dies: every connection it has is closed under its peers (they get
    /// `Input::Closed` after what was already in flight), nothing is delivered to it any more,
    /// its timers stop, and connections to its address are refused.
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].alive = false;
        let mine: Vec<(ConnId, (usize, ConnId))> = self
            .links
            .range((i, ConnId(0))..=(i, ConnId(u64::MAX)))
            .map(|(&(_, c), &other)| (c, other))
            .collect();
        for (c, (to, their)) in mine {
            self.links.remove(&(i, c));
            self.push(to, Input::Closed { conn: their });
        }
    }

    /// Node `i` dies silently (power loss, partition): nothing is delivered to it any more and
    /// its timers stop, but its peers are not told; they only notice through their hold timer.
    /// Connections to its address are refused.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
    }

    /// Boots a stopped or crashed node again with a fresh speaker built from its current
    /// configuration, at the current virtual time. Connections its previous incarnation still
    /// had are reset under their peers first (they get `Input::Closed`), and inputs still queued
    /// for the old incarnation are discarded.
    pub fn restart(&mut self, i: usize) {
        assert!(
            !self.nodes[i].alive,
            "restart of node {i}, which is running"
        );
        let mine: Vec<(ConnId, (usize, ConnId))> = self
            .links
            .range((i, ConnId(0))..=(i, ConnId(u64::MAX)))
            .map(|(&(_, c), &other)| (c, other))
            .collect();
        for (c, (to, their)) in mine {
            self.links.remove(&(i, c));
            self.push(to, Input::Closed { conn: their });
        }
        self.queue.retain(|d| d.to != i);
        let cfg = self.nodes[i].speaker.config().clone();
        let now = self.instant();
        let n = &mut self.nodes[i];
        n.speaker = Speaker::new(cfg, now);
        n.alive = true;
    }

    /// Boots one more node at the current virtual time; returns its index.
    pub fn add_node(&mut self, cfg: SpeakerConfig) -> usize {
        let node = Node::boot(cfg, self.instant());
        assert!(
            self.nodes.iter().all(|n| n.addr != node.addr),
            "two simulated nodes share address {}",
            node.addr
        );
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Applies a new configuration to node `i` live (`Speaker::apply_config`); its outputs are
    /// processed by the next drive call.
    pub fn apply_config(&mut self, i: usize, cfg: SpeakerConfig) -> ConfigDiff {
        assert!(self.nodes[i].alive, "apply_config to stopped node {i}");
        let now = self.instant();
        self.nodes[i].speaker.apply_config(now, cfg)
    }

    /// Hands `input` to node `i` now (outputs are processed by the next drive call).
    pub fn input(&mut self, i: usize, input: Input) {
        assert!(self.nodes[i].alive, "input to stopped node {i}");
        let now = self.instant();
        self.nodes[i].speaker.handle(now, input);
    }

    pub fn originate(&mut self, i: usize, prefix: IpNet) {
        self.input(i, Input::Originate(prefix));
    }

    pub fn withdraw(&mut self, i: usize, prefix: IpNet) {
        self.input(i, Input::WithdrawLocal(prefix));
    }

    /// Runs an operator command on node `i`.
    pub fn command(&mut self, i: usize, cmd: Command) {
        let now = self.instant();
        self.nodes[i]
            .speaker
            .command(now, cmd.clone())
            .unwrap_or_else(|e| panic!("command {cmd:?} on node {i} failed: {e}"));
    }

    // ---------------------------------------------------------------- observations

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// TCP connections node `i` has accepted so far (all incarnations).
    pub fn accepted(&self, i: usize) -> u64 {
        self.nodes[i].next_accept
    }

    pub fn addr(&self, i: usize) -> IpAddr {
        self.nodes[i].addr
    }

    pub fn router_id(&self, i: usize) -> Ipv4Addr {
        self.nodes[i].speaker.config().router_id
    }

    /// The node living at `addr`.
    pub fn index_of(&self, addr: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr)
    }

    pub fn query(&self, i: usize, q: &Query) -> Result<View, QueryError> {
        self.nodes[i].speaker.query(q)
    }

    /// A route table of node `i` (panics on a query error, e.g. an unknown peer).
    pub fn routes(
        &self,
        i: usize,
        table: TableKind,
        peer: Option<IpAddr>,
        prefix: Option<IpNet>,
    ) -> Vec<RouteView> {
        let q = Query::Routes {
            table,
            peer,
            prefix,
        };
        match self.query(i, &q) {
            Ok(View::Routes(r)) => r,
            other => panic!("node {i}: {q:?} answered {other:?}"),
        }
    }

    /// Every Loc-RIB candidate path of node `i` (sorted by prefix, best first, then peer).
    pub fn loc_rib(&self, i: usize) -> Vec<RouteView> {
        self.routes(i, TableKind::LocRib, None, None)
    }

    /// One route per prefix: the first path marked best (with ECMP, several are marked; the
    /// listing orders them by peer address, the decision's own final tie-breaker).
    pub fn best_routes(&self, i: usize) -> Vec<RouteView> {
        let mut out: Vec<RouteView> = Vec::new();
        for r in self.loc_rib(i) {
            if r.best && out.last().is_none_or(|l| l.prefix != r.prefix) {
                out.push(r);
            }
        }
        out
    }

    pub fn best(&self, i: usize, prefix: IpNet) -> Option<RouteView> {
        self.routes(i, TableKind::LocRib, None, Some(prefix))
            .into_iter()
            .find(|r| r.best)
    }

    /// What node `i` holds from the peer at `peer` (its Adj-RIB-In, after import checks).
    pub fn adj_rib_in(&self, i: usize, peer: IpAddr) -> Vec<RouteView> {
        self.routes(i, TableKind::AdjRibIn, Some(peer), None)
    }

    /// What node `i` currently advertises to the peer at `peer`.
    pub fn adj_rib_out(&self, i: usize, peer: IpAddr) -> Vec<RouteView> {
        self.routes(i, TableKind::AdjRibOut, Some(peer), None)
    }

    pub fn peers(&self, i: usize) -> Vec<PeerView> {
        match self.query(i, &Query::Peers) {
            Ok(View::Peers(p)) => p,
            other => panic!("node {i}: Peers answered {other:?}"),
        }
    }

    /// Number of Established sessions of node `i`.
    pub fn established(&self, i: usize) -> usize {
        self.peers(i)
            .iter()
            .filter(|p| p.state == State::Established)
            .count()
    }

    /// True when every configured session of every live node is Established.
    pub fn all_established(&self) -> bool {
        (0..self.len())
            .filter(|&i| self.nodes[i].alive)
            .all(|i| self.peers(i).iter().all(|p| p.state == State::Established))
    }

    /// A multi-line summary (peer states and table sizes), for assertion messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive {
                let _ = writeln!(s, "  node {i} {}: stopped", n.addr);
                continue;
            }
            let peers = self.peers(i);
            let states: Vec<String> = peers
                .iter()
                .map(|p| format!("{}={}", p.address, p.state))
                .collect();
            let _ = writeln!(
                s,
                "  node {i} {}: {} prefixes with a best path; peers [{}]",
                n.addr,
                self.best_routes(i).len(),
                states.join(", ")
            );
        }
        s
    }

    /// The UPDATEs node `from` sent to node `to` that announced `prefix`, with their attributes.
    pub fn announcements(
        &self,
        from: usize,
        to: usize,
        prefix: IpNet,
    ) -> Vec<(Duration, Option<IpAddr>, PathAttrs)> {
        self.tap
            .iter()
            .filter(|u| u.from == from && u.to == to)
            .flat_map(|u| {
                u.announced
                    .iter()
                    .filter(|(p, _, _)| *p == prefix)
                    .map(move |(_, nh, a)| (u.at, *nh, a.clone()))
            })
            .collect()
    }
}
