//! Routing tables and the decision process (RFC 4271 §3.2, §9; RFC 4456).
//!
//! * **Adj-RIB-In** is held inside the Loc-RIB: each destination keeps at most one path per
//!   source (peer or local), and each peer keeps the set of its prefixes so a session drop is
//!   O(its routes).
//! * **Loc-RIB**: prefix → candidate paths, the best path and the ECMP set, with the decision
//!   reason. Changes only mark prefixes dirty; [`Rib::run_decision`] runs once per batch of
//!   input (holo's coalesced trigger), not once per prefix.
//! * **Adj-RIB-Out** per peer: what we last decided to advertise, plus a FIFO of prefixes
//!   whose advertisement changed. [`Rib::take_updates`] packs that FIFO into UPDATEs grouped by
//!   interned attribute set; the per-peer state is bounded by the table size, never by how slow
//!   the peer reads.
//!
//! Memory layout (per route, since a reflector holds every route once per client): each
//! destination lives in a slot of one array and has a stable [`DestId`] while anything refers
//! to it. A peer's Adj-RIB-Out is a dense `Vec<u32>` indexed by that id: 0 for "not
//! advertised", else the id of an interned (exported attributes, next hop) pair, with the top
//! bit marking "queued for sending". So one advertised route costs a peer 4 bytes, and its
//! send queue 4 more while it waits (BIRD keeps one bit per route and channel; a hash map
//! entry per route and peer cost ~100 bytes).
//!
//! Export rules live in `export.rs`, the comparison in `decision.rs`.

pub mod attrs;
pub mod decision;
mod export;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::{SmallVec, smallvec};

use crate::config::{NextHopMode, PeerRole};
use crate::wire::{self, Family, MpNextHop, Nlri, PathAttrs, SessionCodec, Update};
pub use attrs::Interner;
pub use decision::{Candidate, Decision, Reason, SelectionCfg, Winner, compare, select};

/// Index of a peer in the speaker's peer table.
pub type PeerIdx = u32;

/// The source index used for locally originated paths.
pub const LOCAL: PeerIdx = u32::MAX;

/// One path in the Loc-RIB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub src: PeerIdx,
    /// Interned attributes, with NEXT_HOP removed (the next hop lives in `next_hop`).
    pub attrs: Arc<PathAttrs>,
    /// `None` for locally originated paths (exported as next-hop-self).
    pub next_hop: Option<MpNextHop>,
}

impl Path {
    /// The forwarding address of this path.
    pub fn next_hop_addr(&self) -> Option<IpAddr> {
        self.next_hop.map(|n| match n {
            MpNextHop::V4(a) => IpAddr::V4(a),
            MpNextHop::V6 { global, .. } => IpAddr::V6(global),
        })
    }
}

/// Index of a destination's slot (see the module documentation).
pub type DestId = u32;

#[derive(Debug)]
struct Dest {
    prefix: IpNet,
    /// False for a free slot.
    live: bool,
    /// Candidates, inline when there is one (most destinations): no heap block per path.
    /// The decision process moves the ECMP set it chose to the front, best first: it is
    /// `paths[..best_n]` (none: unreachable). Edits between decision runs happen in place and
    /// note with `touched`/`touched0` when they hit that front, so no copy of the chosen
    /// paths is kept.
    paths: SmallVec<[Path; 1]>,
    best_n: u16,
    /// A path in `paths[..best_n]` changed or left since the last decision run.
    touched: bool,
    /// The same for `paths[0]`, the best path.
    touched0: bool,
    /// Why the best path won (against the runner-up).
    reason: Option<Reason>,
    dirty: bool,
    /// How many peers have this destination in their send queue; the slot is reused only
    /// when no queue refers to it.
    queued: u32,
}

impl Dest {
    fn new(prefix: IpNet) -> Self {
        Dest {
            prefix,
            live: true,
            paths: SmallVec::new(),
            best_n: 0,
            touched: false,
            touched0: false,
            reason: None,
            dirty: false,
            queued: 0,
        }
    }

    /// The best path of the last decision run (read right after it; between runs this is
    /// whatever now sits in front).
    fn best(&self) -> Option<&Path> {
        if self.best_n > 0 {
            self.paths.first()
        } else {
            None
        }
    }

    /// Notes an edit of `paths[i]` (before it happens, for a removal).
    fn touch(&mut self, i: usize) {
        if i < usize::from(self.best_n) {
            self.touched = true;
            if i == 0 {
                self.touched0 = true;
            }
        }
    }
}

/// The destination table: prefix → slot id, and the slots.
#[derive(Debug, Default)]
struct Dests {
    index: FxHashMap<IpNet, DestId>,
    slots: Vec<Dest>,
    free: Vec<DestId>,
}

impl Dests {
    fn id(&self, prefix: &IpNet) -> Option<DestId> {
        self.index.get(prefix).copied()
    }

    fn get(&self, prefix: &IpNet) -> Option<&Dest> {
        self.id(prefix).map(|i| &self.slots[i as usize])
    }

    fn get_or_insert(&mut self, prefix: IpNet) -> DestId {
        if let Some(&id) = self.index.get(&prefix) {
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Dest::new(prefix);
                id
            }
            None => {
                self.slots.push(Dest::new(prefix));
                (self.slots.len() - 1) as DestId
            }
        };
        self.index.insert(prefix, id);
        id
    }

    /// Frees `id`'s slot when nothing refers to it any more: no path, no best path (so no
    /// peer has it advertised), not dirty, in no send queue.
    fn release_if_unused(&mut self, id: DestId) {
        let d = &mut self.slots[id as usize];
        if d.live && d.paths.is_empty() && d.best_n == 0 && !d.dirty && d.queued == 0 {
            d.live = false;
            d.reason = None;
            d.paths = SmallVec::new();
            self.index.remove(&d.prefix);
            self.free.push(id);
        }
    }

    fn live(&self) -> impl Iterator<Item = (DestId, &Dest)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, d)| d.live)
            .map(|(i, d)| (i as DestId, d))
    }
}

/// Interned Adj-RIB-Out entries: (exported attributes, next hop) → small id, reference
/// counted by the peers' Adj-RIB-Out slots. Id 0 means "not advertised".
#[derive(Debug)]
struct OutTable {
    entries: Vec<(Option<OutRoute>, u32)>,
    index: FxHashMap<(usize, Option<MpNextHop>), u32>,
    free: Vec<u32>,
    /// The last id acquired: a run of prefixes from one UPDATE exports to the same pair, so
    /// most acquisitions skip the hash lookup.
    last: Option<((usize, Option<MpNextHop>), u32)>,
}

impl Default for OutTable {
    fn default() -> Self {
        OutTable {
            entries: vec![(None, 0)],
            index: FxHashMap::default(),
            free: Vec::new(),
            last: None,
        }
    }
}

/// Top bit of a peer's Adj-RIB-Out slot: the destination is in its send queue.
const QUEUED: u32 = 1 << 31;

impl OutTable {
    fn key(r: &OutRoute) -> (usize, Option<MpNextHop>) {
        (Arc::as_ptr(&r.attrs) as usize, r.next_hop)
    }

    fn acquire(&mut self, r: OutRoute) -> u32 {
        let key = Self::key(&r);
        if let Some((k, id)) = self.last
            && k == key
        {
            self.entries[id as usize].1 += 1;
            return id;
        }
        if let Some(&id) = self.index.get(&key) {
            self.entries[id as usize].1 += 1;
            self.last = Some((key, id));
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = (Some(r), 1);
                id
            }
            None => {
                self.entries.push((Some(r), 1));
                (self.entries.len() - 1) as u32
            }
        };
        debug_assert!(id < QUEUED, "out-route ids exhausted");
        self.index.insert(key, id);
        self.last = Some((key, id));
        id
    }

    fn release(&mut self, id: u32) {
        if id == 0 {
            return;
        }
        let e = &mut self.entries[id as usize];
        e.1 -= 1;
        if e.1 == 0 {
            if let Some(r) = e.0.take() {
                self.index.remove(&Self::key(&r));
            }
            if self.last.is_some_and(|(_, l)| l == id) {
                self.last = None;
            }
            self.free.push(id);
        }
    }

    fn get(&self, id: u32) -> Option<&OutRoute> {
        if id == 0 {
            return None;
        }
        self.entries[id as usize].0.as_ref()
    }
}

/// What the RIB knows about an Established peer.
#[derive(Clone, Debug)]
pub struct PeerMeta {
    pub address: IpAddr,
    pub remote_as: u32,
    pub local_as: u32,
    pub remote_id: Ipv4Addr,
    pub role: PeerRole,
    pub next_hop: NextHopMode,
    pub allowed_local_as: u8,
    /// Our addresses for next-hop-self toward this peer.
    pub local_v4: Option<Ipv4Addr>,
    pub local_v6: Option<Ipv6Addr>,
    pub families: Vec<Family>,
    pub codec: SessionCodec,
}

impl PeerMeta {
    pub fn ebgp(&self) -> bool {
        !self.role.is_ibgp()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct OutRoute {
    attrs: Arc<PathAttrs>,
    next_hop: Option<MpNextHop>,
}

#[derive(Debug)]
struct PeerRib {
    /// Shared so the export of one prefix can hold the source's metadata while it writes
    /// every other peer's Adj-RIB-Out.
    meta: Arc<PeerMeta>,
    /// False while the session is down but its routes are kept for graceful restart: the
    /// peer is then only a source of (stale) paths, nothing is exported to it.
    up: bool,
    /// Prefixes this peer currently has a path for (its Adj-RIB-In).
    /// (Ids of destinations holding one of its paths: such a slot is never freed.)
    adj_in: FxHashSet<DestId>,
    /// The part of `adj_in` kept from a previous session and not yet re-announced
    /// (RFC 4724 §4.2 "stale").
    stale: FxHashSet<DestId>,
    /// By [`DestId`]: `QUEUED` bit | id in the [`OutTable`] (0: not advertised).
    adj_out: Vec<u32>,
    /// Advertised prefixes: IPv4, IPv6.
    advertised: [u64; 2],
    /// Destinations whose advertisement changed since it was last sent (each once).
    pending: VecDeque<DestId>,
    /// End-of-RIB still owed after the initial dump (RFC 4724 §2).
    eor_pending: bool,
    /// Per-peer cache: (source attrs pointer, source peer) → exported attrs.
    export_cache: FxHashMap<(usize, PeerIdx), (Arc<PathAttrs>, Arc<PathAttrs>)>,
    rejected: u64,
}

impl PeerRib {
    fn new(
        meta: PeerMeta,
        adj_in: FxHashSet<DestId>,
        stale: FxHashSet<DestId>,
        rejected: u64,
    ) -> Self {
        PeerRib {
            meta: Arc::new(meta),
            up: true,
            adj_in,
            stale,
            adj_out: Vec::new(),
            advertised: [0, 0],
            pending: VecDeque::new(),
            eor_pending: true,
            export_cache: FxHashMap::default(),
            rejected,
        }
    }

    /// What is advertised for `id` (ignoring the queued bit).
    fn out_id(&self, id: DestId) -> u32 {
        self.adj_out.get(id as usize).map_or(0, |s| s & !QUEUED)
    }

    /// Sets the advertisement of destination `id` (`prefix`) to `new` and queues it for
    /// sending when that changes what the peer has (or is about to get). True when changed.
    fn set_out(
        &mut self,
        id: DestId,
        prefix: &IpNet,
        new: Option<OutRoute>,
        outs: &mut OutTable,
        slots: &mut [Dest],
    ) -> bool {
        let i = id as usize;
        if i >= self.adj_out.len() {
            if new.is_none() {
                return false;
            }
            self.adj_out.resize(slots.len(), 0);
        }
        let slot = self.adj_out[i];
        let old = slot & !QUEUED;
        match (&new, outs.get(old)) {
            (None, None) => return false,
            (Some(n), Some(o)) if n == o => return false,
            _ => {}
        }
        let fam = usize::from(!prefix.addr().is_ipv4());
        if old != 0 {
            outs.release(old);
            self.advertised[fam] -= 1;
        }
        let new_id = match new {
            Some(n) => {
                self.advertised[fam] += 1;
                outs.acquire(n)
            }
            None => 0,
        };
        if slot & QUEUED == 0 {
            self.pending.push_back(id);
            slots[i].queued += 1;
        }
        self.adj_out[i] = new_id | QUEUED;
        true
    }

    /// Queues destination `id` for sending again as it is (route refresh).
    fn queue(&mut self, id: DestId, slots: &mut [Dest]) {
        let i = id as usize;
        if let Some(slot) = self.adj_out.get_mut(i)
            && *slot & QUEUED == 0
        {
            *slot |= QUEUED;
            self.pending.push_back(id);
            slots[i].queued += 1;
        }
    }

    /// Forgets the whole Adj-RIB-Out and the send queue.
    fn clear_out(&mut self, outs: &mut OutTable, dests: &mut Dests) {
        let pending = std::mem::take(&mut self.pending);
        for &id in &pending {
            dests.slots[id as usize].queued -= 1;
        }
        for slot in std::mem::take(&mut self.adj_out) {
            outs.release(slot & !QUEUED);
        }
        self.advertised = [0, 0];
        for id in pending {
            dests.release_if_unused(id);
        }
    }
}

/// Counters per peer and family, for the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    pub received_v4: u64,
    pub received_v6: u64,
    pub advertised_v4: u64,
    pub advertised_v6: u64,
    pub rejected: u64,
    /// Received prefixes kept from a previous session (graceful restart), not re-announced yet.
    pub stale: u64,
}

/// A Loc-RIB best-path change, for the FIB and event consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: IpNet,
    /// The new ECMP set (empty: the prefix is gone).
    pub paths: Vec<Path>,
}

/// RIB-wide settings.
#[derive(Clone, Debug)]
pub struct RibCfg {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub cluster_id: Ipv4Addr,
    pub selection: SelectionCfg,
}

/// Statistics of one UPDATE applied to the RIB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub announced: usize,
    pub withdrawn: usize,
    /// Dropped by loop detection or a family that was not negotiated.
    pub rejected: usize,
}

/// The tables. See the module documentation.
#[derive(Debug)]
pub struct Rib {
    cfg: RibCfg,
    dests: Dests,
    dirty: Vec<DestId>,
    peers: FxHashMap<PeerIdx, PeerRib>,
    outs: OutTable,
    interner: Interner,
    decision_runs: u64,
    /// Encoded attribute blocks shared by every peer that gets the same exported set:
    /// (exported attrs pointer, 4-octet AS session, IPv4 NEXT_HOP) → bytes. The `Arc` in the
    /// value keeps the pointer valid.
    encoded: FxHashMap<EncodedKey, (Arc<PathAttrs>, Bytes)>,
    policy: Arc<dyn Policy>,
}

/// (exported attrs pointer, 4-octet AS session, IPv4 NEXT_HOP).
type EncodedKey = (usize, bool, Option<Ipv4Addr>);
/// (attrs pointer, next hop, family): prefixes sharing one are packed into the same UPDATEs.
type GroupKey = (usize, Option<MpNextHop>, Family);

/// Import and export policy, consulted per prefix after the protocol rules (loop checks,
/// split horizon). The default accepts everything; the Calico datastore mode plugs in its pool
/// and block filters here.
pub trait Policy: Send + Sync + std::fmt::Debug {
    /// May the route `prefix` with `attrs` and forwarding address `next_hop` from `peer`
    /// enter the Loc-RIB?
    fn import(
        &self,
        peer: &PeerMeta,
        prefix: &IpNet,
        attrs: &PathAttrs,
        next_hop: Option<IpAddr>,
    ) -> bool {
        let _ = (peer, prefix, attrs, next_hop);
        true
    }
    /// May the best route `prefix` (from `src`, `None` when local) be advertised to `to`?
    fn export(
        &self,
        to: &PeerMeta,
        prefix: &IpNet,
        attrs: &PathAttrs,
        src: Option<&PeerMeta>,
    ) -> bool {
        let _ = (to, prefix, attrs, src);
        true
    }
}

/// The default policy: accept everything.
#[derive(Debug, Default)]
pub struct AcceptAll;

impl Policy for AcceptAll {}

/// Bound on the shared encoded-attribute cache (entries); cleared wholesale when reached.
const ENCODED_CACHE_MAX: usize = 65_536;

impl Rib {
    pub fn new(cfg: RibCfg) -> Self {
        Rib {
            cfg,
            dests: Dests::default(),
            dirty: Vec::new(),
            peers: FxHashMap::default(),
            outs: OutTable::default(),
            interner: Interner::default(),
            decision_runs: 0,
            encoded: FxHashMap::default(),
            policy: Arc::new(AcceptAll),
        }
    }

    /// Replaces the import/export policy and re-evaluates the export of every best path to
    /// every Established peer: only advertisements whose outcome changed are queued (a newly
    /// accepted prefix is announced, a newly rejected one withdrawn), so sessions keep running
    /// and unaffected prefixes are not re-sent. O(prefixes × peers), for rare policy changes.
    /// Paths already in the Loc-RIB are not re-imported (that needs a route refresh inbound).
    pub fn set_policy(&mut self, policy: Arc<dyn Policy>) {
        self.policy = policy;
        if self.peers.is_empty() {
            return;
        }
        let ids: Vec<DestId> = self.dests.live().map(|(id, _)| id).collect();
        for id in ids {
            self.export_prefix(id);
        }
    }

    pub fn cfg(&self) -> &RibCfg {
        &self.cfg
    }

    pub fn decision_runs(&self) -> u64 {
        self.decision_runs
    }

    /// Number of prefixes with a best path.
    pub fn loc_rib_len(&self) -> usize {
        self.dests.live().filter(|(_, d)| d.best_n > 0).count()
    }

    /// A peer reached Established: it gets the whole Loc-RIB (then End-of-RIB). Paths kept
    /// from its previous session (graceful restart) stay, still stale, until re-announced or
    /// flushed ([`Rib::flush_stale`]).
    pub fn peer_up(&mut self, idx: PeerIdx, meta: PeerMeta) {
        let (adj_in, stale, rejected) = match self.peers.remove(&idx) {
            Some(old) if !old.up => {
                // The new session may come with another router id: what other peers derived
                // from the old one is recomputed.
                for other in self.peers.values_mut() {
                    other.export_cache.retain(|&(_, src), _| src != idx);
                }
                (old.adj_in, old.stale, old.rejected)
            }
            Some(old) => {
                // Up twice without a down in between: a logic error upstream; start clean.
                debug_assert!(false, "peer_up for an up peer {idx}");
                self.peers.insert(idx, old);
                self.peer_down(idx);
                Default::default()
            }
            None => Default::default(),
        };
        let mut peer = PeerRib::new(meta, adj_in, stale, rejected);
        let Rib {
            cfg,
            dests,
            peers,
            outs,
            interner,
            policy,
            ..
        } = self;
        for i in 0..dests.slots.len() {
            let dest = &dests.slots[i];
            let Some(best) = dest.best().filter(|_| dest.live) else {
                continue;
            };
            let prefix = dest.prefix;
            if !peer.meta.families.contains(&Family::of(&prefix)) {
                continue;
            }
            let src = peers.get(&best.src).map(|p| &*p.meta);
            let out = export::export(cfg, src, interner, &**policy, best, &prefix, idx, &mut peer);
            if out.is_some() {
                peer.set_out(i as DestId, &prefix, out, outs, &mut dests.slots);
            }
        }
        self.peers.insert(idx, peer);
    }

    /// A peer left Established: its paths leave the Loc-RIB, its Adj-RIB-Out is forgotten.
    ///
    /// Every other peer's export cache forgets what it derived from `idx`'s paths: the exported
    /// attributes depend on the source's role and router id, and the next peer up in the same
    /// slot (a reconnect with a new router id, or a new peer in a reused slot) may send the very
    /// same interned attributes.
    pub fn peer_down(&mut self, idx: PeerIdx) {
        let Some(mut peer) = self.peers.remove(&idx) else {
            return;
        };
        peer.clear_out(&mut self.outs, &mut self.dests);
        for id in peer.adj_in {
            self.remove_path_id(id, idx);
        }
        for other in self.peers.values_mut() {
            other.export_cache.retain(|&(_, src), _| src != idx);
        }
    }

    /// A peer's session went down gracefully (RFC 4724 §4.2, helper side): its paths of
    /// `families` stay in the Loc-RIB, marked stale, and keep being used and advertised;
    /// paths of other families leave at once, and so do paths still stale from an earlier
    /// restart (a second restart before the first was completed). Nothing is exported to the
    /// peer any more. Returns how many paths are kept.
    pub fn peer_down_graceful(&mut self, idx: PeerIdx, families: &[Family]) -> usize {
        let Some(peer) = self.peers.get_mut(&idx) else {
            return 0;
        };
        peer.up = false;
        peer.clear_out(&mut self.outs, &mut self.dests);
        peer.eor_pending = false;
        peer.export_cache = FxHashMap::default();
        let old_stale = std::mem::take(&mut peer.stale);
        let mut gone = Vec::new();
        let slots = &self.dests.slots;
        for &id in &peer.adj_in {
            let family = Family::of(&slots[id as usize].prefix);
            if old_stale.contains(&id) || !families.contains(&family) {
                gone.push(id);
            } else {
                peer.stale.insert(id);
            }
        }
        for id in &gone {
            peer.adj_in.remove(id);
        }
        let kept = peer.stale.len();
        for id in gone {
            self.remove_path_id(id, idx);
        }
        if kept == 0 {
            self.peer_down(idx);
        }
        kept
    }

    /// Removes `idx`'s stale paths (of `family`, or all): the peer sent End-of-RIB, came
    /// back without graceful restart for the family, or its restart time ran out. A peer that
    /// is down and has nothing left is forgotten. Returns how many paths were removed.
    pub fn flush_stale(&mut self, idx: PeerIdx, family: Option<Family>) -> usize {
        let slots = &self.dests.slots;
        let Some(peer) = self.peers.get_mut(&idx) else {
            return 0;
        };
        if peer.stale.is_empty() {
            return 0;
        }
        let gone: Vec<DestId> = match family {
            None => std::mem::take(&mut peer.stale).into_iter().collect(),
            Some(f) => {
                let v: Vec<DestId> = peer
                    .stale
                    .iter()
                    .filter(|&&id| Family::of(&slots[id as usize].prefix) == f)
                    .copied()
                    .collect();
                for id in &v {
                    peer.stale.remove(id);
                }
                v
            }
        };
        for id in &gone {
            peer.adj_in.remove(id);
        }
        let forget = !peer.up && peer.adj_in.is_empty();
        let n = gone.len();
        for id in gone {
            self.remove_path_id(id, idx);
        }
        if forget {
            self.peer_down(idx);
        }
        n
    }

    /// How many of `idx`'s paths are stale.
    pub fn stale_len(&self, idx: PeerIdx) -> usize {
        self.peers.get(&idx).map_or(0, |p| p.stale.len())
    }

    /// The families `idx` has stale paths in.
    pub fn stale_families(&self, idx: PeerIdx) -> Vec<Family> {
        let mut v = Vec::new();
        if let Some(p) = self.peers.get(&idx) {
            for &id in &p.stale {
                let f = Family::of(&self.dests.slots[id as usize].prefix);
                if !v.contains(&f) {
                    v.push(f);
                }
                if v.len() == 2 {
                    break;
                }
            }
        }
        v
    }

    /// True when `prefix` from `idx` is a stale path.
    pub fn is_stale(&self, idx: PeerIdx, prefix: &IpNet) -> bool {
        let Some(id) = self.dests.id(prefix) else {
            return false;
        };
        self.peers
            .get(&idx)
            .is_some_and(|p| !p.stale.is_empty() && p.stale.contains(&id))
    }

    /// Replaces the RIB-wide settings (a configuration reload). Every prefix is decided again
    /// (the router id breaks ties against local paths; the selection settings shape the ECMP
    /// set), and when the identity changed (router id, cluster id, AS) every peer's
    /// Adj-RIB-Out is recomputed, since reflection attributes and loop checks depend on it.
    /// The speaker resets every session on an identity change anyway, which leaves nothing to
    /// recompute; this keeps the RIB correct on its own.
    pub fn set_cfg(&mut self, cfg: RibCfg) {
        let identity = (cfg.local_as, cfg.router_id, cfg.cluster_id)
            != (self.cfg.local_as, self.cfg.router_id, self.cfg.cluster_id);
        self.cfg = cfg;
        for (i, dest) in self.dests.slots.iter_mut().enumerate() {
            if dest.live && !dest.dirty {
                dest.dirty = true;
                self.dirty.push(i as DestId);
            }
        }
        if identity {
            let ids: Vec<DestId> = self.dests.live().map(|(id, _)| id).collect();
            for peer in self.peers.values_mut() {
                peer.export_cache.clear();
            }
            for id in ids {
                self.export_prefix(id);
            }
        }
    }

    /// Originates (or re-originates) a local prefix.
    pub fn originate(&mut self, prefix: IpNet, attrs: PathAttrs) {
        let attrs = self.interner.intern(attrs);
        self.upsert_path(
            prefix,
            Path {
                src: LOCAL,
                attrs,
                next_hop: None,
            },
        );
    }

    /// Stops originating a local prefix.
    pub fn withdraw_local(&mut self, prefix: IpNet) {
        self.remove_path(prefix, LOCAL);
    }

    /// Applies a decoded UPDATE from `idx` (RFC 4271 §9.1.1 phase 1 + import checks).
    pub fn apply_update(&mut self, idx: PeerIdx, update: Update) -> ApplyStats {
        let mut stats = ApplyStats::default();
        let Some(peer) = self.peers.get(&idx) else {
            return stats;
        };
        let families = peer.meta.families.clone();
        let ebgp = peer.meta.ebgp();
        let allowed_local = usize::from(peer.meta.allowed_local_as);
        let peer_local_as = peer.meta.local_as;
        let peer_remote_as = peer.meta.remote_as;
        let meta = peer.meta.clone();
        let (own_v4_addr, own_v6) = (peer.meta.local_v4, peer.meta.local_v6);
        let own_v4 = |a: std::net::Ipv4Addr| Some(a) == own_v4_addr;

        let Update {
            withdrawn,
            mut attrs,
            nlri,
            mp_reach,
            mp_unreach,
            treat_as_withdraw,
            ..
        } = update;
        let withdraw = |rib: &mut Rib, n: &Nlri, stats: &mut ApplyStats| {
            if rib.remove_peer_path(n.prefix, idx) {
                stats.withdrawn += 1;
            }
        };
        for n in &withdrawn {
            withdraw(self, n, &mut stats);
        }
        if let Some(u) = &mp_unreach {
            for n in &u.withdrawn {
                withdraw(self, n, &mut stats);
            }
        }
        let reach_v4 = nlri;
        let reach_mp = mp_reach;
        if treat_as_withdraw.is_some() {
            for n in reach_v4
                .iter()
                .chain(reach_mp.iter().flat_map(|m| m.nlri.iter()))
            {
                withdraw(self, n, &mut stats);
            }
            return stats;
        }
        if reach_v4.is_empty() && reach_mp.as_ref().is_none_or(|m| m.nlri.is_empty()) {
            return stats;
        }
        // RFC 4271 §6.3: on eBGP the leftmost AS must be the peer's ("enforce first AS");
        // robustness pin: treat-as-withdraw, the session stays up.
        if ebgp && attrs.as_path.as_ref().and_then(|p| p.first_asn()) != Some(peer_remote_as) {
            for n in reach_v4
                .iter()
                .chain(reach_mp.iter().flat_map(|m| m.nlri.iter()))
            {
                withdraw(self, n, &mut stats);
                stats.rejected += 1;
            }
            return stats;
        }
        // Import checks that reject the whole attribute set (silent drops, not errors).
        let looped = if ebgp {
            // RFC 4271 §9.1.2: our own AS in the path (beyond the allowed count).
            attrs
                .as_path
                .as_ref()
                .is_some_and(|p| p.count(peer_local_as) > allowed_local)
        } else {
            // RFC 4456 §8: our router id as ORIGINATOR_ID, or our cluster id in CLUSTER_LIST.
            attrs.originator_id == Some(self.cfg.router_id)
                || attrs.cluster_list.contains(&self.cfg.cluster_id)
        };
        let v4_next_hop = attrs.next_hop.take();
        if ebgp {
            // LOCAL_PREF is never accepted from eBGP (RFC 7606 §7.5 discards it on decode);
            // give the path the default so iBGP export carries one.
            attrs.local_pref = None;
        }
        let attrs = self.interner.intern(attrs);
        let reject = |rib: &mut Rib, n: &Nlri, stats: &mut ApplyStats| {
            stats.rejected += 1;
            rib.remove_peer_path(n.prefix, idx);
        };
        if !reach_v4.is_empty() {
            let fam_ok = families.contains(&Family::IPV4_UNICAST);
            for n in &reach_v4 {
                match v4_next_hop {
                    Some(nh)
                        if fam_ok
                            && !looped
                            && !own_v4(nh)
                            && n.prefix.addr().is_ipv4()
                            && self.policy.import(
                                &meta,
                                &n.prefix,
                                &attrs,
                                Some(IpAddr::V4(nh)),
                            ) =>
                    {
                        let path = Path {
                            src: idx,
                            attrs: attrs.clone(),
                            next_hop: Some(MpNextHop::V4(nh)),
                        };
                        self.upsert_path(n.prefix, path);
                        stats.announced += 1;
                    }
                    _ => reject(self, n, &mut stats),
                }
            }
        }
        if let Some(mp) = reach_mp {
            // RFC 4271 §6.3: a next hop that is one of our own addresses is ignored (not an error).
            let own = match mp.next_hop {
                MpNextHop::V4(a) => own_v4(a),
                MpNextHop::V6 { global, .. } => own_v6 == Some(global),
            };
            let fam_ok = families.contains(&mp.family) && mp.family.is_supported() && !own;
            let mp_nh = match mp.next_hop {
                MpNextHop::V4(a) => IpAddr::V4(a),
                MpNextHop::V6 { global, .. } => IpAddr::V6(global),
            };
            for n in &mp.nlri {
                if fam_ok
                    && !looped
                    && Family::of(&n.prefix) == mp.family
                    && self.policy.import(&meta, &n.prefix, &attrs, Some(mp_nh))
                {
                    let path = Path {
                        src: idx,
                        attrs: attrs.clone(),
                        next_hop: Some(mp.next_hop),
                    };
                    self.upsert_path(n.prefix, path);
                    stats.announced += 1;
                } else {
                    reject(self, n, &mut stats);
                }
            }
        }
        if let Some(p) = self.peers.get_mut(&idx) {
            p.rejected += stats.rejected as u64;
        }
        stats
    }

    fn upsert_path(&mut self, prefix: IpNet, path: Path) {
        let src = path.src;
        let id = self.dests.get_or_insert(prefix);
        if src != LOCAL
            && let Some(peer) = self.peers.get_mut(&src)
        {
            // Re-announced after a graceful restart: fresh again (RFC 4724 §4.2).
            if !peer.stale.is_empty() {
                peer.stale.remove(&id);
            }
            peer.adj_in.insert(id);
        }
        let dest = &mut self.dests.slots[id as usize];
        match dest.paths.iter().position(|p| p.src == src) {
            Some(i) => {
                if dest.paths[i] == path {
                    return;
                }
                dest.touch(i);
                dest.paths[i] = path;
            }
            None => {
                // Lands inside the old front only after removals, which touched it already.
                dest.touch(dest.paths.len());
                dest.paths.push(path);
            }
        }
        if !dest.dirty {
            dest.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Removes `idx`'s path for `prefix`; true when there was one.
    fn remove_peer_path(&mut self, prefix: IpNet, idx: PeerIdx) -> bool {
        let Some(id) = self.dests.id(&prefix) else {
            return false;
        };
        let had = self.peers.get_mut(&idx).is_some_and(|p| {
            if !p.stale.is_empty() {
                p.stale.remove(&id);
            }
            p.adj_in.remove(&id)
        });
        if had {
            self.remove_path_id(id, idx);
        }
        had
    }

    fn remove_path(&mut self, prefix: IpNet, src: PeerIdx) {
        if let Some(id) = self.dests.id(&prefix) {
            self.remove_path_id(id, src);
        }
    }

    fn remove_path_id(&mut self, id: DestId, src: PeerIdx) {
        let dest = &mut self.dests.slots[id as usize];
        let Some(i) = dest.paths.iter().position(|p| p.src == src) else {
            return;
        };
        // swap_remove pulls the last path into `i`: the front changes only if `i` is in it.
        dest.touch(i);
        dest.paths.swap_remove(i);
        if !dest.dirty {
            dest.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Runs the decision process for every dirty prefix and queues the resulting
    /// advertisements. Returns the best-path changes (for the FIB and events).
    pub fn run_decision(&mut self) -> Vec<BestChange> {
        self.run_decision_step(usize::MAX)
    }

    /// True when prefixes wait for the decision process.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Like [`Rib::run_decision`], for at most `max` dirty prefixes (the rest stay dirty), so a
    /// large batch is processed in slices between which the caller serves timers and input.
    pub fn run_decision_step(&mut self, max: usize) -> Vec<BestChange> {
        if self.dirty.is_empty() {
            return Vec::new();
        }
        self.decision_runs += 1;
        let mut changes = Vec::new();
        let take = self.dirty.len().min(max);
        let dirty = self.dirty.split_off(self.dirty.len() - take);
        for id in dirty {
            let dest = &mut self.dests.slots[id as usize];
            if !dest.live {
                continue;
            }
            dest.dirty = false;
            let prefix = dest.prefix;
            if dest.paths.is_empty() {
                let had = dest.best_n > 0;
                dest.best_n = 0;
                dest.touched = false;
                dest.touched0 = false;
                dest.reason = None;
                if had {
                    changes.push(BestChange {
                        prefix,
                        paths: Vec::new(),
                    });
                    self.export_prefix(id);
                }
                self.dests.release_if_unused(id);
                continue;
            }
            // The chosen ECMP set as indexes into `paths`, best first.
            let (chosen, reason): (SmallVec<[usize; 4]>, Reason) = if dest.paths.len() == 1 {
                (smallvec![0], Reason::Equal)
            } else {
                let cands: SmallVec<[Candidate; 2]> = dest
                    .paths
                    .iter()
                    .map(|p| candidate(&self.cfg, &self.peers, p))
                    .collect();
                let Some(sel) = select(&cands, &self.cfg.selection) else {
                    continue;
                };
                // Distinct next hops only (two reflected copies of one route are one
                // forwarding path).
                let mut chosen: SmallVec<[usize; 4]> = SmallVec::new();
                for &i in &sel.multipath {
                    let nh = dest.paths[i].next_hop_addr();
                    if !chosen.iter().any(|&j| dest.paths[j].next_hop_addr() == nh) {
                        chosen.push(i);
                    }
                }
                (chosen, sel.reasons[sel.best])
            };
            dest.reason = Some(reason);
            let old_n = usize::from(dest.best_n);
            let in_front = chosen.iter().enumerate().all(|(k, &i)| k == i);
            let changed = dest.touched || !in_front || chosen.len() != old_n;
            let best_changed = dest.touched0 || old_n == 0 || chosen[0] != 0;
            if !in_front {
                let mut front: SmallVec<[Path; 1]> = SmallVec::with_capacity(dest.paths.len());
                front.extend(chosen.iter().map(|&i| dest.paths[i].clone()));
                front.extend(
                    (0..dest.paths.len())
                        .filter(|i| !chosen.contains(i))
                        .map(|i| dest.paths[i].clone()),
                );
                dest.paths = front;
            }
            dest.best_n = chosen.len() as u16;
            dest.touched = false;
            dest.touched0 = false;
            if changed {
                let paths = dest.paths[..chosen.len()].to_vec();
                changes.push(BestChange { prefix, paths });
                if best_changed {
                    self.export_prefix(id);
                }
            }
        }
        changes
    }

    /// Recomputes every peer's advertisement of destination `id` from its current best path.
    fn export_prefix(&mut self, id: DestId) {
        let dest = &self.dests.slots[id as usize];
        let prefix = dest.prefix;
        let best = dest.best().cloned();
        let src = best
            .as_ref()
            .and_then(|b| self.peers.get(&b.src))
            .map(|p| p.meta.clone());
        let family = Family::of(&prefix);
        let Rib {
            cfg,
            dests,
            peers,
            outs,
            interner,
            policy,
            ..
        } = self;
        for (&idx, peer) in peers.iter_mut() {
            if !peer.up || !peer.meta.families.contains(&family) {
                continue;
            }
            let new = best.as_ref().and_then(|b| {
                export::export(
                    cfg,
                    src.as_deref(),
                    interner,
                    &**policy,
                    b,
                    &prefix,
                    idx,
                    peer,
                )
            });
            peer.set_out(id, &prefix, new, outs, &mut dests.slots);
        }
    }

    /// Re-sends the whole Adj-RIB-Out to `idx` (answer to ROUTE-REFRESH, RFC 2918 §4).
    pub fn refresh_out(&mut self, idx: PeerIdx, family: Family) {
        let Some(peer) = self.peers.get_mut(&idx).filter(|p| p.up) else {
            return;
        };
        let slots = &mut self.dests.slots;
        for i in 0..peer.adj_out.len() {
            if peer.adj_out[i] & !QUEUED != 0 && Family::of(&slots[i].prefix) == family {
                peer.queue(i as DestId, slots);
            }
        }
    }

    /// True when `idx` has advertisements waiting.
    pub fn has_pending(&self, idx: PeerIdx) -> bool {
        self.peers
            .get(&idx)
            .is_some_and(|p| !p.pending.is_empty() || p.eor_pending)
    }

    /// Packs up to `max_prefixes` pending changes of `idx` into UPDATE messages appended to
    /// `out`, grouped by attribute set (RFC 4271 §9.2). Sends End-of-RIB once the initial dump
    /// is out. Returns the number of UPDATE messages produced.
    pub fn take_updates(
        &mut self,
        idx: PeerIdx,
        max_prefixes: usize,
        out: &mut Vec<Bytes>,
    ) -> usize {
        let Rib {
            dests,
            peers,
            outs,
            encoded,
            ..
        } = self;
        let Some(peer) = peers.get_mut(&idx).filter(|p| p.up) else {
            return 0;
        };
        let before = out.len();
        let mut groups: FxHashMap<GroupKey, (Arc<PathAttrs>, Vec<Nlri>)> = FxHashMap::default();
        let mut withdraw_v4: Vec<Nlri> = Vec::new();
        let mut withdraw_v6: Vec<Nlri> = Vec::new();
        let n = peer.pending.len().min(max_prefixes);
        for id in peer.pending.drain(..n) {
            let i = id as usize;
            peer.adj_out[i] &= !QUEUED;
            let d = &mut dests.slots[i];
            d.queued -= 1;
            let prefix = d.prefix;
            if d.queued == 0 {
                dests.release_if_unused(id);
            }
            match outs.get(peer.adj_out[i]) {
                Some(r) => {
                    let key = (
                        Arc::as_ptr(&r.attrs) as usize,
                        r.next_hop,
                        Family::of(&prefix),
                    );
                    groups
                        .entry(key)
                        .or_insert_with(|| (r.attrs.clone(), Vec::new()))
                        .1
                        .push(prefix.into());
                }
                None => match prefix {
                    IpNet::V4(_) => withdraw_v4.push(prefix.into()),
                    IpNet::V6(_) => withdraw_v6.push(prefix.into()),
                },
            }
        }
        let codec = &peer.meta.codec;
        if !withdraw_v4.is_empty() {
            wire::pack_withdraw(codec, Family::IPV4_UNICAST, &withdraw_v4, out);
        }
        if !withdraw_v6.is_empty() {
            wire::pack_withdraw(codec, Family::IPV6_UNICAST, &withdraw_v6, out);
        }
        if encoded.len() > ENCODED_CACHE_MAX {
            encoded.clear();
        }
        for ((ptr, next_hop, family), (attrs, nlri)) in groups {
            let v4 = family == Family::IPV4_UNICAST;
            let nh4 = match next_hop {
                Some(MpNextHop::V4(a)) if v4 => Some(a),
                _ => None,
            };
            let (_, bytes) = encoded
                .entry((ptr, codec.four_octet_as, nh4))
                .or_insert_with(|| {
                    let mut buf = BytesMut::with_capacity(128);
                    if v4 {
                        // IPv4 unicast carries its next hop in NEXT_HOP (RFC 4271 §5.1.3).
                        let mut with_nh = (*attrs).clone();
                        with_nh.next_hop = nh4;
                        wire::encode_path_attrs(&with_nh, codec, &mut buf);
                    } else {
                        wire::encode_path_attrs(&attrs, codec, &mut buf);
                    }
                    (attrs.clone(), buf.freeze())
                });
            let mp_next_hop = if v4 { None } else { next_hop };
            wire::pack_announce(codec, bytes, family, mp_next_hop, &nlri, out);
        }
        if peer.pending.is_empty() && peer.eor_pending {
            peer.eor_pending = false;
            for f in &peer.meta.families {
                out.push(wire::end_of_rib(*f));
            }
        }
        out.len() - before
    }

    /// Per-peer counters for the API.
    /// How many prefixes the peer's Adj-RIB-In holds (both families), in O(1).
    pub fn adj_in_len(&self, idx: PeerIdx) -> usize {
        self.peers.get(&idx).map_or(0, |p| p.adj_in.len())
    }

    pub fn peer_counts(&self, idx: PeerIdx) -> PeerCounts {
        let Some(p) = self.peers.get(&idx) else {
            return PeerCounts::default();
        };
        let slots = &self.dests.slots;
        let v4_in = p
            .adj_in
            .iter()
            .filter(|&&id| slots[id as usize].prefix.addr().is_ipv4())
            .count() as u64;
        PeerCounts {
            received_v4: v4_in,
            received_v6: p.adj_in.len() as u64 - v4_in,
            advertised_v4: p.advertised[0],
            advertised_v6: p.advertised[1],
            rejected: p.rejected,
            stale: p.stale.len() as u64,
        }
    }

    /// Loc-RIB entries (all candidate paths), optionally for one prefix: (prefix, path, best,
    /// reason).
    pub fn loc_rib(&self, prefix: Option<IpNet>) -> Vec<(IpNet, Path, bool, Reason)> {
        let mut v = Vec::new();
        let mut push = |p: &IpNet, d: &Dest| {
            for (i, path) in d.paths.iter().enumerate() {
                let best = i < usize::from(d.best_n);
                v.push((*p, path.clone(), best, d.reason.unwrap_or(Reason::Equal)));
            }
        };
        match prefix {
            Some(p) => {
                if let Some(d) = self.dests.get(&p) {
                    push(&p, d);
                }
            }
            None => {
                for (_, d) in self.dests.live() {
                    push(&d.prefix, d);
                }
            }
        }
        v
    }

    /// The Adj-RIB-In of a peer: (prefix, path).
    pub fn adj_in(&self, idx: PeerIdx, prefix: Option<IpNet>) -> Vec<(IpNet, Path)> {
        let Some(peer) = self.peers.get(&idx) else {
            return Vec::new();
        };
        let want = match prefix {
            Some(p) => match self.dests.id(&p) {
                Some(id) => Some(id),
                None => return Vec::new(),
            },
            None => None,
        };
        peer.adj_in
            .iter()
            .filter(|&&id| want.is_none_or(|w| w == id))
            .filter_map(|&id| {
                let d = &self.dests.slots[id as usize];
                d.paths
                    .iter()
                    .find(|x| x.src == idx)
                    .map(|x| (d.prefix, x.clone()))
            })
            .collect()
    }

    /// The Adj-RIB-Out of a peer: (prefix, attrs, next hop).
    pub fn adj_out(
        &self,
        idx: PeerIdx,
        prefix: Option<IpNet>,
    ) -> Vec<(IpNet, Arc<PathAttrs>, Option<MpNextHop>)> {
        let Some(peer) = self.peers.get(&idx) else {
            return Vec::new();
        };
        let one = |id: DestId| {
            let r = self.outs.get(peer.out_id(id))?;
            let p = self.dests.slots[id as usize].prefix;
            Some((p, r.attrs.clone(), r.next_hop))
        };
        match prefix {
            Some(p) => self.dests.id(&p).and_then(one).into_iter().collect(),
            None => (0..peer.adj_out.len() as DestId).filter_map(one).collect(),
        }
    }

    /// The peer metadata, if the peer is up.
    pub fn peer_meta(&self, idx: PeerIdx) -> Option<&PeerMeta> {
        self.peers.get(&idx).filter(|p| p.up).map(|p| &*p.meta)
    }
}

fn candidate<'a>(cfg: &RibCfg, peers: &FxHashMap<PeerIdx, PeerRib>, p: &'a Path) -> Candidate<'a> {
    match peers.get(&p.src) {
        Some(peer) => Candidate {
            attrs: &p.attrs,
            peer_address: Some(peer.meta.address),
            peer_router_id: peer.meta.remote_id,
            ebgp: peer.meta.ebgp(),
        },
        None => Candidate {
            attrs: &p.attrs,
            peer_address: None,
            peer_router_id: cfg.router_id,
            ebgp: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AsSegment, Origin, SegmentType};

    fn meta(last: u8, role: PeerRole, remote_as: u32) -> PeerMeta {
        PeerMeta {
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, last)),
            remote_as,
            local_as: 64512,
            remote_id: Ipv4Addr::new(198, 18, 0, last),
            role,
            next_hop: NextHopMode::Self_,
            allowed_local_as: 0,
            local_v4: Some(Ipv4Addr::new(198, 18, 0, 1)),
            local_v6: None,
            families: vec![Family::IPV4_UNICAST],
            codec: SessionCodec {
                four_octet_as: true,
                ..SessionCodec::default()
            },
        }
    }

    fn rib() -> Rib {
        Rib::new(RibCfg {
            local_as: 64512,
            router_id: Ipv4Addr::new(198, 18, 0, 1),
            cluster_id: Ipv4Addr::new(198, 18, 0, 1),
            selection: SelectionCfg::default(),
        })
    }

    fn announce(prefix: &str, nh: [u8; 4], asns: &[u32]) -> Update {
        Update {
            attrs: PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(crate::wire::AsPath {
                    segments: vec![AsSegment {
                        kind: SegmentType::Sequence,
                        asns: asns.to_vec(),
                    }],
                }),
                next_hop: Some(Ipv4Addr::from(nh)),
                ..PathAttrs::default()
            },
            nlri: vec![prefix.parse::<IpNet>().unwrap().into()],
            ..Update::default()
        }
    }

    /// Rejects 10.0.0.0/8 on import and never exports to peer .3.
    #[derive(Debug)]
    struct Filter;
    impl Policy for Filter {
        fn import(&self, _: &PeerMeta, prefix: &IpNet, _: &PathAttrs, _: Option<IpAddr>) -> bool {
            !"10.0.0.0/8".parse::<IpNet>().unwrap().contains(prefix)
        }
        fn export(&self, to: &PeerMeta, _: &IpNet, _: &PathAttrs, _: Option<&PeerMeta>) -> bool {
            to.address != IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3))
        }
    }

    #[test]
    fn policy_hooks_filter_import_and_export() {
        let mut r = rib();
        r.set_policy(Arc::new(Filter));
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        r.peer_up(3, meta(3, PeerRole::Ebgp, 65003));
        r.peer_up(4, meta(4, PeerRole::Ebgp, 65004));
        let s = r.apply_update(2, announce("10.1.0.0/16", [198, 18, 0, 2], &[65002]));
        assert_eq!(
            (s.announced, s.rejected),
            (0, 1),
            "import policy rejects 10/8"
        );
        let s = r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65002]));
        assert_eq!(s.announced, 1);
        r.run_decision();
        let p: IpNet = "172.16.0.0/16".parse().unwrap();
        assert!(
            r.adj_out(3, Some(p)).is_empty(),
            "export policy keeps it from .3"
        );
        let out = r.adj_out(4, Some(p));
        assert_eq!(out.len(), 1, "exported to .4");
        let path = out[0].1.as_path.as_ref().unwrap();
        assert_eq!(
            path.segments[0].asns,
            vec![64512, 65002],
            "our AS prepended toward eBGP"
        );
        assert_eq!(
            out[0].2,
            Some(MpNextHop::V4(Ipv4Addr::new(198, 18, 0, 1))),
            "next hop self"
        );
    }

    /// Exports only to .3.
    #[derive(Debug)]
    struct OnlyTo3;
    impl Policy for OnlyTo3 {
        fn export(&self, to: &PeerMeta, _: &IpNet, _: &PathAttrs, _: Option<&PeerMeta>) -> bool {
            to.address == IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3))
        }
    }

    #[test]
    fn set_policy_re_exports_only_what_changed() {
        let mut r = rib();
        r.set_policy(Arc::new(Filter));
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        r.peer_up(3, meta(3, PeerRole::Ebgp, 65003));
        r.peer_up(4, meta(4, PeerRole::Ebgp, 65004));
        r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65002]));
        r.run_decision();
        let p: IpNet = "172.16.0.0/16".parse().unwrap();
        let mut msgs = Vec::new();
        for idx in [2, 3, 4] {
            r.take_updates(idx, usize::MAX, &mut msgs);
            assert!(!r.has_pending(idx));
        }
        assert!(r.adj_out(3, Some(p)).is_empty() && r.adj_out(4, Some(p)).len() == 1);

        r.set_policy(Arc::new(OnlyTo3));
        assert_eq!(r.adj_out(3, Some(p)).len(), 1, "now announced to .3");
        assert!(r.adj_out(4, Some(p)).is_empty(), "now withdrawn from .4");
        assert!(r.has_pending(3) && r.has_pending(4));
        assert!(!r.has_pending(2), "the source gets nothing either way");
        let mut to3 = Vec::new();
        assert_eq!(r.take_updates(3, usize::MAX, &mut to3), 1);
        let mut to4 = Vec::new();
        assert_eq!(r.take_updates(4, usize::MAX, &mut to4), 1);

        // The same policy again changes nothing: nothing is queued.
        r.set_policy(Arc::new(OnlyTo3));
        assert!(!r.has_pending(2) && !r.has_pending(3) && !r.has_pending(4));
    }

    fn withdraw(prefix: &str) -> Update {
        Update {
            withdrawn: vec![prefix.parse::<IpNet>().unwrap().into()],
            ..Update::default()
        }
    }

    /// The prefixes of the UPDATEs `take_updates` produced: (announced, withdrawn).
    fn sent(msgs: &[Bytes]) -> (Vec<IpNet>, Vec<IpNet>) {
        let (mut ann, mut wd) = (Vec::new(), Vec::new());
        for m in msgs {
            let u = wire::decode_update(
                &m[19..],
                &SessionCodec {
                    four_octet_as: true,
                    ..SessionCodec::default()
                },
            )
            .expect("our own UPDATE decodes");
            ann.extend(u.nlri.iter().map(|n| n.prefix));
            wd.extend(u.withdrawn.iter().map(|n| n.prefix));
        }
        (ann, wd)
    }

    #[test]
    fn a_destination_slot_is_reused_only_after_every_queue_has_sent_its_withdrawal() {
        let mut r = rib();
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        r.peer_up(3, meta(3, PeerRole::Ebgp, 65003));
        r.peer_up(4, meta(4, PeerRole::Ebgp, 65004));
        let (a, b, c): (IpNet, IpNet, IpNet) = (
            "172.16.0.0/16".parse().unwrap(),
            "172.17.0.0/16".parse().unwrap(),
            "172.18.0.0/16".parse().unwrap(),
        );
        r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65002]));
        r.run_decision();
        let mut m3 = Vec::new();
        r.take_updates(3, usize::MAX, &mut m3);
        assert_eq!(sent(&m3).0, vec![a]);
        // Withdrawn before .4 got it: .3 owes a withdrawal, .4 still has A queued.
        r.apply_update(2, withdraw("172.16.0.0/16"));
        r.run_decision();
        assert!(r.adj_out(3, None).is_empty() && r.adj_out(4, None).is_empty());
        // A new prefix must not take A's slot while a queue still refers to it.
        r.apply_update(2, announce("172.17.0.0/16", [198, 18, 0, 2], &[65002]));
        r.run_decision();
        let mut m4 = Vec::new();
        r.take_updates(4, usize::MAX, &mut m4);
        let (ann4, wd4) = sent(&m4);
        assert_eq!(ann4, vec![b], "B announced to .4");
        assert_eq!(
            wd4,
            vec![a],
            "A withdrawn (never announced: harmless, and it was queued)"
        );
        m3.clear();
        r.take_updates(3, usize::MAX, &mut m3);
        let (ann3, wd3) = sent(&m3);
        assert_eq!((ann3, wd3), (vec![b], vec![a]));
        // Now A's slot is free; C reuses it and everyone sees exactly C and B.
        r.apply_update(2, announce("172.18.0.0/16", [198, 18, 0, 2], &[65002]));
        r.run_decision();
        for idx in [3, 4] {
            let mut out: Vec<IpNet> = r.adj_out(idx, None).into_iter().map(|x| x.0).collect();
            out.sort();
            assert_eq!(out, vec![b, c], "peer {idx}");
            let mut m = Vec::new();
            r.take_updates(idx, usize::MAX, &mut m);
            assert_eq!(sent(&m), (vec![c], vec![]), "peer {idx}");
            let counts = r.peer_counts(idx);
            assert_eq!((counts.advertised_v4, counts.advertised_v6), (2, 0));
        }
        assert!(r.adj_out(2, None).is_empty(), "never back to the source");
        assert_eq!(r.loc_rib_len(), 2);
        assert_eq!(r.dests.slots.len(), 2, "A's slot was reused");
        // The source goes: both withdrawn everywhere, slots free, counters zero.
        r.peer_down(2);
        r.run_decision();
        for idx in [3, 4] {
            let mut m = Vec::new();
            r.take_updates(idx, usize::MAX, &mut m);
            let (ann, mut wd) = sent(&m);
            wd.sort();
            assert_eq!((ann, wd), (vec![], vec![b, c]), "peer {idx}");
            assert_eq!(r.peer_counts(idx).advertised_v4, 0);
        }
        assert_eq!(r.dests.index.len(), 0);
        assert_eq!(r.dests.free.len(), 2);
        assert_eq!(
            r.outs.index.len(),
            0,
            "no exported attribute set is held any more"
        );
    }

    #[test]
    fn best_path_changes_are_reported_once_and_only_when_the_chosen_set_changes() {
        let mut r = rib();
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        r.peer_up(3, meta(3, PeerRole::Ebgp, 65002)); // same neighbour AS: ECMP possible
        r.peer_up(4, meta(4, PeerRole::Ebgp, 65004));
        let p: IpNet = "172.16.0.0/16".parse().unwrap();
        let best_src = |r: &Rib| -> Vec<PeerIdx> {
            r.loc_rib(Some(p))
                .into_iter()
                .filter(|x| x.2)
                .map(|x| x.1.src)
                .collect()
        };
        // .3's path is longer: .2 wins, one change.
        r.apply_update(
            3,
            announce("172.16.0.0/16", [198, 18, 0, 3], &[65002, 65100]),
        );
        r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65002]));
        let c = r.run_decision();
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].paths.iter().map(|x| x.src).collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(best_src(&r), vec![2]);
        // The loser changes and still loses: nothing to report.
        r.apply_update(
            3,
            announce("172.16.0.0/16", [198, 18, 0, 3], &[65002, 65101]),
        );
        assert!(r.run_decision().is_empty());
        // The loser becomes as short as the winner: an ECMP pair (the best stays first).
        r.apply_update(3, announce("172.16.0.0/16", [198, 18, 0, 3], &[65002]));
        let c = r.run_decision();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].paths.len(), 2, "ECMP of two next hops");
        // The best's attributes change in place (same source): reported, and re-exported.
        let mut m = Vec::new();
        r.take_updates(4, usize::MAX, &mut m);
        assert!(!r.has_pending(4));
        r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 9], &[65002]));
        let c = r.run_decision();
        assert_eq!(c.len(), 1);
        assert!(
            c[0].paths
                .iter()
                .any(|x| x.next_hop == Some(MpNextHop::V4(Ipv4Addr::new(198, 18, 0, 9))))
        );
        // The best leaves: the other takes over, alone.
        r.apply_update(2, withdraw("172.16.0.0/16"));
        let c = r.run_decision();
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].paths.iter().map(|x| x.src).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(best_src(&r), vec![3]);
        // Toward eBGP (next hop self, our AS prepended) .3's path exports exactly as .2's
        // did: nothing new for .4 to receive.
        assert!(
            !r.has_pending(4),
            "an identical advertisement is not sent again"
        );
        let out = r.adj_out(4, Some(p));
        assert_eq!(
            out[0].1.as_path.as_ref().unwrap().segments[0].asns,
            vec![64512, 65002]
        );
        // Both leave and one comes back within one batch: one change, to that one.
        r.apply_update(3, withdraw("172.16.0.0/16"));
        r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65002]));
        let c = r.run_decision();
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].paths.iter().map(|x| x.src).collect::<Vec<_>>(),
            vec![2]
        );
        r.apply_update(2, withdraw("172.16.0.0/16"));
        let c = r.run_decision();
        assert_eq!((c.len(), c[0].paths.len()), (1, 0), "unreachable");
        assert_eq!(r.loc_rib_len(), 0);
    }

    #[test]
    fn peer_down_withdraws_its_routes_from_everyone() {
        let mut r = rib();
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        r.peer_up(4, meta(4, PeerRole::Ebgp, 65004));
        r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65002]));
        r.run_decision();
        assert_eq!(r.loc_rib_len(), 1);
        let mut msgs = Vec::new();
        r.take_updates(4, usize::MAX, &mut msgs);
        r.peer_down(2);
        let changes = r.run_decision();
        assert_eq!(changes.len(), 1);
        assert!(changes[0].paths.is_empty());
        assert_eq!(r.loc_rib_len(), 0);
        assert!(r.adj_out(4, None).is_empty());
        assert!(r.has_pending(4), "a withdrawal is queued for .4");
    }

    #[test]
    fn graceful_down_keeps_paths_stale_until_re_announced_or_flushed() {
        let mut r = rib();
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        r.peer_up(4, meta(4, PeerRole::Ebgp, 65004));
        for p in ["172.16.0.0/16", "172.17.0.0/16", "172.18.0.0/16"] {
            r.apply_update(2, announce(p, [198, 18, 0, 2], &[65002]));
        }
        r.run_decision();
        let mut msgs = Vec::new();
        r.take_updates(4, usize::MAX, &mut msgs);
        // Down gracefully: nothing changes for anyone.
        assert_eq!(r.peer_down_graceful(2, &[Family::IPV4_UNICAST]), 3);
        assert!(r.run_decision().is_empty());
        assert_eq!(r.loc_rib_len(), 3);
        assert!(!r.has_pending(4), "no withdrawal for a stale path");
        assert_eq!(
            r.adj_out(4, None).len(),
            3,
            "stale paths are still advertised"
        );
        assert!(r.peer_meta(2).is_none(), "a down peer is not up");
        // Back: one prefix re-announced with the same attributes, one withdrawn, one silent.
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        assert_eq!(r.stale_len(2), 3);
        r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65002]));
        assert!(!r.is_stale(2, &"172.16.0.0/16".parse().unwrap()));
        assert_eq!(r.stale_len(2), 2);
        // End-of-RIB: what is still stale goes.
        assert_eq!(r.flush_stale(2, Some(Family::IPV4_UNICAST)), 2);
        let changes = r.run_decision();
        assert_eq!(changes.len(), 2);
        assert_eq!(r.loc_rib_len(), 1);
        assert_eq!(r.adj_in_len(2), 1);
    }

    #[test]
    fn graceful_down_drops_unlisted_families_and_old_stale_paths() {
        let mut r = rib();
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65002]));
        r.apply_update(2, announce("172.17.0.0/16", [198, 18, 0, 2], &[65002]));
        r.run_decision();
        // IPv4 not listed: nothing kept, the peer is forgotten.
        assert_eq!(r.peer_down_graceful(2, &[Family::IPV6_UNICAST]), 0);
        assert_eq!(r.run_decision().len(), 2);
        assert_eq!(r.loc_rib_len(), 0);

        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65002]));
        r.run_decision();
        assert_eq!(r.peer_down_graceful(2, &[Family::IPV4_UNICAST]), 1);
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        r.apply_update(2, announce("172.17.0.0/16", [198, 18, 0, 2], &[65002]));
        // A second drop before End-of-RIB: the path still stale from the first goes, the fresh
        // one becomes stale.
        assert_eq!(r.peer_down_graceful(2, &[Family::IPV4_UNICAST]), 1);
        r.run_decision();
        assert!(r.is_stale(2, &"172.17.0.0/16".parse().unwrap()));
        assert_eq!(r.loc_rib_len(), 1);
        // The restart time runs out: all gone, the peer forgotten.
        assert_eq!(r.flush_stale(2, None), 1);
        r.run_decision();
        assert_eq!(r.loc_rib_len(), 0);
        assert_eq!(r.stale_len(2), 0);
        assert_eq!(r.adj_in_len(2), 0);
    }

    #[test]
    fn ebgp_route_with_wrong_first_as_or_own_as_is_not_accepted() {
        let mut r = rib();
        r.peer_up(2, meta(2, PeerRole::Ebgp, 65002));
        let s = r.apply_update(2, announce("172.16.0.0/16", [198, 18, 0, 2], &[65099]));
        assert_eq!(
            (s.announced, s.rejected),
            (0, 1),
            "first AS must be the peer's"
        );
        let s = r.apply_update(
            2,
            announce("172.17.0.0/16", [198, 18, 0, 2], &[65002, 64512]),
        );
        assert_eq!(
            (s.announced, s.rejected),
            (0, 1),
            "our AS in the path is a loop"
        );
        let s = r.apply_update(2, announce("172.18.0.0/16", [198, 18, 0, 1], &[65002]));
        assert_eq!(
            (s.announced, s.rejected),
            (0, 1),
            "our own address as next hop is ignored"
        );
    }
}
