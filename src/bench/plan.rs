//! The address plan of a run, the pre-encoded injector UPDATEs, and the receive-side counters.
//!
//! Prefixes are numbered globally: injector `i` (0-based) owns numbers `i*P .. (i+1)*P`.
//! Number `g` is the prefix `10.0.0.0 + g << (32 - len)` of length `len`, where `len` is the
//! shortest length ≥ 24 for which every number fits in 10.0.0.0/8 (a /24 per prefix up to 65,536
//! prefixes, /28 for the default 10 × 100,000). A receiver maps a prefix back to its number
//! with one subtraction and one shift, and keeps a bitmap of the numbers seen.

use std::net::Ipv4Addr;

use bytes::{Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net};

use crate::wire::{
    self, AsPath, Family, MAX_MESSAGE_LEN, Nlri, Origin, PathAttrs, SessionCodec, Update,
};

/// First address of the prefix space.
const BASE: u32 = 10 << 24;
/// First address of the probe prefixes (198.51.100.0/24, TEST-NET-2): injector `i` announces
/// 198.51.100.(i+1)/32 before the clock starts, to show its session and every other client's
/// are Established on the device and the device forwards between them.
const PROBE_BASE: u32 = u32::from_be_bytes([198, 51, 100, 0]);
/// Bytes of complete messages per write (message-aligned so KEEPALIVEs can follow a chunk).
const CHUNK: usize = 256 * 1024;

/// AS of the device and every client (all sessions are iBGP).
pub const ASN: u32 = 64512;
/// The device's router id and cluster id.
pub const DEVICE_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Most monitors a plan can have (sources up to 127.0.4.x, router ids up to 198.18.5.x).
pub const MAX_MONITORS: u32 = 1000;
/// Default hold time of the device and the clients.
pub const HOLD_TIME: u16 = 90;

/// The codec of a client session: 4-octet AS, 4096-octet messages (the clients do not offer
/// extended messages), iBGP.
pub fn client_codec() -> SessionCodec {
    SessionCodec {
        four_octet_as: true,
        extended_message: false,
        ibgp: true,
        ..SessionCodec::default()
    }
}

/// Sizes and addresses of one rr-fanin run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub injectors: u32,
    pub prefixes: u32,
    pub monitors: u32,
    /// Prefix length of every injected prefix.
    pub prefix_len: u8,
    /// Hold time of the device's configuration and of the clients' OPENs.
    pub hold_time: u16,
}

impl Plan {
    pub fn new(injectors: u32, prefixes: u32, monitors: u32) -> anyhow::Result<Plan> {
        anyhow::ensure!(
            (1..=89).contains(&injectors),
            "--injectors must be 1..=89 (sources 127.0.0.11..=127.0.0.99)"
        );
        anyhow::ensure!(
            (0..=MAX_MONITORS).contains(&monitors),
            "--monitors must be 0..={MAX_MONITORS} (sources 127.0.0.101..=127.0.0.254, then \
             127.0.1.1 and up)"
        );
        anyhow::ensure!(prefixes >= 1, "--prefixes must be at least 1");
        let total = u64::from(injectors) * u64::from(prefixes);
        anyhow::ensure!(
            total <= 1 << 24,
            "injectors x prefixes = {total} does not fit 10.0.0.0/8 (at most 16,777,216)"
        );
        let bits = 64 - (total - 1).leading_zeros() as u8; // ceil(log2(total))
        Ok(Plan {
            injectors,
            prefixes,
            monitors,
            prefix_len: (8 + bits).max(24),
            hold_time: HOLD_TIME,
        })
    }

    /// The mesh scenario's plan: `nodes` simulated nodes and the device, `blocks` /26 blocks
    /// each; node `j` owns numbers `j*B .. (j+1)*B` and the device the last `B` (its
    /// "injector" index is `nodes`). The address functions do not apply: nodes use the
    /// monitors' addresses and router ids.
    pub fn mesh(nodes: u32, blocks: u32) -> anyhow::Result<Plan> {
        anyhow::ensure!(
            (1..=MAX_MONITORS).contains(&nodes),
            "--nodes must be 1..={MAX_MONITORS}"
        );
        anyhow::ensure!(blocks >= 1, "--blocks must be at least 1");
        let total = (u64::from(nodes) + 1) * u64::from(blocks);
        anyhow::ensure!(
            total <= 1 << 18,
            "(nodes + 1) x blocks = {total} /26s do not fit 10.0.0.0/8 (at most 262,144)"
        );
        Ok(Plan {
            injectors: nodes + 1,
            prefixes: blocks,
            monitors: 0,
            prefix_len: 26,
            hold_time: HOLD_TIME,
        })
    }

    /// Prefixes every monitor must receive.
    pub fn total(&self) -> u32 {
        self.injectors * self.prefixes
    }

    /// Prefix number `g`.
    pub fn prefix(&self, g: u32) -> Ipv4Net {
        let addr = BASE + (g << (32 - self.prefix_len));
        Ipv4Net::new(Ipv4Addr::from(addr), self.prefix_len).unwrap_or_default()
    }

    /// The number of `p`, if it is one of this plan's prefixes.
    #[inline]
    pub fn index(&self, p: &Ipv4Net) -> Option<u32> {
        if p.prefix_len() != self.prefix_len {
            return None;
        }
        let off = u32::from(p.addr()).checked_sub(BASE)?;
        let g = off >> (32 - self.prefix_len);
        (g < self.total()).then_some(g)
    }

    /// Probe prefix of injector `i`: 198.51.100.(i+1)/32.
    pub fn probe_prefix(&self, i: u32) -> Ipv4Net {
        Ipv4Net::new(Ipv4Addr::from(PROBE_BASE + 1 + i), 32).unwrap_or_default()
    }

    /// The injector whose probe `p` is, if it is one.
    #[inline]
    pub fn probe_index(&self, p: &Ipv4Net) -> Option<u32> {
        if p.prefix_len() != 32 {
            return None;
        }
        let i = u32::from(p.addr()).checked_sub(PROBE_BASE + 1)?;
        (i < self.injectors).then_some(i)
    }

    /// Source address of injector `i` (0-based): 127.0.0.(11 + i).
    pub fn injector_addr(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, 11 + i as u8)
    }

    /// Router id and NEXT_HOP of injector `i`: 198.18.1.(1 + i).
    pub fn injector_id(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 1, 1 + i as u8)
    }

    /// Source address of monitor `j` (0-based): 127.0.0.(101 + j) for the first 154, then
    /// 127.0.1.1 … 127.0.1.254, 127.0.2.1, … (loopback: any 127/8 address binds).
    pub fn monitor_addr(&self, j: u32) -> Ipv4Addr {
        if j < 154 {
            return Ipv4Addr::new(127, 0, 0, 101 + j as u8);
        }
        let k = j - 154;
        Ipv4Addr::new(127, 0, 1 + (k / 254) as u8, 1 + (k % 254) as u8)
    }

    /// Router id of monitor `j`: 198.18.2.(1 + j) for the first 254, then 198.18.3.1, ….
    pub fn monitor_id(&self, j: u32) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 2 + (j / 254) as u8, 1 + (j % 254) as u8)
    }
}

/// Everything injector `i` sends after the clock starts.
#[derive(Debug)]
pub struct Injection {
    /// Message-aligned chunks of the UPDATEs, End-of-RIB last.
    pub chunks: Vec<Bytes>,
    pub messages: usize,
    pub bytes: usize,
}

/// A client's path attributes with NEXT_HOP `next_hop`, encoded for a client session.
fn client_attrs(next_hop: Ipv4Addr) -> BytesMut {
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        next_hop: Some(next_hop),
        local_pref: Some(100),
        ..PathAttrs::default()
    };
    let mut encoded = BytesMut::with_capacity(64);
    wire::encode_path_attrs(&attrs, &client_codec(), &mut encoded);
    encoded
}

/// The UPDATE announcing injector `i`'s probe prefix, with the attributes of its other
/// prefixes; sent once the session is up, before the clock starts.
pub fn encode_probe(plan: &Plan, i: u32) -> Bytes {
    let nlri = [Nlri::from(IpNet::V4(plan.probe_prefix(i)))];
    let mut msgs = Vec::with_capacity(1);
    wire::pack_announce(
        &client_codec(),
        &client_attrs(plan.injector_id(i)),
        Family::IPV4_UNICAST,
        None,
        &nlri,
        &mut msgs,
    );
    msgs.concat().into()
}

/// Pre-encodes injector `i`'s announcements: ORIGIN IGP, empty AS_PATH, NEXT_HOP
/// 198.18.1.(i+1), LOCAL_PREF 100, as many NLRI per 4096-octet UPDATE as fit, then End-of-RIB.
pub fn encode_injection(plan: &Plan, i: u32) -> Injection {
    encode_range(plan, i * plan.prefixes, plan.prefixes, plan.injector_id(i))
}

/// The NLRI of prefix numbers `first .. first + count`.
fn nlri_range(plan: &Plan, first: u32, count: u32) -> Vec<Nlri> {
    (first..first + count)
        .map(|g| Nlri::from(IpNet::V4(plan.prefix(g))))
        .collect()
}

/// Announcements of prefix numbers `first .. first + count` with NEXT_HOP `next_hop` (and the
/// attributes of [`encode_injection`]), then End-of-RIB, in message-aligned chunks.
pub fn encode_range(plan: &Plan, first: u32, count: u32, next_hop: Ipv4Addr) -> Injection {
    let cx = client_codec();
    let nlri = nlri_range(plan, first, count);
    let mut msgs = Vec::with_capacity(nlri.len() / 500 + 2);
    wire::pack_announce(
        &cx,
        &client_attrs(next_hop),
        Family::IPV4_UNICAST,
        None,
        &nlri,
        &mut msgs,
    );
    msgs.push(wire::end_of_rib(Family::IPV4_UNICAST));
    let messages = msgs.len();
    let bytes = msgs.iter().map(|m| m.len()).sum();
    let mut chunks = Vec::new();
    let mut cur = BytesMut::with_capacity(CHUNK + MAX_MESSAGE_LEN);
    for m in msgs {
        cur.extend_from_slice(&m);
        if cur.len() >= CHUNK {
            chunks.push(cur.split().freeze());
        }
    }
    if !cur.is_empty() {
        chunks.push(cur.freeze());
    }
    Injection {
        chunks,
        messages,
        bytes,
    }
}

/// The UPDATEs withdrawing prefix numbers `first .. first + count`, back to back.
pub fn encode_withdraw(plan: &Plan, first: u32, count: u32) -> Bytes {
    let mut msgs = Vec::new();
    wire::pack_withdraw(
        &client_codec(),
        Family::IPV4_UNICAST,
        &nlri_range(plan, first, count),
        &mut msgs,
    );
    msgs.concat().into()
}

/// The UPDATEs announcing injector `i`'s prefix numbers `first .. first + count` again, as
/// [`encode_injection`] first did (no End-of-RIB), back to back.
pub fn encode_reannounce(plan: &Plan, i: u32, first: u32, count: u32) -> Bytes {
    let mut msgs = Vec::new();
    wire::pack_announce(
        &client_codec(),
        &client_attrs(plan.injector_id(i)),
        Family::IPV4_UNICAST,
        None,
        &nlri_range(plan, first, count),
        &mut msgs,
    );
    msgs.concat().into()
}

/// What a receiver checks on each announced prefix besides counting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Reflected by the device: NEXT_HOP unchanged, ORIGINATOR_ID = the injector's router id,
    /// CLUSTER_LIST = [cluster id].
    Reflected { cluster_id: Ipv4Addr },
    /// Straight from the injector (calibration): NEXT_HOP only.
    Direct,
    /// Originated by the device itself (mesh): only numbers `first .. first + count`, with a
    /// NEXT_HOP and neither ORIGINATOR_ID nor CLUSTER_LIST.
    Originated { first: u32, count: u32 },
}

/// What one UPDATE changed at an observing receiver (see [`PrefixCounter::observe`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    /// Prefixes held that this UPDATE withdrew.
    pub withdrawn: u32,
    /// Prefixes withdrawn earlier that this UPDATE announced again.
    pub announced: u32,
}

/// Counts distinct prefixes of the plan in decoded UPDATEs (a bitmap indexed by prefix number).
#[derive(Debug)]
pub struct PrefixCounter {
    plan: Plan,
    expect: Expect,
    bits: Vec<u64>,
    /// Observing: prefixes withdrawn since last announced (a bit per number), else empty.
    gone: Vec<u64>,
    pub distinct: u64,
    /// Announced prefixes of the plan, duplicates included.
    pub announced: u64,
    /// Withdrawn prefixes, all of them (observing: also those that were [`Transitions`]).
    pub withdrawn: u64,
    /// Observing: withdrawals of held prefixes, and announcements of withdrawn ones.
    pub withdrawn_held: u64,
    pub reannounced: u64,
    /// Announced prefixes outside the plan.
    pub unexpected: u64,
    /// Prefixes of the plan whose attributes were not the expected ones.
    pub mismatched: u64,
    /// Probe prefixes received, a bit per injector.
    pub probes: ProbeSet,
}

/// The probe prefixes a receiver has seen, a bit per injector (at most 89).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeSet(u128);

impl ProbeSet {
    pub fn insert(&mut self, i: u32) {
        if i < 128 {
            self.0 |= 1 << i;
        }
    }

    pub fn len(&self) -> u32 {
        self.0.count_ones()
    }
}

impl PrefixCounter {
    pub fn new(plan: Plan, expect: Expect) -> Self {
        PrefixCounter {
            plan,
            expect,
            bits: vec![0; (plan.total() as usize).div_ceil(64)],
            gone: Vec::new(),
            distinct: 0,
            announced: 0,
            withdrawn: 0,
            withdrawn_held: 0,
            reannounced: 0,
            unexpected: 0,
            mismatched: 0,
            probes: ProbeSet::default(),
        }
    }

    /// Also tracks withdrawals and announcements again of the plan's prefixes (churn), which
    /// [`PrefixCounter::update`] then returns.
    pub fn observe(mut self) -> Self {
        self.gone = vec![0; self.bits.len()];
        self
    }

    /// Withdrawals that were no [`Transitions`] (all of them when not observing).
    pub fn spurious_withdrawals(&self) -> u64 {
        self.withdrawn - self.withdrawn_held
    }

    /// Announcements of prefixes held already.
    pub fn duplicates(&self) -> u64 {
        self.announced - self.distinct - self.reannounced
    }

    fn bit(&self, p: &IpNet) -> Option<(usize, u64)> {
        let g = match p {
            IpNet::V4(p) => self.plan.index(p)?,
            IpNet::V6(_) => return None,
        };
        Some(((g / 64) as usize, 1u64 << (g % 64)))
    }

    pub fn update(&mut self, u: &Update) -> Transitions {
        let mut t = Transitions::default();
        let withdrawn = u
            .withdrawn
            .iter()
            .chain(u.mp_unreach.iter().flat_map(|m| m.withdrawn.iter()));
        for n in withdrawn {
            self.withdrawn += 1;
            if self.gone.is_empty() {
                continue;
            }
            if let Some((w, b)) = self.bit(&n.prefix)
                && self.bits[w] & b != 0
                && self.gone[w] & b == 0
            {
                self.gone[w] |= b;
                self.withdrawn_held += 1;
                t.withdrawn += 1;
            }
        }
        if u.treat_as_withdraw.is_some() {
            let n = u.nlri.len() + u.mp_reach.as_ref().map_or(0, |m| m.nlri.len());
            self.mismatched += n as u64;
            return t;
        }
        let cluster = match self.expect {
            Expect::Reflected { cluster_id } => Some(cluster_id),
            Expect::Direct | Expect::Originated { .. } => None,
        };
        let a = &u.attrs;
        let mp_nh = u.mp_reach.as_ref().and_then(|m| match m.next_hop {
            wire::MpNextHop::V4(a) => Some(a),
            _ => None,
        });
        let fields = [(&u.nlri, a.next_hop)];
        let mp = u.mp_reach.as_ref().map(|m| (&m.nlri, mp_nh));
        for (list, nh) in fields.into_iter().chain(mp) {
            for n in list {
                let g = match n.prefix {
                    IpNet::V4(p) => match self.plan.probe_index(&p) {
                        Some(i) if !matches!(self.expect, Expect::Originated { .. }) => {
                            self.probes.insert(i);
                            continue;
                        }
                        _ => self.plan.index(&p),
                    },
                    IpNet::V6(_) => None,
                };
                let g = match (g, self.expect) {
                    (Some(g), Expect::Originated { first, count })
                        if !(first..first + count).contains(&g) =>
                    {
                        None
                    }
                    (g, _) => g,
                };
                let Some(g) = g else {
                    self.unexpected += 1;
                    continue;
                };
                self.announced += 1;
                let (w, b) = ((g / 64) as usize, 1u64 << (g % 64));
                if let Some(word) = self.bits.get_mut(w)
                    && *word & b == 0
                {
                    *word |= b;
                    self.distinct += 1;
                } else if let Some(gone) = self.gone.get_mut(w)
                    && *gone & b != 0
                {
                    *gone &= !b;
                    self.reannounced += 1;
                    t.announced += 1;
                }
                let ok = match self.expect {
                    Expect::Originated { .. } => {
                        nh.is_some() && a.originator_id.is_none() && a.cluster_list.is_empty()
                    }
                    _ => {
                        let inj = self.plan.injector_id(g / self.plan.prefixes);
                        nh == Some(inj)
                            && match cluster {
                                Some(c) => a.originator_id == Some(inj) && a.cluster_list == [c],
                                None => a.originator_id.is_none() && a.cluster_list.is_empty(),
                            }
                    }
                };
                if !ok {
                    self.mismatched += 1;
                }
            }
        }
        t
    }
}

/// What a cheap walk of one UPDATE found (no allocation, no attribute parsing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawCount {
    /// Prefixes in the classic NLRI field.
    pub announced: u64,
    pub end_of_rib: bool,
}

/// Counts the classic IPv4 NLRI of an UPDATE frame (header included) by walking the length
/// octets; used by the injectors, which only drain what the device reflects to them.
/// `None` when the frame is not a well-formed UPDATE.
pub fn raw_count(frame: &[u8]) -> Option<RawCount> {
    let body = frame.get(wire::HEADER_LEN..)?;
    let wrl = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let rest = body.get(2 + wrl..)?;
    let tpal = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let nlri = rest.get(2 + tpal..)?;
    let mut i = 0usize;
    let mut announced = 0u64;
    while i < nlri.len() {
        let len = usize::from(nlri[i]);
        i += 1 + len.div_ceil(8);
        announced += 1;
    }
    Some(RawCount {
        announced,
        end_of_rib: wrl == 0 && tpal == 0 && nlri.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_prefix_lengths() {
        assert_eq!(Plan::new(4, 2_500, 2).unwrap().prefix_len, 24);
        assert_eq!(Plan::new(10, 100_000, 2).unwrap().prefix_len, 28);
        assert_eq!(Plan::new(1, 1 << 24, 1).unwrap().prefix_len, 32);
        assert!(Plan::new(2, 1 << 24, 1).is_err());
    }

    #[test]
    fn monitor_addresses_are_distinct() {
        let p = Plan::new(89, 10, MAX_MONITORS).unwrap();
        let mut addrs = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for i in 0..p.injectors {
            assert!(addrs.insert(p.injector_addr(i)));
            assert!(ids.insert(p.injector_id(i)));
        }
        for j in 0..p.monitors {
            let a = p.monitor_addr(j);
            assert!(a.is_loopback() && a != Ipv4Addr::new(127, 0, 0, 1), "{a}");
            assert!(addrs.insert(a), "{a}");
            assert!(ids.insert(p.monitor_id(j)), "{}", p.monitor_id(j));
        }
        assert!(!ids.contains(&DEVICE_ID));
        assert!(Plan::new(1, 1, MAX_MONITORS + 1).is_err());
    }

    #[test]
    fn probes_are_not_plan_prefixes() {
        let p = Plan::new(89, 100, 1).unwrap();
        for i in 0..p.injectors {
            let q = p.probe_prefix(i);
            assert_eq!(p.probe_index(&q), Some(i));
            assert_eq!(p.index(&q), None);
        }
        assert_eq!(p.probe_index(&p.prefix(0)), None);
    }

    #[test]
    fn index_round_trips() {
        let p = Plan::new(10, 100_000, 2).unwrap();
        for g in [0, 1, 99_999, 100_000, 999_999] {
            assert_eq!(p.index(&p.prefix(g)), Some(g));
        }
        assert_eq!(p.index(&"10.0.0.0/24".parse().unwrap()), None);
        assert_eq!(p.index(&"9.0.0.0/28".parse().unwrap()), None);
    }

    #[test]
    fn injection_decodes_and_counts() {
        let plan = Plan::new(3, 5_000, 1).unwrap();
        let inj = encode_injection(&plan, 1);
        let cx = client_codec();
        let mut c = PrefixCounter::new(plan, Expect::Direct);
        let mut raw = 0;
        let mut eor = 0;
        let mut frames = 0;
        for chunk in &inj.chunks {
            let mut buf = &chunk[..];
            while let Some(n) = wire::frame_len(buf, MAX_MESSAGE_LEN).unwrap() {
                let (f, rest) = buf.split_at(n);
                buf = rest;
                frames += 1;
                let rc = raw_count(f).unwrap();
                raw += rc.announced;
                eor += usize::from(rc.end_of_rib);
                match wire::decode_message(f, &cx).unwrap() {
                    wire::Message::Update(u) => {
                        c.update(&u);
                    }
                    m => panic!("{m:?}"),
                }
            }
            assert!(buf.is_empty());
        }
        assert_eq!(frames, inj.messages);
        assert_eq!(eor, 1);
        assert_eq!(raw, 5_000);
        assert_eq!(c.distinct, 5_000);
        assert_eq!(c.mismatched + c.unexpected + c.withdrawn, 0);
        // 4096-octet messages with /24s: about 1,000 prefixes each.
        assert!(inj.messages <= 7, "{}", inj.messages);
    }

    /// Decodes the UPDATEs of `bytes` and feeds them to `c`, summing the transitions.
    fn feed(c: &mut PrefixCounter, bytes: &[u8]) -> Transitions {
        let cx = client_codec();
        let mut buf = bytes;
        let mut t = Transitions::default();
        while let Some(n) = wire::frame_len(buf, MAX_MESSAGE_LEN).unwrap() {
            let (f, rest) = buf.split_at(n);
            buf = rest;
            match wire::decode_message(f, &cx).unwrap() {
                wire::Message::Update(u) => {
                    let d = c.update(&u);
                    t.withdrawn += d.withdrawn;
                    t.announced += d.announced;
                }
                m => panic!("{m:?}"),
            }
        }
        t
    }

    #[test]
    fn observing_counter_sees_withdrawals_and_announcements_again() {
        let plan = Plan::new(2, 3_000, 1).unwrap();
        let mut c = PrefixCounter::new(plan, Expect::Direct).observe();
        let inj = encode_injection(&plan, 0);
        let t = feed(&mut c, &inj.chunks.concat());
        assert_eq!(t, Transitions::default());
        assert_eq!(c.distinct, 3_000);
        // Withdraw 1,200 (two messages), then again (spurious), then announce them again.
        let w = encode_withdraw(&plan, 100, 1_200);
        assert_eq!(feed(&mut c, &w).withdrawn, 1_200);
        assert_eq!(feed(&mut c, &w), Transitions::default());
        assert_eq!(c.spurious_withdrawals(), 1_200);
        let a = encode_reannounce(&plan, 0, 100, 1_200);
        assert_eq!(feed(&mut c, &a).announced, 1_200);
        assert_eq!(c.duplicates(), 0);
        // Announced once more: duplicates now.
        assert_eq!(feed(&mut c, &a), Transitions::default());
        assert_eq!(c.duplicates(), 1_200);
        assert_eq!(c.mismatched + c.unexpected, 0);
        // Not observing: no transitions, every withdrawal spurious.
        let mut plain = PrefixCounter::new(plan, Expect::Direct);
        feed(&mut plain, &inj.chunks.concat());
        assert_eq!(feed(&mut plain, &w), Transitions::default());
        assert_eq!(plain.spurious_withdrawals(), 1_200);
    }

    #[test]
    fn mesh_plan_and_originated_blocks() {
        let plan = Plan::mesh(20, 8).unwrap();
        assert_eq!(plan.prefix_len, 26);
        assert_eq!(plan.total(), 21 * 8);
        assert_eq!(plan.prefix(1).to_string(), "10.0.0.64/26");
        assert!(Plan::mesh(1, 1 << 17).is_ok());
        assert!(Plan::mesh(1, (1 << 17) + 1).is_err());
        assert!(Plan::mesh(MAX_MONITORS + 1, 1).is_err());
        // Node 3's blocks are unexpected at a node that must only see the device's (node 20).
        let mut c = PrefixCounter::new(
            plan,
            Expect::Originated {
                first: 160,
                count: 8,
            },
        );
        let node = encode_range(&plan, 3 * 8, 8, Ipv4Addr::new(198, 18, 2, 4));
        feed(&mut c, &node.chunks.concat());
        assert_eq!((c.distinct, c.unexpected), (0, 8));
        let own = encode_range(&plan, 160, 8, DEVICE_ID);
        feed(&mut c, &own.chunks.concat());
        assert_eq!((c.distinct, c.unexpected, c.mismatched), (8, 8, 0));
    }
}
