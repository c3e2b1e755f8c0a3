//! The kernel route a prefix should have, as Calico's BIRD kernel filter decides it
//! (calico-bgp.md §4.2, the rows BIRD owns), as a pure function.
//!
//! For a prefix and its ECMP set of next hops, the most specific IP pool containing the prefix
//! (longest match, the rule [`CalicoPolicy`](crate::calico::CalicoPolicy) uses too) decides:
//!
//! | pool | route |
//! |---|---|
//! | `vxlanMode` not Never | none: Felix owns VXLAN routes |
//! | `ipipMode` Always | `via <nh> dev tunl0 onlink`, per next hop |
//! | `ipipMode` CrossSubnet | as Always when the next hop is outside this node's subnet, else plain |
//! | no encapsulation | `via <nh>` (the kernel resolves the device) |
//! | outside every pool | none while the pool guard is on (the default), else plain |
//!
//! Differences from BIRD, on purpose:
//! * **ECMP composes with encapsulation per next hop.** Calico's BIRD applies `krt_tunnel`
//!   only to single-path routes, so multipath IPIP routes leave unencapsulated
//!   (projectcalico/calico#4462); here every next hop of a multipath route gets the tunnel
//!   decision it would get alone, so a CrossSubnet route can mix a same-subnet next hop and a
//!   `tunl0 onlink` one.
//! * **The pool guard.** BIRD accepts routes outside every pool (ToR-learned prefixes); here
//!   they are not installed unless [`FibContext::pool_guard`] is off, so a peer cannot hijack,
//!   say, the node's default route (issue 5).
//! * IPIP (`tunl0`, IPv4 in IPv4) applies only to IPv4 next hops: an IPv6 next hop in an IPIP
//!   pool (which Calico's validation forbids) gets a plain route.
//!
//! Locally originated paths (no next hop) give no BGP route: a local block is covered by its
//! blackhole ([`blackhole_routes`]) and its workloads by Felix's device routes.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{FibRoute, NextHop};
use crate::calico::model::EncapMode;
use crate::calico::{Derived, PoolInfo};
use crate::rib::{BestChange, Path};

/// Calico's default IPIP device.
pub const DEFAULT_IPIP_DEVICE: &str = "tunl0";
/// BIRD's default `merge paths` limit.
pub const DEFAULT_MAX_ECMP: usize = 16;

/// The facts [`compute`] needs about this node and the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FibContext {
    /// The IP pools, any order (`disabled` ones included: their routes still exist).
    pub pools: Vec<PoolInfo>,
    /// This node's subnets (from its BGP addresses): next hops inside one are "same subnet"
    /// for CrossSubnet.
    pub local_subnets: Vec<IpNet>,
    /// The IPIP device (`tunl0`).
    pub ipip_device: String,
    /// Install only prefixes inside an IP pool (default on).
    pub pool_guard: bool,
    /// At most this many next hops per route (the first ones of the ECMP set, best first);
    /// 0 counts as 1.
    pub max_ecmp: usize,
}

impl Default for FibContext {
    fn default() -> Self {
        FibContext {
            pools: Vec::new(),
            local_subnets: Vec::new(),
            ipip_device: DEFAULT_IPIP_DEVICE.to_string(),
            pool_guard: true,
            max_ecmp: DEFAULT_MAX_ECMP,
        }
    }
}

impl FibContext {
    /// The context for a derived node configuration (its pools, subnets and ECMP limit), with
    /// the defaults for the rest.
    pub fn from_derived(d: &Derived) -> FibContext {
        FibContext {
            pools: d.pools.clone(),
            local_subnets: d.ipv4.iter().chain(&d.ipv6).map(|a| a.network()).collect(),
            max_ecmp: d.config.max_ecmp,
            ..FibContext::default()
        }
    }

    /// The most specific pool containing `prefix` (equal or more specific).
    pub fn pool_of(&self, prefix: &IpNet) -> Option<&PoolInfo> {
        self.pools
            .iter()
            .filter(|p| p.cidr.trunc().contains(prefix))
            .max_by_key(|p| p.cidr.prefix_len())
    }

    fn same_subnet(&self, gateway: IpAddr) -> bool {
        self.local_subnets.iter().any(|n| n.contains(&gateway))
    }
}

/// How a prefix's pool says to reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encap {
    Plain,
    Ipip(EncapMode),
}

fn encap_for(prefix: &IpNet, ctx: &FibContext) -> Option<Encap> {
    match ctx.pool_of(prefix) {
        None if ctx.pool_guard => None,
        None => Some(Encap::Plain),
        Some(p) if p.vxlan != EncapMode::Never => None,
        Some(p) if p.ipip != EncapMode::Never => Some(Encap::Ipip(p.ipip)),
        Some(_) => Some(Encap::Plain),
    }
}

/// The kernel route for `prefix` reached through `next_hops` (the ECMP set, best first), or
/// `None` when podbgp should have no route for it. See the module documentation.
pub fn compute(prefix: IpNet, next_hops: &[IpAddr], ctx: &FibContext) -> Option<FibRoute> {
    let prefix = prefix.trunc();
    let encap = encap_for(&prefix, ctx)?;
    let mut gateways: Vec<IpAddr> = Vec::with_capacity(next_hops.len());
    for gw in next_hops {
        if !gateways.contains(gw) {
            gateways.push(*gw);
        }
    }
    gateways.truncate(ctx.max_ecmp.max(1));
    if gateways.is_empty() {
        return None;
    }
    let mut nexthops: Vec<NextHop> = gateways
        .into_iter()
        .map(|gw| {
            let tunnel = match encap {
                Encap::Plain => false,
                Encap::Ipip(_) if !gw.is_ipv4() => false,
                Encap::Ipip(EncapMode::CrossSubnet) => !ctx.same_subnet(gw),
                Encap::Ipip(_) => true,
            };
            if tunnel {
                NextHop::onlink(gw, &ctx.ipip_device)
            } else {
                NextHop::via(gw)
            }
        })
        .collect();
    nexthops.sort();
    Some(FibRoute::unicast(prefix, nexthops))
}

/// [`compute`] for a set of RIB paths: their next hops (paths without one are locally
/// originated and give no forwarding next hop).
pub fn compute_paths(prefix: IpNet, paths: &[Path], ctx: &FibContext) -> Option<FibRoute> {
    let hops: Vec<IpAddr> = paths.iter().filter_map(Path::next_hop_addr).collect();
    compute(prefix, &hops, ctx)
}

/// [`compute`] for one Loc-RIB change (an empty ECMP set gives `None`: delete).
pub fn compute_change(change: &BestChange, ctx: &FibContext) -> Option<FibRoute> {
    compute_paths(change.prefix, &change.paths, ctx)
}

/// Blackhole routes for this node's blocks: none for /32 and /128 blocks, none for blocks in
/// VXLAN pools (Felix installs those), and none outside every pool while the guard is on.
pub fn blackhole_routes(blocks: &[IpNet], ctx: &FibContext) -> Vec<FibRoute> {
    let mut out: Vec<FibRoute> = blocks
        .iter()
        .map(IpNet::trunc)
        .filter(|b| b.prefix_len() < b.max_prefix_len())
        .filter(|b| encap_for(b, ctx).is_some())
        .map(FibRoute::blackhole)
        .collect();
    out.sort_by_key(|r| r.prefix);
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::RouteKind;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(cidr: &str, ipip: EncapMode, vxlan: EncapMode) -> PoolInfo {
        PoolInfo {
            name: format!("pool-{cidr}"),
            cidr: net(cidr),
            ipip,
            vxlan,
            disable_bgp_export: false,
            block_size: 26,
        }
    }

    fn ctx() -> FibContext {
        use EncapMode::*;
        FibContext {
            pools: vec![
                pool("10.244.0.0/16", Never, Never),
                pool("10.245.0.0/16", Always, Never),
                pool("10.246.0.0/16", CrossSubnet, Never),
                pool("10.247.0.0/16", Never, Always),
                pool("10.248.0.0/16", Never, CrossSubnet),
                // Nested: a VXLAN pool inside a no-encap one, an IPIP one inside VXLAN.
                pool("10.244.128.0/17", Never, Always),
                pool("10.247.8.0/24", Always, Never),
                pool("2001:db8:44::/48", Never, Never),
                pool("2001:db8:45::/48", Always, Never),
            ],
            local_subnets: vec![net("198.18.0.0/24"), net("2001:db8::/64")],
            ..FibContext::default()
        }
    }

    /// `"plain"` = via gw; `"tunl0"` = via gw dev tunl0 onlink.
    fn expect(prefix: &str, hops: &[(&str, &str)]) -> Option<FibRoute> {
        let mut nhs: Vec<NextHop> = hops
            .iter()
            .map(|(gw, how)| match *how {
                "plain" => NextHop::via(ip(gw)),
                dev => NextHop::onlink(ip(gw), dev),
            })
            .collect();
        nhs.sort();
        Some(FibRoute::unicast(net(prefix), nhs))
    }

    #[test]
    fn compute_table() {
        let ctx = ctx();
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, &str, &[&str], Option<FibRoute>)] = &[
            (
                "no-encap pool: plain",
                "10.244.1.0/26",
                &["198.18.0.2"],
                expect("10.244.1.0/26", &[("198.18.0.2", "plain")]),
            ),
            (
                "IPIP Always, same subnet: still tunl0",
                "10.245.1.0/26",
                &["198.18.0.2"],
                expect("10.245.1.0/26", &[("198.18.0.2", "tunl0")]),
            ),
            (
                "IPIP CrossSubnet, same subnet: plain",
                "10.246.1.0/26",
                &["198.18.0.2"],
                expect("10.246.1.0/26", &[("198.18.0.2", "plain")]),
            ),
            (
                "IPIP CrossSubnet, other subnet: tunl0",
                "10.246.1.0/26",
                &["198.19.5.2"],
                expect("10.246.1.0/26", &[("198.19.5.2", "tunl0")]),
            ),
            (
                "VXLAN Always: Felix's",
                "10.247.1.0/26",
                &["198.18.0.2"],
                None,
            ),
            (
                "VXLAN CrossSubnet: Felix's",
                "10.248.1.0/26",
                &["198.19.5.2"],
                None,
            ),
            (
                "nested VXLAN inside no-encap: longest match wins",
                "10.244.200.0/26",
                &["198.18.0.2"],
                None,
            ),
            (
                "nested IPIP inside VXLAN: longest match wins",
                "10.247.8.64/26",
                &["198.18.0.2"],
                expect("10.247.8.64/26", &[("198.18.0.2", "tunl0")]),
            ),
            (
                "the pool itself is inside the pool",
                "10.244.0.0/16",
                &["198.18.0.2"],
                expect("10.244.0.0/16", &[("198.18.0.2", "plain")]),
            ),
            (
                "covering the pool is outside it",
                "10.0.0.0/8",
                &["198.18.0.2"],
                None,
            ),
            (
                "outside every pool: guarded",
                "0.0.0.0/0",
                &["198.18.0.1"],
                None,
            ),
            ("no next hop: nothing", "10.244.1.0/26", &[], None),
            (
                "ECMP plain, sorted and deduplicated",
                "10.244.2.0/26",
                &["198.18.0.9", "198.18.0.3", "198.18.0.9"],
                expect(
                    "10.244.2.0/26",
                    &[("198.18.0.3", "plain"), ("198.18.0.9", "plain")],
                ),
            ),
            (
                "ECMP CrossSubnet mixes per next hop",
                "10.246.2.0/26",
                &["198.18.0.3", "198.19.5.3"],
                expect(
                    "10.246.2.0/26",
                    &[("198.18.0.3", "plain"), ("198.19.5.3", "tunl0")],
                ),
            ),
            (
                "ECMP IPIP Always: every next hop onlink",
                "10.245.2.0/26",
                &["198.18.0.3", "198.18.0.4"],
                expect(
                    "10.245.2.0/26",
                    &[("198.18.0.3", "tunl0"), ("198.18.0.4", "tunl0")],
                ),
            ),
            (
                "host bits cleared",
                "10.244.3.7/26",
                &["198.18.0.2"],
                expect("10.244.3.0/26", &[("198.18.0.2", "plain")]),
            ),
            (
                "IPv6 no-encap pool",
                "2001:db8:44:1::/64",
                &["2001:db8::2"],
                expect("2001:db8:44:1::/64", &[("2001:db8::2", "plain")]),
            ),
            (
                "IPv6 next hop in an IPIP pool: plain (tunl0 is IPv4 only)",
                "2001:db8:45:1::/64",
                &["2001:db8::2"],
                expect("2001:db8:45:1::/64", &[("2001:db8::2", "plain")]),
            ),
            (
                "IPv4 prefix via an IPv6 next hop (RFC 8950)",
                "10.244.4.0/26",
                &["2001:db8::2"],
                expect("10.244.4.0/26", &[("2001:db8::2", "plain")]),
            ),
        ];
        for (name, prefix, hops, want) in cases {
            let hops: Vec<IpAddr> = hops.iter().map(|h| ip(h)).collect();
            assert_eq!(&compute(net(prefix), &hops, &ctx), want, "{name}");
        }
    }

    #[test]
    fn guard_off_installs_outside_pools_plain() {
        let ctx = FibContext {
            pool_guard: false,
            ..ctx()
        };
        assert_eq!(
            compute(net("172.31.20.0/23"), &[ip("198.18.0.1")], &ctx),
            expect("172.31.20.0/23", &[("198.18.0.1", "plain")])
        );
        // The guard does not change what pools decide.
        assert_eq!(
            compute(net("10.247.1.0/26"), &[ip("198.18.0.2")], &ctx),
            None
        );
    }

    #[test]
    fn ecmp_limit_keeps_the_best_first() {
        let ctx = FibContext {
            max_ecmp: 2,
            ..ctx()
        };
        let hops = [ip("198.18.0.9"), ip("198.18.0.5"), ip("198.18.0.1")];
        assert_eq!(
            compute(net("10.244.2.0/26"), &hops, &ctx),
            expect(
                "10.244.2.0/26",
                &[("198.18.0.5", "plain"), ("198.18.0.9", "plain")]
            )
        );
        let one = FibContext { max_ecmp: 0, ..ctx };
        assert_eq!(
            compute(net("10.244.2.0/26"), &hops, &one),
            expect("10.244.2.0/26", &[("198.18.0.9", "plain")])
        );
    }

    #[test]
    fn custom_ipip_device() {
        let ctx = FibContext {
            ipip_device: "ipip0".into(),
            ..ctx()
        };
        let r = compute(net("10.245.1.0/26"), &[ip("198.18.0.2")], &ctx).unwrap();
        assert_eq!(
            r.kind,
            RouteKind::Unicast {
                nexthops: vec![NextHop::onlink(ip("198.18.0.2"), "ipip0")]
            }
        );
        assert_eq!(
            r.to_string(),
            "10.245.1.0/26 via 198.18.0.2 dev ipip0 onlink"
        );
    }

    #[test]
    fn blackholes_table() {
        let ctx = ctx();
        let blocks: Vec<IpNet> = [
            "10.244.7.0/26",       // no-encap pool: yes
            "10.245.7.0/26",       // IPIP pool: yes
            "10.247.7.0/26",       // VXLAN pool: Felix's
            "10.244.9.5/32",       // /32 block: never
            "2001:db8:44:7::/122", // IPv6 block: yes
            "2001:db8:44:8::1/128",
            "172.16.0.0/26", // outside every pool: guarded
            "10.244.7.0/26", // duplicate
        ]
        .iter()
        .map(|s| net(s))
        .collect();
        let got: Vec<String> = blackhole_routes(&blocks, &ctx)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "blackhole 10.244.7.0/26",
                "blackhole 10.245.7.0/26",
                "blackhole 2001:db8:44:7::/122",
            ]
        );
    }

    #[test]
    fn compute_change_uses_the_paths_next_hops() {
        use crate::rib::LOCAL;
        use crate::wire::{MpNextHop, PathAttrs};
        use std::sync::Arc;
        let attrs = Arc::new(PathAttrs::default());
        let path = |src, nh: Option<MpNextHop>| Path {
            src,
            attrs: attrs.clone(),
            next_hop: nh,
        };
        let ctx = ctx();
        let change = BestChange {
            prefix: net("10.246.3.0/26"),
            paths: vec![
                path(1, Some(MpNextHop::V4("198.19.5.4".parse().unwrap()))),
                path(2, Some(MpNextHop::V4("198.18.0.4".parse().unwrap()))),
                // Locally originated: no forwarding next hop.
                path(LOCAL, None),
            ],
        };
        assert_eq!(
            compute_change(&change, &ctx),
            expect(
                "10.246.3.0/26",
                &[("198.18.0.4", "plain"), ("198.19.5.4", "tunl0")]
            )
        );
        // IPv6 next hops use the global address.
        let change6 = BestChange {
            prefix: net("2001:db8:44:3::/64"),
            paths: vec![path(
                1,
                Some(MpNextHop::V6 {
                    global: "2001:db8::4".parse().unwrap(),
                    link_local: Some("fe80::4".parse().unwrap()),
                }),
            )],
        };
        assert_eq!(
            compute_change(&change6, &ctx),
            expect("2001:db8:44:3::/64", &[("2001:db8::4", "plain")])
        );
        // Withdrawn (empty ECMP set) or only local: nothing.
        let gone = BestChange {
            prefix: net("10.244.1.0/26"),
            paths: vec![],
        };
        assert_eq!(compute_change(&gone, &ctx), None);
        let local = BestChange {
            prefix: net("10.244.1.0/26"),
            paths: vec![path(LOCAL, None)],
        };
        assert_eq!(compute_change(&local, &ctx), None);
    }

    #[test]
    fn context_from_derived_takes_pools_and_subnets() {
        let d = Derived {
            config: crate::config::SpeakerConfig {
                local_as: 64512,
                router_id: "198.18.0.1".parse().unwrap(),
                listen: None,
                cluster_id: "198.18.0.1".parse().unwrap(),
                idle_hold_min: std::time::Duration::from_secs(1),
                idle_hold_max: std::time::Duration::from_secs(60),
                graceful_restart_time: None,
                max_ecmp: 4,
                originate: vec![],
                next_hop_ipv4: None,
                next_hop_ipv6: None,
                neighbors: vec![],
            },
            blackholes: vec![],
            pools: ctx().pools,
            node_addrs: vec![],
            ipv4: Some("198.18.0.1/24".parse().unwrap()),
            ipv6: Some("2001:db8::1/64".parse().unwrap()),
            notes: vec![],
        };
        let c = FibContext::from_derived(&d);
        assert_eq!(
            c,
            FibContext {
                max_ecmp: 4,
                ..ctx()
            }
        );
    }

    #[test]
    fn satisfied_by_ignores_order_and_kernel_chosen_devices() {
        let want = expect(
            "10.246.2.0/26",
            &[("198.18.0.3", "plain"), ("198.19.5.3", "tunl0")],
        )
        .unwrap();
        let have = FibRoute::unicast(
            net("10.246.2.0/26"),
            vec![
                NextHop::onlink(ip("198.19.5.3"), "tunl0"),
                NextHop {
                    gateway: ip("198.18.0.3"),
                    dev: Some("eth0".into()),
                    onlink: false,
                },
            ],
        );
        assert!(want.satisfied_by(&have));
        // A device we asked for must match; onlink must match.
        let wrong_dev = FibRoute::unicast(
            net("10.246.2.0/26"),
            vec![
                NextHop::via(ip("198.18.0.3")),
                NextHop::onlink(ip("198.19.5.3"), "eth0"),
            ],
        );
        assert!(!want.satisfied_by(&wrong_dev));
        let blackhole = FibRoute::blackhole(net("10.246.2.0/26"));
        assert!(!want.satisfied_by(&blackhole));
        assert!(blackhole.satisfied_by(&blackhole));
    }
}
