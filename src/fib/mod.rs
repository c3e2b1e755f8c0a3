//! The kernel FIB: what podbgp wants in the kernel's routing table, and the one component that
//! writes it (ARCHITECTURE.md §10 rule 6: the FIB is a consumer of the Loc-RIB).
//!
//! * [`desired`]: a pure function from a prefix's best paths (its ECMP set) and the node's
//!   Calico facts ([`FibContext`]: IP pools and their encapsulation, this node's subnets, the
//!   IPIP device, the pool guard, the ECMP limit) to the kernel route it should have
//!   ([`FibRoute`]), plus the blackhole routes of the local blocks (calico-bgp.md §4).
//! * [`Fib`]: the adapter trait. One call applies a whole batch of [`FibOp`]s (replace or
//!   delete) and returns one error per route that failed; [`Fib::dump_own`] reads back the
//!   routes carrying our protocol. Two implementations: [`NetlinkFib`] (the kernel, over a raw
//!   netlink socket, many requests per send and no round trip per route) and [`MemoryFib`]
//!   (an in-memory recording fake for core tests, with the same ownership rules).
//!
//! **Ownership.** Every route podbgp writes carries [`FibConfig::protocol`] (default 12,
//! `RTPROT_BIRD`, so Calico's tooling and Felix treat it as BIRD's) in [`FibConfig::table`]
//! (default main, 254). A route with another protocol is never replaced or deleted: deletes
//! name our protocol, and the kernel matches on it; replaces are checked against the table
//! first (see [`netlink`] for how, and for the remaining race), and a prefix owned by someone
//! else is skipped and reported as [`FibError::ForeignRoute`].
//!
//! * [`manager`]: the sans-IO [`FibManager`]: what should be in the kernel, what is, and the
//!   batches that close the gap (coalescing, ownership, start/sweep, repair, retries).
//! * [`worker`]: the writer thread that owns the [`Fib`] in the daemon.
//!
pub mod desired;
pub mod manager;
pub mod memory;
pub mod netlink;
pub mod worker;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

pub use desired::{FibContext, blackhole_routes, compute, compute_change};
pub use manager::{FibManager, FibStats};
pub use memory::MemoryFib;
pub use netlink::NetlinkFib;

/// `RTPROT_BIRD`: the protocol Calico's BIRD tags its kernel routes with.
pub const RTPROT_BIRD: u8 = 12;
/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;

/// One next hop of a unicast route.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHop {
    /// The gateway (the BGP next hop). May be of the other family than the prefix (an IPv4
    /// route via an IPv6 next hop, RFC 8950); it is then sent as `RTA_VIA`.
    pub gateway: IpAddr,
    /// The output interface by name; `None` lets the kernel resolve it from the gateway.
    pub dev: Option<String>,
    /// `RTNH_F_ONLINK`: the gateway is reachable on `dev` even though no connected subnet
    /// says so (IPIP over `tunl0`). Meaningful only with `dev`.
    pub onlink: bool,
}

impl NextHop {
    /// A plain next hop: the kernel picks the interface.
    pub fn via(gateway: IpAddr) -> NextHop {
        NextHop {
            gateway,
            dev: None,
            onlink: false,
        }
    }

    /// `via gateway dev <dev> onlink`.
    pub fn onlink(gateway: IpAddr, dev: &str) -> NextHop {
        NextHop {
            gateway,
            dev: Some(dev.to_string()),
            onlink: true,
        }
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "via {}", self.gateway)?;
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

/// What a kernel route does with the packets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Forward via one next hop, or several (`RTA_MULTIPATH`, equal weights). Never empty;
    /// sorted and without duplicate gateways when built by [`desired::compute`].
    Unicast { nexthops: Vec<NextHop> },
    /// `RTN_BLACKHOLE`: drop silently (a local block's covering route).
    Blackhole,
    /// Only ever read back by [`Fib::dump_own`]: a route carrying our protocol that podbgp
    /// never installs (another route type such as `unreachable`, or a unicast route without a
    /// gateway), e.g. left behind by BIRD. It is reported so a sweep can delete it;
    /// [`FibOp::Replace`] refuses it with [`FibError::Invalid`].
    Other { rtn_type: u8 },
}

/// One desired (or installed) kernel route.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FibRoute {
    /// The destination, host bits cleared.
    pub prefix: IpNet,
    pub kind: RouteKind,
}

impl FibRoute {
    pub fn blackhole(prefix: IpNet) -> FibRoute {
        FibRoute {
            prefix: prefix.trunc(),
            kind: RouteKind::Blackhole,
        }
    }

    pub fn unicast(prefix: IpNet, nexthops: Vec<NextHop>) -> FibRoute {
        FibRoute {
            prefix: prefix.trunc(),
            kind: RouteKind::Unicast { nexthops },
        }
    }

    /// Whether `installed` (read back from the kernel) does what `self` (desired) asks: same
    /// prefix and kind, the same set of gateways, and for each next hop the same `onlink` and,
    /// where `self` names a device, the same device (where it does not, the kernel chose one
    /// and any is fine). Next-hop order does not matter.
    pub fn satisfied_by(&self, installed: &FibRoute) -> bool {
        if self.prefix != installed.prefix {
            return false;
        }
        match (&self.kind, &installed.kind) {
            (RouteKind::Blackhole, RouteKind::Blackhole) => true,
            (RouteKind::Unicast { nexthops: want }, RouteKind::Unicast { nexthops: have }) => {
                want.len() == have.len()
                    && want.iter().all(|w| {
                        have.iter().any(|h| {
                            h.gateway == w.gateway
                                && h.onlink == w.onlink
                                && (w.dev.is_none() || w.dev == h.dev)
                        })
                    })
            }
            _ => false,
        }
    }
}

impl fmt::Display for FibRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RouteKind::Blackhole => write!(f, "blackhole {}", self.prefix),
            RouteKind::Other { rtn_type } => write!(f, "type {rtn_type} {}", self.prefix),
            RouteKind::Unicast { nexthops } if nexthops.len() == 1 => {
                write!(f, "{} {}", self.prefix, nexthops[0])
            }
            RouteKind::Unicast { nexthops } => {
                write!(f, "{}", self.prefix)?;
                for nh in nexthops {
                    write!(f, " nexthop {nh}")?;
                }
                Ok(())
            }
        }
    }
}

/// One change to the kernel table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FibOp {
    /// Install a route where nothing is (`NLM_F_CREATE | NLM_F_EXCL`): fails with
    /// [`FibError::Exists`] when any route, ours or another protocol's, holds the prefix at our
    /// metric. The [`FibManager`] uses it for every prefix it does not know to be ours, so a
    /// route it has not heard of is never overwritten.
    Add(FibRoute),
    /// Install, or replace what we have for the prefix (`NLM_F_CREATE | NLM_F_REPLACE`).
    Replace(FibRoute),
    /// Remove our route for the prefix (only a route carrying our protocol).
    Delete(IpNet),
}

impl FibOp {
    pub fn prefix(&self) -> IpNet {
        match self {
            FibOp::Add(r) | FibOp::Replace(r) => r.prefix,
            FibOp::Delete(p) => *p,
        }
    }

    /// The operation that makes the kernel match `desired` for `prefix`: replace, or delete
    /// when nothing is wanted.
    pub fn for_desired(prefix: IpNet, desired: Option<FibRoute>) -> FibOp {
        match desired {
            Some(r) => FibOp::Replace(r),
            None => FibOp::Delete(prefix.trunc()),
        }
    }
}

/// Which kind of request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Delete,
    Dump,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Add => "add",
            OpKind::Replace => "replace",
            OpKind::Delete => "delete",
            OpKind::Dump => "dump",
        })
    }
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// Why one route (or a whole request) failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FibError {
    /// A route with another protocol holds the prefix (same table and metric): left untouched.
    #[error("the kernel route for this prefix belongs to protocol {protocol}; left untouched")]
    ForeignRoute { protocol: u8 },
    /// A delete found no route of ours for the prefix (`ESRCH`): already gone, or only another
    /// protocol's route is there (which the kernel then did not touch).
    #[error("no route of ours to delete")]
    NotInstalled,
    /// An [`FibOp::Add`] found a route already there (`EEXIST`), whose owner is unknown.
    #[error("a route for this prefix already exists")]
    Exists,
    /// A next hop names an interface that does not exist.
    #[error("no such interface {0:?}")]
    UnknownDevice(String),
    /// The kernel refused the request.
    #[error("kernel refused {op}: {}", errno_text(*errno))]
    Kernel { op: OpKind, errno: i32 },
    /// The request was sent but its acknowledgement never came (socket receive buffer overrun
    /// or timeout): the route's state is unknown until the next dump.
    #[error("no acknowledgement from the kernel: {}", errno_text(*errno))]
    NoAck { errno: i32 },
    /// A socket call failed; nothing is known to have been applied.
    #[error("netlink socket: {}", errno_text(*errno))]
    Socket { errno: i32 },
    /// The kernel sent something this adapter cannot decode.
    #[error("undecodable netlink message: {0}")]
    Decode(&'static str),
    /// The route cannot be expressed (e.g. a unicast route without next hops).
    #[error("invalid route: {0}")]
    Invalid(&'static str),
}

impl FibError {
    fn socket(e: &std::io::Error) -> FibError {
        FibError::Socket {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// Where and how the adapter writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FibConfig {
    /// `rtm_protocol` of every route we write; only routes with it are ours.
    pub protocol: u8,
    /// Routing table id (254 = main). Ids above 255 go in `RTA_TABLE`.
    pub table: u32,
    /// `RTA_PRIORITY` (the metric); `None` leaves the kernel default (0 for IPv4, 1024 for
    /// IPv6). Calico from v3.32 uses 1024 for BGP routes.
    pub metric: Option<u32>,
}

impl Default for FibConfig {
    fn default() -> Self {
        FibConfig {
            protocol: RTPROT_BIRD,
            table: RT_TABLE_MAIN,
            metric: None,
        }
    }
}

impl FibConfig {
    /// The metric the kernel gives our routes of this family.
    pub fn effective_metric(&self, prefix: &IpNet) -> u32 {
        match (self.metric, prefix) {
            (Some(m), _) => m,
            (None, IpNet::V4(_)) => 0,
            (None, IpNet::V6(_)) => 1024,
        }
    }
}

/// A kernel routing table as podbgp sees it. See the module documentation.
pub trait Fib {
    /// Applies `batch` in order. Returns the routes that failed, in batch order, each with
    /// why; every other operation took effect.
    fn apply(&mut self, batch: &[FibOp]) -> Vec<(IpNet, FibError)>;

    /// The routes in our table that carry our protocol, both families, sorted by prefix.
    fn dump_own(&mut self) -> Result<Vec<FibRoute>, FibError>;

    /// Our table as ownership needs it: our routes, and the prefixes another protocol holds at
    /// our metric (TOS 0), both families.
    fn dump_table(&mut self) -> Result<KernelTable, FibError>;

    /// Changes to our table made since the last call (by anyone, us included), at our metric
    /// and TOS 0, oldest first. [`FibError::Socket`] with `ENOBUFS` means events were lost and
    /// the caller must read the table again. The default has no event source.
    fn poll_events(&mut self) -> Result<Vec<KernelEvent>, FibError> {
        Ok(Vec::new())
    }
}

/// What [`Fib::dump_table`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelTable {
    /// Routes carrying our protocol, sorted by prefix.
    pub own: Vec<FibRoute>,
    /// (prefix, protocol) of routes of other protocols at our metric.
    pub foreign: Vec<(IpNet, u8)>,
}

/// One change to our table seen on the netlink route groups (`RTM_NEWROUTE` /
/// `RTM_DELROUTE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// A route was added or replaced; `protocol` is its `rtm_protocol`.
    New { route: FibRoute, protocol: u8 },
    /// A route was deleted.
    Del { prefix: IpNet, protocol: u8 },
}
