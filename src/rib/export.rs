//! Who gets which route, with which attributes (RFC 4271 §9.1.3 and §5.1, RFC 4456 §6–§8).
//!
//! * Never back to the peer it came from.
//! * iBGP split horizon: a route learned from an iBGP non-client goes only to route-reflector
//!   clients and eBGP peers; one learned from a client goes to every peer; eBGP-learned and
//!   local routes go to everyone.
//! * Reflection sets ORIGINATOR_ID (when absent) to the source's router id and prepends our
//!   cluster id to CLUSTER_LIST; NEXT_HOP, AS_PATH, LOCAL_PREF and MED are left alone.
//! * Toward eBGP: prepend our AS, next hop self unless `keep`, never LOCAL_PREF (§5.1.5), never
//!   ORIGINATOR_ID/CLUSTER_LIST (non-transitive, RFC 4456), MED only when we originated it.
//! * Toward iBGP: LOCAL_PREF always present (default 100); local routes get next hop self.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::{Interner, LOCAL, OutRoute, Path, PeerIdx, PeerMeta, PeerRib, Policy, RibCfg};
use crate::config::{NextHopMode, PeerRole};
use crate::wire::{AsPath, MpNextHop, PathAttrs};

/// The advertisement of `path` to peer `to`, or `None` when the rules forbid it. `src` is the
/// metadata of the peer the path came from (`None` for local paths; a path whose source is
/// gone is never exported).
#[allow(clippy::too_many_arguments)]
pub(super) fn export(
    cfg: &RibCfg,
    src: Option<&PeerMeta>,
    interner: &mut Interner,
    policy: &dyn Policy,
    path: &Path,
    prefix: &IpNet,
    to_idx: PeerIdx,
    to: &mut PeerRib,
) -> Option<OutRoute> {
    if path.src == to_idx {
        return None;
    }
    let prefix_is_v4 = prefix.addr().is_ipv4();
    if path.src != LOCAL && src.is_none() {
        return None;
    }
    if !policy.export(&to.meta, prefix, &path.attrs, src) {
        return None;
    }
    let src_role = src.map(|m| m.role);
    let to_role = to.meta.role;
    let src_client = matches!(src_role, Some(PeerRole::RrClient));
    let src_ibgp = src_role.is_some_and(|r| r.is_ibgp());
    let reflect = src_ibgp && to_role.is_ibgp();
    if reflect && !src_client && to_role != PeerRole::RrClient {
        // RFC 4456 §6: non-client routes are reflected to clients only.
        return None;
    }

    let next_hop = match (to.meta.ebgp(), path.next_hop) {
        (_, None) => Some(self_for(
            &to.meta.local_v4,
            &to.meta.local_v6,
            prefix_is_v4,
        )?),
        (true, Some(_)) if to.meta.next_hop == NextHopMode::Self_ => Some(self_for(
            &to.meta.local_v4,
            &to.meta.local_v6,
            prefix_is_v4,
        )?),
        // A link-local next hop is only usable on the link it was learned on (RFC 2545 §3);
        // pass the global address on.
        (_, Some(MpNextHop::V6 { global, .. })) => Some(MpNextHop::V6 {
            global,
            link_local: None,
        }),
        (_, Some(nh)) => Some(nh),
    };

    let key = (Arc::as_ptr(&path.attrs) as usize, path.src);
    if let Some((_, out)) = to.export_cache.get(&key) {
        return Some(OutRoute {
            attrs: out.clone(),
            next_hop,
        });
    }
    let mut attrs: PathAttrs = (*path.attrs).clone();
    if to.meta.ebgp() {
        let base = attrs.as_path.take().unwrap_or_default();
        attrs.as_path = Some(base.prepended(to.meta.local_as));
        attrs.local_pref = None;
        attrs.originator_id = None;
        attrs.cluster_list.clear();
        if path.src != LOCAL {
            attrs.med = None;
        }
    } else {
        if attrs.as_path.is_none() {
            attrs.as_path = Some(AsPath::default());
        }
        if attrs.local_pref.is_none() {
            attrs.local_pref = Some(100);
        }
        if reflect {
            if attrs.originator_id.is_none() {
                let src_id = src.map_or(Ipv4Addr::UNSPECIFIED, |m| m.remote_id);
                attrs.originator_id = Some(src_id);
            }
            attrs.cluster_list.insert(0, cfg.cluster_id);
        }
    }
    let out = interner.intern(attrs);
    if to.export_cache.len() > 65_536 {
        to.export_cache.clear();
    }
    to.export_cache
        .insert(key, (path.attrs.clone(), out.clone()));
    Some(OutRoute {
        attrs: out,
        next_hop,
    })
}

/// Our address of the prefix's family. IPv6 over an IPv4-only session uses the IPv4-mapped
/// address (RFC 4291 §2.5.5.2), which FRR and BIRD accept.
fn self_for(v4: &Option<Ipv4Addr>, v6: &Option<Ipv6Addr>, prefix_is_v4: bool) -> Option<MpNextHop> {
    if prefix_is_v4 {
        return v4.map(MpNextHop::V4);
    }
    match (v6, v4) {
        (Some(g), _) => Some(MpNextHop::V6 {
            global: *g,
            link_local: None,
        }),
        (None, Some(a)) => Some(MpNextHop::V6 {
            global: a.to_ipv6_mapped(),
            link_local: None,
        }),
        (None, None) => None,
    }
}
