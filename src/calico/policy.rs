//! Calico's export filter as a typed [`Policy`] (calico-bgp.md §2.3; what
//! bird_ipam.cfg.template's `calico_export_to_bgp_peers` does for BIRD).
//!
//! Export, per route and peer, in Calico's order:
//!
//! 1. a route inside a `disableBGPExport` pool is rejected (§2.3 step 3);
//! 2. a locally originated route (`src == None`) is accepted: [`derive`](super::derive) already
//!    applied `calico_aggr()` when it chose what to originate (§2.1, §2.3 step 7);
//! 3. a route inside any other IP pool is accepted, whatever its encapsulation, and `disabled`
//!    pools count too (§2.3 step 10, checklist "disabled pools still are");
//! 4. everything else is rejected (§2.3 step 11): default routes and other non-pool routes
//!    learned from a ToR are never passed on to other peers (projectcalico/calico#4539).
//!
//! "Inside" means the route's prefix equals the pool or is more specific (BIRD's `net ~ pool`).
//!
//! **Nested pools: longest match.** The most specific pool containing the route decides: a
//! `disableBGPExport` pool inside an exportable one rejects the routes it covers, and an
//! exportable pool inside a `disableBGPExport` one exports its routes. Two pools with the same
//! CIDR and different flags: the `disableBGPExport` one wins. BIRD's filter instead rejects a
//! route inside *any* `disableBGPExport` pool before it looks at the others; the two agree
//! whenever pools do not overlap, which Calico's IPPool validation requires, so the difference
//! only shows with hand-written (file datastore) pools. Longest match is the rule the FIB and an
//! operator reading `ip route` expect for nested prefixes.
//!
//! **Import guard** (bgp-robustness.md §6.5; Calico's BIRD imports everything, and its kernel
//! filter ends in `accept`, so any BGP speaker can steer any prefix on every node). On by
//! default ([`ImportGuard`]); a route enters the Loc-RIB only when
//!
//! 1. its prefix is inside an explicit allow list (`--import-allow`, e.g. a default route or a
//!    service range from the ToR) — then nothing else is checked; or
//! 2. its prefix lies inside an IP pool and is at least as long as the pool's block size (a
//!    block or a borrowed /32), and is not one of this node's own blocks (F23: another speaker
//!    cannot take over a block affine to this node), and its next hop is a known node's
//!    address or, from any peer, the peer's own address, or — from an eBGP peer — an address
//!    in this node's own subnets (on-link).
//!
//! Everything else is rejected as policy (counted in the peer's `rejected`, never an error).
//!
//! Cost: pools are few (a handful per cluster), so they are kept in a `Vec` sorted by prefix
//! length, longest first, and a route costs one linear scan that stops at the first pool
//! containing it: O(pools) with no allocation.

use std::net::IpAddr;

use ipnet::IpNet;

use super::derive::{Derived, PoolInfo};
use crate::rib::{PeerMeta, Policy};
use crate::wire::PathAttrs;

/// One pool as the filter needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pool {
    cidr: IpNet,
    export: bool,
}

/// Calico's export policy. See the module documentation.
///
/// Comparable, so a caller that rebuilds it after every datastore change can skip
/// [`Speaker::set_policy`](crate::speaker::Speaker::set_policy) (a full re-export) when the
/// pools did not change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CalicoPolicy {
    /// Longest prefix first; for one CIDR, the non-exportable entry first.
    pools: Vec<Pool>,
    /// `None`: accept every route on import (Calico's behaviour).
    guard: Option<Guard>,
}

/// The import guard's settings (`podbgp run --import-guard`, `--import-allow`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportGuard {
    /// Off: import everything, as Calico's BIRD does.
    pub off: bool,
    /// Prefixes accepted from any peer with any next hop (and everything inside them).
    pub allow: Vec<IpNet>,
}

/// The facts the import guard checks against (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Guard {
    /// (pool, block size).
    pools: Vec<(IpNet, u8)>,
    allow: Vec<IpNet>,
    /// Sorted.
    nodes: Vec<IpAddr>,
    /// This node's blocks, sorted.
    local: Vec<IpNet>,
    /// This node's subnets.
    subnets: Vec<IpNet>,
}

impl CalicoPolicy {
    /// The export policy for the pools of a derived node configuration (import: accept all).
    pub fn from_derived(d: &Derived) -> CalicoPolicy {
        CalicoPolicy::from_pools(&d.pools)
    }

    /// True when both admit the same routes on import.
    pub fn same_import(&self, other: &CalicoPolicy) -> bool {
        self.guard == other.guard
    }

    /// [`CalicoPolicy::from_derived`] with the import guard (unless `guard.off`).
    pub fn with_import_guard(d: &Derived, guard: &ImportGuard) -> CalicoPolicy {
        let mut p = CalicoPolicy::from_derived(d);
        if guard.off {
            return p;
        }
        let mut local: Vec<IpNet> = d
            .config
            .originate
            .iter()
            .chain(&d.blackholes)
            .map(IpNet::trunc)
            .collect();
        local.sort();
        local.dedup();
        p.guard = Some(Guard {
            pools: d
                .pools
                .iter()
                .map(|x| (x.cidr.trunc(), x.block_size))
                .collect(),
            allow: guard.allow.iter().map(IpNet::trunc).collect(),
            nodes: d.node_addrs.clone(),
            local,
            subnets: [d.ipv4, d.ipv6]
                .into_iter()
                .flatten()
                .map(|a| a.network())
                .collect(),
        });
        p
    }

    /// The policy for a set of IP pools (every pool, `disabled` ones included).
    pub fn from_pools(pools: &[PoolInfo]) -> CalicoPolicy {
        CalicoPolicy::new(pools.iter().map(|p| (p.cidr, !p.disable_bgp_export)))
    }

    /// The policy for `(cidr, exportable)` pairs; `exportable` is `!disableBGPExport`.
    pub fn new(pools: impl IntoIterator<Item = (IpNet, bool)>) -> CalicoPolicy {
        let mut pools: Vec<Pool> = pools
            .into_iter()
            .map(|(cidr, export)| Pool {
                cidr: cidr.trunc(),
                export,
            })
            .collect();
        // Longest first; `false < true`, so a disableBGPExport duplicate comes first and wins.
        pools.sort_by(|a, b| {
            (b.cidr.prefix_len(), a.export, a.cidr).cmp(&(a.cidr.prefix_len(), b.export, b.cidr))
        });
        pools.dedup_by(|b, a| a.cidr == b.cidr);
        CalicoPolicy { pools, guard: None }
    }

    /// The most specific pool containing `prefix`: `Some(exportable)`, `None` outside every pool.
    pub fn pool_verdict(&self, prefix: &IpNet) -> Option<bool> {
        self.pools
            .iter()
            .find(|p| p.cidr.contains(prefix))
            .map(|p| p.export)
    }

    /// The export decision for `prefix`, `local` when this node originates it.
    pub fn exports(&self, prefix: &IpNet, local: bool) -> bool {
        match self.pool_verdict(prefix) {
            Some(false) => false,
            _ if local => true,
            Some(true) => true,
            None => false,
        }
    }
}

impl Guard {
    fn accepts(&self, peer: &PeerMeta, prefix: &IpNet, next_hop: Option<IpAddr>) -> bool {
        if self.allow.iter().any(|a| a.contains(prefix)) {
            return true;
        }
        let in_pool = self
            .pools
            .iter()
            .any(|(cidr, block)| cidr.contains(prefix) && prefix.prefix_len() >= *block);
        if !in_pool || self.local.binary_search(prefix).is_ok() {
            return false;
        }
        let Some(nh) = next_hop else {
            return false;
        };
        nh == peer.address
            || self.nodes.binary_search(&nh).is_ok()
            || (peer.ebgp() && self.subnets.iter().any(|s| s.contains(&nh)))
    }
}

impl Policy for CalicoPolicy {
    fn import(
        &self,
        peer: &PeerMeta,
        prefix: &IpNet,
        _attrs: &PathAttrs,
        next_hop: Option<IpAddr>,
    ) -> bool {
        self.guard
            .as_ref()
            .is_none_or(|g| g.accepts(peer, prefix, next_hop))
    }

    fn export(
        &self,
        _to: &PeerMeta,
        prefix: &IpNet,
        _attrs: &PathAttrs,
        src: Option<&PeerMeta>,
    ) -> bool {
        self.exports(prefix, src.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn policy(pools: &[(&str, bool)]) -> CalicoPolicy {
        CalicoPolicy::new(pools.iter().map(|&(c, e)| (net(c), e)))
    }

    /// (pools as (cidr, exportable), prefix, local?, exported?)
    type Case = (&'static [(&'static str, bool)], &'static str, bool, bool);

    const CASES: &[Case] = &[
        // No pools: only local routes go out.
        (&[], "10.244.1.0/26", true, true),
        (&[], "10.244.1.0/26", false, false),
        (&[], "0.0.0.0/0", false, false),
        // One exportable pool.
        (&[("10.244.0.0/16", true)], "10.244.5.0/26", false, true),
        (&[("10.244.0.0/16", true)], "10.244.5.7/32", false, true),
        (&[("10.244.0.0/16", true)], "10.244.0.0/16", false, true),
        (&[("10.244.0.0/16", true)], "10.0.0.0/8", false, false),
        (&[("10.244.0.0/16", true)], "0.0.0.0/0", false, false),
        (&[("10.244.0.0/16", true)], "192.0.2.0/24", false, false),
        (&[("10.244.0.0/16", true)], "192.0.2.0/24", true, true),
        // disableBGPExport: rejected, local or learned.
        (&[("10.245.0.0/16", false)], "10.245.1.0/26", false, false),
        (&[("10.245.0.0/16", false)], "10.245.1.0/26", true, false),
        (&[("10.245.0.0/16", false)], "10.245.0.0/16", true, false),
        // A local route covering a disabled pool is not inside it.
        (&[("10.245.0.0/16", false)], "10.0.0.0/8", true, true),
        // Nesting, longest match both ways.
        (
            &[("10.0.0.0/8", true), ("10.245.0.0/16", false)],
            "10.245.3.0/26",
            false,
            false,
        ),
        (
            &[("10.0.0.0/8", true), ("10.245.0.0/16", false)],
            "10.246.3.0/26",
            false,
            true,
        ),
        (
            &[("10.0.0.0/8", false), ("10.244.0.0/16", true)],
            "10.244.3.0/26",
            false,
            true,
        ),
        (
            &[("10.0.0.0/8", false), ("10.244.0.0/16", true)],
            "10.244.3.0/26",
            true,
            true,
        ),
        (
            &[("10.0.0.0/8", false), ("10.244.0.0/16", true)],
            "10.9.0.0/26",
            true,
            false,
        ),
        // Same CIDR twice: disableBGPExport wins, whatever the input order.
        (
            &[("10.244.0.0/16", true), ("10.244.0.0/16", false)],
            "10.244.1.0/26",
            false,
            false,
        ),
        (
            &[("10.244.0.0/16", false), ("10.244.0.0/16", true)],
            "10.244.1.0/26",
            false,
            false,
        ),
        // IPv6, and no cross-family matches.
        (&[("fd00:10::/48", true)], "fd00:10:0:1::/122", false, true),
        (&[("fd00:10::/48", true)], "2001:db8::/32", false, false),
        (&[("fd00:10::/48", true)], "::/0", false, false),
        (&[("fd00:10::/48", false)], "fd00:10::/122", true, false),
        (
            &[("10.244.0.0/16", true)],
            "::ffff:10.244.0.0/120",
            false,
            false,
        ),
        (&[("::/0", true)], "10.244.1.0/26", false, false),
        // A pool CIDR with host bits set still matches by its network.
        (&[("10.244.1.1/16", true)], "10.244.7.0/26", false, true),
    ];

    #[test]
    fn export_table() {
        for (i, &(pools, prefix, local, want)) in CASES.iter().enumerate() {
            let p = policy(pools);
            assert_eq!(
                p.exports(&net(prefix), local),
                want,
                "case {i}: pools {pools:?}, {prefix} local={local}"
            );
        }
    }

    #[test]
    fn order_of_pools_does_not_matter() {
        for &(pools, prefix, local, want) in CASES {
            let mut rev = pools.to_vec();
            rev.reverse();
            let p = policy(&rev);
            assert_eq!(p.exports(&net(prefix), local), want, "{rev:?} {prefix}");
            assert_eq!(
                p,
                policy(pools),
                "same policy whatever the order: {pools:?}"
            );
        }
    }

    #[test]
    fn from_pools_uses_disable_bgp_export_only() {
        use crate::calico::model::EncapMode;
        let pool = |name: &str, cidr: &str, ipip, vxlan, disable| PoolInfo {
            name: name.into(),
            cidr: net(cidr),
            ipip,
            vxlan,
            disable_bgp_export: disable,
            block_size: 26,
        };
        let p = CalicoPolicy::from_pools(&[
            pool(
                "ipip",
                "10.244.0.0/16",
                EncapMode::Always,
                EncapMode::Never,
                false,
            ),
            pool(
                "vxlan",
                "10.246.0.0/16",
                EncapMode::Never,
                EncapMode::Always,
                false,
            ),
            pool(
                "noexp",
                "10.245.0.0/16",
                EncapMode::Never,
                EncapMode::Never,
                true,
            ),
        ]);
        assert!(p.exports(&net("10.244.1.0/26"), false));
        assert!(p.exports(&net("10.246.1.0/26"), false));
        assert!(!p.exports(&net("10.245.1.0/26"), false));
        assert!(!p.exports(&net("192.0.2.0/24"), false));
        assert_eq!(p.pool_verdict(&net("192.0.2.0/24")), None);
    }
}

#[cfg(test)]
mod guard_tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::config::{NextHopMode, PeerRole};
    use crate::wire::{Family, SessionCodec};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peer(addr: &str, role: PeerRole) -> PeerMeta {
        PeerMeta {
            address: ip(addr),
            remote_as: if role == PeerRole::Ebgp { 65001 } else { 64512 },
            local_as: 64512,
            remote_id: Ipv4Addr::new(198, 18, 0, 99),
            role,
            next_hop: NextHopMode::Self_,
            allowed_local_as: 0,
            local_v4: None,
            local_v6: None,
            families: vec![Family::IPV4_UNICAST],
            codec: SessionCodec::default(),
        }
    }

    fn guard() -> Guard {
        Guard {
            pools: vec![(net("198.19.0.0/16"), 26)],
            allow: vec![net("10.96.0.0/12")],
            nodes: vec![ip("198.18.0.11"), ip("198.18.0.12"), ip("198.18.1.13")],
            local: vec![net("198.19.1.0/26")],
            subnets: vec![net("198.18.0.0/24")],
        }
    }

    #[test]
    fn import_guard_cases() {
        let g = guard();
        let mesh = peer("198.18.0.12", PeerRole::Mesh);
        let rr = peer("198.18.0.12", PeerRole::RrPeer);
        let tor = peer("198.18.0.1", PeerRole::Ebgp);
        let cases: &[(&PeerMeta, &str, Option<&str>, bool, &str)] = &[
            (
                &mesh,
                "198.19.2.0/26",
                Some("198.18.0.12"),
                true,
                "a node's block",
            ),
            (
                &mesh,
                "198.19.2.7/32",
                Some("198.18.0.12"),
                true,
                "a borrowed /32",
            ),
            (
                &rr,
                "198.19.3.0/26",
                Some("198.18.1.13"),
                true,
                "reflected, known node",
            ),
            (
                &rr,
                "198.19.3.0/26",
                Some("198.18.0.66"),
                false,
                "unknown next hop",
            ),
            (
                &mesh,
                "198.19.0.0/16",
                Some("198.18.0.12"),
                false,
                "shorter than a block",
            ),
            (
                &mesh,
                "198.19.1.0/26",
                Some("198.18.0.12"),
                false,
                "our own block (F23)",
            ),
            (
                &mesh,
                "192.0.2.0/24",
                Some("198.18.0.12"),
                false,
                "outside every pool",
            ),
            (
                &mesh,
                "0.0.0.0/0",
                Some("198.18.0.12"),
                false,
                "default route",
            ),
            (
                &tor,
                "198.19.4.0/26",
                Some("198.18.0.1"),
                true,
                "ToR, next hop self",
            ),
            (
                &tor,
                "198.19.4.0/26",
                Some("198.18.0.77"),
                true,
                "ToR, on-link next hop",
            ),
            (
                &tor,
                "198.19.4.0/26",
                Some("198.18.9.1"),
                false,
                "ToR, off-link next hop",
            ),
            (
                &mesh,
                "198.19.4.0/26",
                Some("198.18.0.77"),
                false,
                "iBGP, not a node",
            ),
            (&tor, "10.96.0.0/12", Some("198.18.9.1"), true, "allow list"),
            (
                &tor,
                "10.100.0.0/16",
                Some("198.18.9.1"),
                true,
                "inside the allow list",
            ),
            (&tor, "198.19.4.0/26", None, false, "no next hop"),
        ];
        for &(p, prefix, nh, want, what) in cases {
            assert_eq!(
                g.accepts(p, &net(prefix), nh.map(ip)),
                want,
                "{what}: {prefix} via {nh:?} from {}",
                p.address
            );
        }
    }

    #[test]
    fn without_a_guard_everything_is_imported() {
        let p = CalicoPolicy::new([(net("198.19.0.0/16"), true)]);
        let tor = peer("198.18.0.1", PeerRole::Ebgp);
        assert!(p.import(
            &tor,
            &net("0.0.0.0/0"),
            &PathAttrs::default(),
            Some(ip("198.18.9.1"))
        ));
    }
}
