//! The BGP decision process (RFC 4271 §9.1.2) as a comparison that carries its reason.
//!
//! `compare(a, b, cfg)` is deliberately not `impl Ord`: MED is only comparable between paths
//! from the same neighbouring AS, so the relation is not transitive across ASes. Best-path
//! selection ([`select`]) therefore uses the "deterministic MED" procedure: paths are grouped by
//! neighbour AS, the best of each group is chosen with MED, and group winners are compared
//! without it. Every comparison chain inside that procedure is a total order, so the result is
//! independent of the order in which paths arrived (tested by permutation).
//!
//! Steps, in order (first difference decides):
//! 1. locally originated over learned;
//! 2. higher LOCAL_PREF (absent = 100);
//! 3. shorter AS_PATH (§9.1.2.2 a; AS_SET counts 1);
//! 4. lower ORIGIN (§9.1.2.2 b);
//! 5. lower MED, same neighbour AS only unless `always_compare_med` (§9.1.2.2 c; absent = 0);
//! 6. eBGP-learned over iBGP-learned (§9.1.2.2 d);
//! 7. lower router id — ORIGINATOR_ID when present (RFC 4456 §9) (§9.1.2.2 f);
//! 8. shorter CLUSTER_LIST (RFC 4456 §9);
//! 9. lower peer address (§9.1.2.2 g).
//!
//! Paths equal to the best through step 6 (and with the same neighbour AS) form the ECMP set.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr};

use crate::wire::{Origin, PathAttrs};

/// Decision options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectionCfg {
    pub always_compare_med: bool,
    pub max_ecmp: usize,
}

impl Default for SelectionCfg {
    fn default() -> Self {
        SelectionCfg {
            always_compare_med: false,
            max_ecmp: 16,
        }
    }
}

/// The step of the decision process that separated two paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    LocallyOriginated,
    LocalPref,
    AsPathLength,
    Origin,
    Med,
    EbgpOverIbgp,
    RouterId,
    ClusterListLength,
    PeerAddress,
    /// Nothing separated them, or there was no other path.
    Equal,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LocallyOriginated => "locally-originated",
            Reason::LocalPref => "local-pref",
            Reason::AsPathLength => "as-path-length",
            Reason::Origin => "origin",
            Reason::Med => "med",
            Reason::EbgpOverIbgp => "ebgp-over-ibgp",
            Reason::RouterId => "router-id",
            Reason::ClusterListLength => "cluster-list-length",
            Reason::PeerAddress => "peer-address",
            Reason::Equal => "only-path",
        }
    }

    /// True when the two paths tie through eBGP/iBGP (step 6): multipath candidates.
    pub fn is_multipath_tie(self) -> bool {
        self >= Reason::RouterId
    }
}

/// Which of the two compared paths wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winner {
    A,
    B,
}

/// The outcome of a comparison: who won, and at which step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub winner: Winner,
    pub reason: Reason,
}

/// The facts about one candidate path the decision needs.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub attrs: &'a PathAttrs,
    /// `None` for locally originated paths.
    pub peer_address: Option<IpAddr>,
    pub peer_router_id: Ipv4Addr,
    pub ebgp: bool,
}

impl Candidate<'_> {
    fn local_pref(&self) -> u32 {
        self.attrs.local_pref.unwrap_or(100)
    }
    fn as_path_len(&self) -> usize {
        self.attrs
            .as_path
            .as_ref()
            .map_or(0, |p| p.len_for_decision())
    }
    fn origin(&self) -> Origin {
        self.attrs.origin.unwrap_or(Origin::Incomplete)
    }
    /// Neighbour AS (RFC 4271 §9.1.2.2 c): the first AS in the path; 0 for local/empty paths.
    pub fn neighbor_as(&self) -> u32 {
        self.attrs
            .as_path
            .as_ref()
            .and_then(|p| p.first_asn())
            .unwrap_or(0)
    }
    fn router_id(&self) -> u32 {
        u32::from(self.attrs.originator_id.unwrap_or(self.peer_router_id))
    }
}

fn step(o: Ordering, reason: Reason) -> Option<Decision> {
    match o {
        // Ordering::Greater means "a is preferred".
        Ordering::Greater => Some(Decision {
            winner: Winner::A,
            reason,
        }),
        Ordering::Less => Some(Decision {
            winner: Winner::B,
            reason,
        }),
        Ordering::Equal => None,
    }
}

/// Compares two paths for the same prefix. `compare_med` decides whether step 5 runs.
fn compare_inner(a: &Candidate, b: &Candidate, compare_med: bool) -> Decision {
    let a_local = a.peer_address.is_none();
    let b_local = b.peer_address.is_none();
    step(a_local.cmp(&b_local), Reason::LocallyOriginated)
        .or_else(|| step(a.local_pref().cmp(&b.local_pref()), Reason::LocalPref))
        .or_else(|| step(b.as_path_len().cmp(&a.as_path_len()), Reason::AsPathLength))
        .or_else(|| step(b.origin().cmp(&a.origin()), Reason::Origin))
        .or_else(|| {
            if compare_med {
                step(
                    b.attrs.med.unwrap_or(0).cmp(&a.attrs.med.unwrap_or(0)),
                    Reason::Med,
                )
            } else {
                None
            }
        })
        .or_else(|| step(a.ebgp.cmp(&b.ebgp), Reason::EbgpOverIbgp))
        .or_else(|| step(b.router_id().cmp(&a.router_id()), Reason::RouterId))
        .or_else(|| {
            step(
                b.attrs.cluster_list.len().cmp(&a.attrs.cluster_list.len()),
                Reason::ClusterListLength,
            )
        })
        .or_else(|| step(b.peer_address.cmp(&a.peer_address), Reason::PeerAddress))
        .unwrap_or(Decision {
            winner: Winner::A,
            reason: Reason::Equal,
        })
}

/// Compares two paths (RFC 4271 §9.1.2): MED only between the same neighbour AS, unless
/// `always_compare_med`.
pub fn compare(a: &Candidate, b: &Candidate, cfg: &SelectionCfg) -> Decision {
    let med = cfg.always_compare_med || a.neighbor_as() == b.neighbor_as();
    compare_inner(a, b, med)
}

/// Result of [`select`]: indexes into the candidate slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub best: usize,
    /// The ECMP set, best first, at most `max_ecmp` entries (always contains `best`).
    pub multipath: Vec<usize>,
    /// For every candidate, the reason it lost to the best (the best's entry: the reason it
    /// beat the runner-up, or `Equal` when alone).
    pub reasons: Vec<Reason>,
}

/// Deterministic-MED best-path selection over `cands` (non-empty), independent of order.
pub fn select(cands: &[Candidate], cfg: &SelectionCfg) -> Option<Selection> {
    if cands.is_empty() {
        return None;
    }
    // Group winners by neighbour AS (MED comparable inside a group).
    let mut group_best: Vec<(u32, usize)> = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let key = if cfg.always_compare_med {
            0
        } else {
            c.neighbor_as()
        };
        match group_best.iter_mut().find(|(k, _)| *k == key) {
            Some((_, w)) => {
                if compare_inner(c, &cands[*w], true).winner == Winner::A {
                    *w = i;
                }
            }
            None => group_best.push((key, i)),
        }
    }
    // Across groups, MED is not compared (unless always_compare_med, where there is one group).
    let mut best = group_best[0].1;
    for &(_, w) in &group_best[1..] {
        if compare_inner(&cands[w], &cands[best], cfg.always_compare_med).winner == Winner::A {
            best = w;
        }
    }
    let mut reasons = vec![Reason::Equal; cands.len()];
    let mut multipath = vec![best];
    let mut ties: Vec<usize> = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        if i == best {
            continue;
        }
        let d = compare(&cands[best], c, cfg);
        reasons[i] = d.reason;
        if d.reason.is_multipath_tie() && c.neighbor_as() == cands[best].neighbor_as() {
            ties.push(i);
        }
    }
    // Deterministic ECMP membership: order ties by peer address.
    ties.sort_by_key(|&i| cands[i].peer_address);
    multipath.extend(ties.into_iter().take(cfg.max_ecmp.saturating_sub(1)));
    reasons[best] = reasons
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != best)
        .map(|(_, r)| *r)
        .min()
        .unwrap_or(Reason::Equal);
    Some(Selection {
        best,
        multipath,
        reasons,
    })
}
