//! The kernel [`Fib`] over one raw rtnetlink socket (netlink-sys + netlink-packet-route).
//!
//! **Batching.** [`NetlinkFib::apply`] encodes every operation of the batch as an
//! `RTM_NEWROUTE` (`NLM_F_CREATE | NLM_F_REPLACE`) or `RTM_DELROUTE` message with `NLM_F_ACK`
//! and a sequence number of its own, packs up to [`MAX_PER_SEND`] of them (at most
//! [`MAX_SEND_BYTES`]) into one datagram, sends it, then drains the acknowledgements of that
//! datagram, matching each to its operation by sequence number. The kernel handles every
//! message of a datagram in the `send` call itself and continues after a failed one, so a
//! datagram costs one `send` and one `recv` per acknowledgement, never a round trip per route.
//! Draining after each datagram bounds the acknowledgements waiting in the socket's receive
//! buffer, so none is dropped for lack of space (which would leave a route's state unknown:
//! [`FibError::NoAck`]). `NETLINK_CAP_ACK` keeps each acknowledgement at 36 bytes (no echo of
//! the request). dependencies.md §2 measured this shape at roughly twice `ip -batch`.
//!
//! **Never touching another protocol's route.**
//! * Deletes carry our protocol in `rtm_protocol`: the kernel then deletes only a route with
//!   that protocol (and answers `ESRCH`, reported as [`FibError::NotInstalled`], when only
//!   another protocol's route is there).
//! * Replaces: the kernel's `NLM_F_REPLACE` matches an existing route by prefix, table, TOS
//!   and metric, whatever its protocol. So before a batch with replaces, the table is dumped
//!   (one `RTM_GETROUTE` dump per family involved, filtered by table in the kernel with
//!   `NETLINK_GET_STRICT_CHK`) and every route of another protocol is indexed by
//!   (prefix, metric) for TOS 0. A replace whose prefix and effective metric hit that index is
//!   not sent and is reported as [`FibError::ForeignRoute`]. A foreign route with another
//!   metric would not be replaced by the kernel, so ours is installed beside it. If the dump
//!   fails, every replace of the batch fails with that error (fail closed).
//! * Remaining race: a foreign route added between the dump and the send (a few milliseconds
//!   for 10,000 routes) can still be replaced. Closing it needs the kernel to match on the
//!   protocol for replaces, which it does not. The netlink monitor planned for issue 5 (route
//!   repair) will keep the foreign index current instead of dumping per batch; it also removes
//!   the dump's O(table) cost per batch, which matters for single-route updates on a node with
//!   a large table.
//!
//! **Namespaces.** The socket belongs to the network namespace of the thread that called
//! [`NetlinkFib::open`], for its whole life, whatever thread uses it later. Interface names are
//! resolved with an `RTM_GETLINK` dump on the same socket (cached, refreshed when a name or
//! index is unknown), never with `if_nametoindex`, which would ask the calling thread's
//! namespace.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::{
    Fib, FibConfig, FibError, FibOp, FibRoute, KernelEvent, KernelTable, NextHop, OpKind, RouteKind,
};

/// Requests per datagram (dependencies.md §2: 64–256 is the sweet spot).
pub const MAX_PER_SEND: usize = 128;
/// Bytes per datagram, well under the default socket send buffer.
pub const MAX_SEND_BYTES: usize = 64 * 1024;
/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
const RCVBUF: libc::c_int = 8 * 1024 * 1024;
/// One `recv`; the kernel sizes dump datagrams at most 32 KiB.
const RECV_CHUNK: usize = 64 * 1024;
/// How long to wait for an answer the kernel owes us before giving up on it.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Attempts at a dump the kernel reports as interrupted (`NLM_F_DUMP_INTR`).
const DUMP_ATTEMPTS: usize = 3;
/// Legacy multicast group bits of `RTNLGRP_IPV4_ROUTE` and `RTNLGRP_IPV6_ROUTE`.
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
/// Receive buffer of the monitor socket.
const MONITOR_RCVBUF: libc::c_int = 32 * 1024 * 1024;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;

/// A route the kernel reported, with what the ownership rules need.
#[derive(Clone, Debug)]
struct KernelRoute {
    protocol: u8,
    table: u32,
    metric: u32,
    tos: u8,
    route: FibRoute,
}

/// See the module documentation.
pub struct NetlinkFib {
    sock: Socket,
    /// Our socket's netlink port id: kernel notifications caused by our own requests carry it.
    port: u32,
    /// Checks replaces against a table dump per batch (see the module documentation).
    verify_replaces: bool,
    /// The route-group subscription ([`NetlinkFib::enable_monitor`]).
    monitor: Option<Socket>,
    /// Notifications not caused by us, raw, waiting for [`Fib::poll_events`].
    monitor_raw: Vec<u8>,
    /// The monitor socket overflowed since the last [`Fib::poll_events`].
    monitor_overrun: bool,
    cfg: FibConfig,
    seq: u32,
    rx: Vec<u8>,
    tx: Vec<u8>,
    by_name: HashMap<String, u32>,
    by_index: HashMap<u32, String>,
}

impl std::fmt::Debug for NetlinkFib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkFib")
            .field("cfg", &self.cfg)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl NetlinkFib {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open(cfg: FibConfig) -> Result<NetlinkFib, FibError> {
        let err = |e: std::io::Error| FibError::socket(&e);
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(err)?;
        let port = sock.bind_auto().map_err(err)?.port_number();
        sock.connect(&SocketAddr::new(0, 0)).map_err(err)?;
        // Best effort: a smaller buffer only means smaller safe batches, which MAX_PER_SEND
        // already keeps; old kernels lack the other two.
        let _ = sock.set_rx_buf_sz(RCVBUF);
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_netlink_get_strict_chk(true);
        sock.set_cap_ack(true).map_err(err)?;
        set_recv_timeout(&sock, RECV_TIMEOUT).map_err(err)?;
        Ok(NetlinkFib {
            sock,
            port,
            verify_replaces: true,
            monitor: None,
            monitor_raw: Vec::new(),
            monitor_overrun: false,
            cfg,
            seq: 1,
            rx: Vec::with_capacity(RECV_CHUNK),
            tx: Vec::with_capacity(MAX_SEND_BYTES + 4096),
            by_name: HashMap::new(),
            by_index: HashMap::new(),
        })
    }

    pub fn config(&self) -> &FibConfig {
        &self.cfg
    }

    /// Whether [`FibOp::Replace`]s are checked against a dump of the table first (the default).
    /// A caller that tracks ownership itself (the [`FibManager`](super::FibManager), which sends
    /// [`FibOp::Add`] for every prefix it does not know to be ours and follows the table with
    /// [`NetlinkFib::enable_monitor`]) turns it off, which makes a batch O(batch) instead of
    /// O(table).
    pub fn set_verify_replaces(&mut self, on: bool) {
        self.verify_replaces = on;
    }

    /// Subscribes to the IPv4 and IPv6 route groups, so [`Fib::poll_events`] reports changes
    /// made to our table by anyone else. Notifications our own requests cause are recognised by
    /// their port id and dropped unparsed, so installing a million routes costs no event work.
    pub fn enable_monitor(&mut self) -> Result<(), FibError> {
        let err = |e: std::io::Error| FibError::socket(&e);
        let mut mon = Socket::new(NETLINK_ROUTE).map_err(err)?;
        mon.bind(&SocketAddr::new(0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
            .map_err(err)?;
        mon.set_non_blocking(true).map_err(err)?;
        // Our own bursts land here too (dropped when read); a big buffer makes an overrun, and
        // the re-read of the table it forces, rare. SO_RCVBUFFORCE needs CAP_NET_ADMIN, which
        // writing routes needs anyway; fall back to the capped size.
        if set_int_opt(&mon, libc::SO_RCVBUFFORCE, MONITOR_RCVBUF).is_err() {
            let _ = mon.set_rx_buf_sz(MONITOR_RCVBUF);
        }
        self.monitor = Some(mon);
        Ok(())
    }

    /// Moves every queued notification into `monitor_raw`, dropping our own.
    fn drain_monitor(&mut self) {
        let Some(mon) = &self.monitor else { return };
        let mut buf = std::mem::take(&mut self.rx);
        loop {
            buf.clear();
            buf.reserve(RECV_CHUNK);
            match mon.recv(&mut buf, 0) {
                Ok(0) => break,
                Ok(n) => {
                    let n = n.min(buf.len());
                    let mut off = 0;
                    while off < n {
                        let Ok(b) = NetlinkBuffer::new_checked(&buf[off..n]) else {
                            break;
                        };
                        let len = b.length() as usize;
                        let end = (off + align4(len)).min(n);
                        if b.port_number() != self.port {
                            self.monitor_raw.extend_from_slice(&buf[off..off + len]);
                            // Keep each message 4-aligned in the raw buffer.
                            self.monitor_raw.resize(align4(self.monitor_raw.len()), 0);
                        }
                        off = end;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.monitor_overrun = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "route monitor socket");
                    break;
                }
            }
        }
        self.rx = buf;
    }

    fn next_seq(&mut self) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1).max(1);
        s
    }

    /// Receives one datagram into `self.rx`.
    fn recv(&mut self) -> std::io::Result<()> {
        self.rx.clear();
        self.rx.reserve(RECV_CHUNK);
        let n = self.sock.recv(&mut self.rx, 0)?;
        if n > self.rx.len() {
            return Err(std::io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        Ok(())
    }

    /// Runs a dump request to its `NLMSG_DONE`, retrying when the kernel says the table changed
    /// under it.
    fn dump(&mut self, req: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, FibError> {
        let mut last = FibError::Decode("dump interrupted");
        for _ in 0..DUMP_ATTEMPTS {
            match self.dump_once(req.clone()) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => last = FibError::Decode("dump interrupted three times"),
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// `Ok(None)`: the dump was interrupted (inconsistent); try again.
    fn dump_once(
        &mut self,
        req: RouteNetlinkMessage,
    ) -> Result<Option<Vec<RouteNetlinkMessage>>, FibError> {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(req));
        msg.finalize();
        self.tx.clear();
        self.tx.resize(msg.buffer_len(), 0);
        msg.serialize(&mut self.tx);
        self.sock
            .send(&self.tx, 0)
            .map_err(|e| FibError::socket(&e))?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            self.recv().map_err(|e| FibError::socket(&e))?;
            let mut off = 0;
            while off < self.rx.len() {
                let buf = NetlinkBuffer::new_checked(&self.rx[off..])
                    .map_err(|_| FibError::Decode("truncated netlink message"))?;
                let len = buf.length() as usize;
                let next = off + align4(len);
                if buf.sequence_number() != seq {
                    off = next;
                    continue; // a late answer to an earlier request
                }
                if buf.flags() & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match buf.message_type() {
                    NLMSG_DONE => return Ok((!interrupted).then_some(out)),
                    NLMSG_ERROR => {
                        let code = error_code(buf.payload());
                        if code != 0 {
                            return Err(FibError::Kernel {
                                op: OpKind::Dump,
                                errno: -code,
                            });
                        }
                    }
                    _ => {
                        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(
                            &self.rx[off..off + len],
                        );
                        match parsed {
                            Ok(m) => {
                                if let NetlinkPayload::InnerMessage(inner) = m.payload {
                                    out.push(inner);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "skipping an undecodable dump entry")
                            }
                        }
                    }
                }
                off = next;
            }
        }
    }

    /// Re-reads the interface names.
    fn refresh_links(&mut self) -> Result<(), FibError> {
        let msgs = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        self.by_name.clear();
        self.by_index.clear();
        for m in msgs {
            if let RouteNetlinkMessage::NewLink(link) = m {
                for a in &link.attributes {
                    if let LinkAttribute::IfName(name) = a {
                        self.by_name.insert(name.clone(), link.header.index);
                        self.by_index.insert(link.header.index, name.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// Every route of the given families in our table, any protocol.
    fn read_table(&mut self, families: &[AddressFamily]) -> Result<Vec<KernelRoute>, FibError> {
        let mut out = Vec::new();
        for fam in families {
            let mut req = RouteMessage::default();
            req.header.address_family = *fam;
            // Filtered in the kernel under NETLINK_GET_STRICT_CHK; checked again below.
            req.header.table = self.header_table();
            if self.cfg.table > 255 {
                req.attributes.push(RouteAttribute::Table(self.cfg.table));
            }
            for m in self.dump(RouteNetlinkMessage::GetRoute(req))? {
                if let RouteNetlinkMessage::NewRoute(r) = m
                    && let Some(k) = self.parse_route(&r)
                    && k.table == self.cfg.table
                {
                    out.push(k);
                }
            }
        }
        Ok(out)
    }

    fn header_table(&self) -> u8 {
        u8::try_from(self.cfg.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC)
    }

    fn route_header(&self, prefix: &IpNet) -> RouteHeader {
        RouteHeader {
            address_family: family_of(prefix),
            destination_prefix_length: prefix.prefix_len(),
            table: self.header_table(),
            protocol: RouteProtocol::from(self.cfg.protocol),
            ..RouteHeader::default()
        }
    }

    fn common_attributes(&self, prefix: &IpNet) -> Vec<RouteAttribute> {
        let mut attrs = vec![
            RouteAttribute::Destination(RouteAddress::from(prefix.network())),
            RouteAttribute::Table(self.cfg.table),
        ];
        if let Some(m) = self.cfg.metric {
            attrs.push(RouteAttribute::Priority(m));
        }
        attrs
    }

    fn ifindex(&self, dev: &Option<String>) -> Result<u32, FibError> {
        match dev {
            None => Ok(0),
            Some(name) => self
                .by_name
                .get(name)
                .copied()
                .ok_or_else(|| FibError::UnknownDevice(name.clone())),
        }
    }

    /// The `RTM_NEWROUTE` body for `route`.
    fn encode_replace(&self, route: &FibRoute) -> Result<RouteMessage, FibError> {
        let prefix = route.prefix.trunc();
        let mut header = self.route_header(&prefix);
        let mut attributes = self.common_attributes(&prefix);
        match &route.kind {
            RouteKind::Blackhole => header.kind = RouteType::BlackHole,
            RouteKind::Other { .. } => {
                return Err(FibError::Invalid("podbgp never installs this route type"));
            }
            RouteKind::Unicast { nexthops } => {
                header.kind = RouteType::Unicast;
                match nexthops.as_slice() {
                    [] => return Err(FibError::Invalid("unicast route without next hops")),
                    [nh] => {
                        attributes.push(gateway_attribute(&prefix, nh.gateway));
                        let index = self.ifindex(&nh.dev)?;
                        if index != 0 {
                            attributes.push(RouteAttribute::Oif(index));
                        }
                        if nh.onlink {
                            header.flags = RouteFlags::Onlink;
                        }
                    }
                    many => {
                        let mut hops = Vec::with_capacity(many.len());
                        for nh in many {
                            let mut hop = RouteNextHop::default();
                            hop.interface_index = self.ifindex(&nh.dev)?;
                            if nh.onlink {
                                hop.flags = RouteNextHopFlags::Onlink;
                            }
                            hop.attributes.push(gateway_attribute(&prefix, nh.gateway));
                            hops.push(hop);
                        }
                        attributes.push(RouteAttribute::MultiPath(hops));
                    }
                }
            }
        }
        let mut msg = RouteMessage::default();
        msg.header = header;
        msg.attributes = attributes;
        Ok(msg)
    }

    /// The `RTM_DELROUTE` body for our route to `prefix`: any type, any scope, our protocol.
    fn encode_delete(&self, prefix: &IpNet) -> RouteMessage {
        let prefix = prefix.trunc();
        let mut msg = RouteMessage::default();
        msg.header = self.route_header(&prefix);
        msg.header.scope = RouteScope::NoWhere;
        msg.header.kind = RouteType::Unspec;
        msg.attributes = self.common_attributes(&prefix);
        msg
    }

    /// A kernel route message as a [`KernelRoute`]; `None` for what is not a route of ours
    /// to describe (no destination family we know).
    fn parse_route(&self, r: &RouteMessage) -> Option<KernelRoute> {
        let h = &r.header;
        let mut dst: Option<IpAddr> = None;
        let mut table = u32::from(h.table);
        let mut metric = 0;
        let mut gateway = None;
        let mut oif = 0;
        let mut multipath = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = route_addr(d),
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Gateway(g) => gateway = route_addr(g),
                RouteAttribute::Via(v) => gateway = via_addr(v),
                RouteAttribute::Oif(i) => oif = *i,
                RouteAttribute::MultiPath(hops) => multipath = Some(hops),
                _ => {}
            }
        }
        let dst = match (dst, h.address_family) {
            (Some(d), _) => d,
            (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
            (None, AddressFamily::Inet6) => IpAddr::from([0u8; 16]),
            _ => return None,
        };
        let prefix = IpNet::new(dst, h.destination_prefix_length).ok()?.trunc();
        let other = RouteKind::Other {
            rtn_type: u8::from(h.kind),
        };
        let kind = match h.kind {
            RouteType::BlackHole => RouteKind::Blackhole,
            RouteType::Unicast => {
                let hops: Option<Vec<NextHop>> = match multipath {
                    Some(hops) => hops
                        .iter()
                        .map(|hop| {
                            let gw = hop.attributes.iter().find_map(|a| match a {
                                RouteAttribute::Gateway(g) => route_addr(g),
                                RouteAttribute::Via(v) => via_addr(v),
                                _ => None,
                            })?;
                            Some(NextHop {
                                gateway: gw,
                                dev: self.by_index.get(&hop.interface_index).cloned(),
                                onlink: hop.flags.contains(RouteNextHopFlags::Onlink),
                            })
                        })
                        .collect(),
                    None => gateway.map(|gw| {
                        vec![NextHop {
                            gateway: gw,
                            dev: self.by_index.get(&oif).cloned(),
                            onlink: h.flags.contains(RouteFlags::Onlink),
                        }]
                    }),
                };
                match hops {
                    Some(mut hops) if !hops.is_empty() => {
                        hops.sort();
                        RouteKind::Unicast { nexthops: hops }
                    }
                    _ => other,
                }
            }
            _ => other,
        };
        Some(KernelRoute {
            protocol: u8::from(h.protocol),
            table,
            metric,
            tos: h.tos,
            route: FibRoute { prefix, kind },
        })
    }

    /// (prefix, metric) → protocol of every TOS-0 route of another protocol in our table, for
    /// the families of `batch`'s replaces.
    fn foreign_index(&mut self, batch: &[FibOp]) -> Result<HashMap<(IpNet, u32), u8>, FibError> {
        let mut families = Vec::new();
        for op in batch {
            if let FibOp::Replace(r) = op {
                let f = family_of(&r.prefix);
                if !families.contains(&f) {
                    families.push(f);
                }
            }
        }
        let mut index = HashMap::new();
        for k in self.read_table(&families)? {
            if k.protocol != self.cfg.protocol && k.tos == 0 {
                index.insert((k.route.prefix, k.metric), k.protocol);
            }
        }
        Ok(index)
    }

    /// Sends one datagram of requests and drains its acknowledgements into `errors`.
    fn flush(
        &mut self,
        first_seq: u32,
        sent: &mut Vec<usize>,
        batch: &[FibOp],
        errors: &mut [Option<FibError>],
    ) {
        if sent.is_empty() {
            return;
        }
        if let Err(e) = self.sock.send(&self.tx, 0) {
            for &i in sent.iter() {
                errors[i] = Some(FibError::socket(&e));
            }
            sent.clear();
            self.tx.clear();
            return;
        }
        self.tx.clear();
        let mut acked = vec![false; sent.len()];
        let mut left = sent.len();
        while left > 0 {
            if let Err(e) = self.recv() {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                for (k, &i) in sent.iter().enumerate() {
                    if !acked[k] {
                        errors[i] = Some(FibError::NoAck { errno });
                    }
                }
                break;
            }
            let mut off = 0;
            while off < self.rx.len() {
                let Ok(buf) = NetlinkBuffer::new_checked(&self.rx[off..]) else {
                    break;
                };
                off += align4(buf.length() as usize);
                if buf.message_type() != NLMSG_ERROR {
                    continue;
                }
                let k = buf.sequence_number().wrapping_sub(first_seq) as usize;
                if k >= sent.len() || acked[k] {
                    continue; // not for this datagram
                }
                acked[k] = true;
                left -= 1;
                let code = error_code(buf.payload());
                if code != 0 {
                    let i = sent[k];
                    errors[i] = Some(match (&batch[i], -code) {
                        (FibOp::Delete(_), libc::ESRCH) => FibError::NotInstalled,
                        (FibOp::Delete(_), errno) => FibError::Kernel {
                            op: OpKind::Delete,
                            errno,
                        },
                        (FibOp::Replace(_), errno) => FibError::Kernel {
                            op: OpKind::Replace,
                            errno,
                        },
                        (FibOp::Add(_), libc::EEXIST) => FibError::Exists,
                        (FibOp::Add(_), errno) => FibError::Kernel {
                            op: OpKind::Add,
                            errno,
                        },
                    });
                }
            }
        }
        sent.clear();
        // Bounds what waits in the monitor socket to about one datagram's worth.
        self.drain_monitor();
    }
}

impl Fib for NetlinkFib {
    fn apply(&mut self, batch: &[FibOp]) -> Vec<(IpNet, FibError)> {
        let mut errors: Vec<Option<FibError>> = vec![None; batch.len()];

        // Ownership of the prefixes we are about to replace.
        let mut foreign = HashMap::new();
        if self.verify_replaces && batch.iter().any(|op| matches!(op, FibOp::Replace(_))) {
            match self.foreign_index(batch) {
                Ok(index) => foreign = index,
                Err(e) => {
                    for (i, op) in batch.iter().enumerate() {
                        if matches!(op, FibOp::Replace(_)) {
                            errors[i] = Some(e.clone());
                        }
                    }
                }
            }
        }

        // Interface names, refreshed once if one is unknown.
        let wanted: HashSet<&str> = batch
            .iter()
            .filter_map(|op| match op {
                FibOp::Add(FibRoute {
                    kind: RouteKind::Unicast { nexthops },
                    ..
                })
                | FibOp::Replace(FibRoute {
                    kind: RouteKind::Unicast { nexthops },
                    ..
                }) => Some(nexthops),
                _ => None,
            })
            .flatten()
            .filter_map(|nh| nh.dev.as_deref())
            .collect();
        if wanted.iter().any(|d| !self.by_name.contains_key(*d))
            && let Err(e) = self.refresh_links()
        {
            tracing::warn!(error = %e, "cannot read the interface list");
        }

        let mut sent: Vec<usize> = Vec::with_capacity(MAX_PER_SEND);
        let mut first_seq = self.seq;
        for (i, op) in batch.iter().enumerate() {
            if errors[i].is_some() {
                continue;
            }
            let (body, flags) = match op {
                FibOp::Add(route) => match self.encode_replace(route) {
                    Ok(m) => (RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL),
                    Err(e) => {
                        errors[i] = Some(e);
                        continue;
                    }
                },
                FibOp::Replace(route) => {
                    let key = (
                        route.prefix.trunc(),
                        self.cfg.effective_metric(&route.prefix),
                    );
                    if let Some(&protocol) = foreign.get(&key) {
                        errors[i] = Some(FibError::ForeignRoute { protocol });
                        continue;
                    }
                    match self.encode_replace(route) {
                        Ok(m) => (
                            RouteNetlinkMessage::NewRoute(m),
                            NLM_F_CREATE | NLM_F_REPLACE,
                        ),
                        Err(e) => {
                            errors[i] = Some(e);
                            continue;
                        }
                    }
                }
                FibOp::Delete(prefix) => {
                    (RouteNetlinkMessage::DelRoute(self.encode_delete(prefix)), 0)
                }
            };
            if sent.is_empty() {
                first_seq = self.seq;
            }
            let seq = self.next_seq();
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
            header.sequence_number = seq;
            let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(body));
            msg.finalize();
            let start = self.tx.len();
            let len = msg.buffer_len();
            self.tx.resize(start + align4(len), 0);
            msg.serialize(&mut self.tx[start..start + len]);
            sent.push(i);
            if sent.len() >= MAX_PER_SEND || self.tx.len() >= MAX_SEND_BYTES {
                self.flush(first_seq, &mut sent, batch, &mut errors);
            }
        }
        self.flush(first_seq, &mut sent, batch, &mut errors);

        batch
            .iter()
            .zip(errors)
            .filter_map(|(op, e)| e.map(|e| (op.prefix(), e)))
            .collect()
    }

    fn dump_own(&mut self) -> Result<Vec<FibRoute>, FibError> {
        self.refresh_links()?;
        let mut out = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = RouteMessage::default();
            req.header.address_family = fam;
            req.header.table = self.header_table();
            req.header.protocol = RouteProtocol::from(self.cfg.protocol);
            if self.cfg.table > 255 {
                req.attributes.push(RouteAttribute::Table(self.cfg.table));
            }
            for m in self.dump(RouteNetlinkMessage::GetRoute(req))? {
                if let RouteNetlinkMessage::NewRoute(r) = m
                    && let Some(k) = self.parse_route(&r)
                    && k.table == self.cfg.table
                    && k.protocol == self.cfg.protocol
                {
                    out.push(k.route);
                }
            }
        }
        out.sort_by_key(|r| r.prefix);
        Ok(out)
    }

    fn dump_table(&mut self) -> Result<KernelTable, FibError> {
        self.refresh_links()?;
        let mut table = KernelTable::default();
        for k in self.read_table(&[AddressFamily::Inet, AddressFamily::Inet6])? {
            if k.tos != 0 || k.metric != self.cfg.effective_metric(&k.route.prefix) {
                continue;
            }
            if k.protocol == self.cfg.protocol {
                table.own.push(k.route);
            } else {
                table.foreign.push((k.route.prefix, k.protocol));
            }
        }
        table.own.sort_by_key(|r| r.prefix);
        Ok(table)
    }

    fn poll_events(&mut self) -> Result<Vec<KernelEvent>, FibError> {
        self.drain_monitor();
        if std::mem::take(&mut self.monitor_overrun) {
            self.monitor_raw.clear();
            return Err(FibError::Socket {
                errno: libc::ENOBUFS,
            });
        }
        let raw = std::mem::take(&mut self.monitor_raw);
        let mut out = Vec::new();
        let mut refreshed = false;
        let mut off = 0;
        while off < raw.len() {
            let Ok(b) = NetlinkBuffer::new_checked(&raw[off..]) else {
                break;
            };
            let len = b.length() as usize;
            let kind = b.message_type();
            let msg = &raw[off..off + len];
            off += align4(len);
            if kind != RTM_NEWROUTE && kind != RTM_DELROUTE {
                continue;
            }
            let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg) else {
                continue;
            };
            let r = match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r))
                | NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => r,
                _ => continue,
            };
            // A next hop on an interface created since the last read: learn its name first.
            if !refreshed && self.unknown_interface(&r) {
                refreshed = true;
                let _ = self.refresh_links();
            }
            let Some(k) = self.parse_route(&r) else {
                continue;
            };
            if k.table != self.cfg.table
                || k.tos != 0
                || k.metric != self.cfg.effective_metric(&k.route.prefix)
            {
                continue;
            }
            out.push(if kind == RTM_NEWROUTE {
                KernelEvent::New {
                    route: k.route,
                    protocol: k.protocol,
                }
            } else {
                KernelEvent::Del {
                    prefix: k.route.prefix,
                    protocol: k.protocol,
                }
            });
        }
        Ok(out)
    }
}

impl NetlinkFib {
    fn unknown_interface(&self, r: &RouteMessage) -> bool {
        r.attributes.iter().any(|a| match a {
            RouteAttribute::Oif(i) => *i != 0 && !self.by_index.contains_key(i),
            RouteAttribute::MultiPath(hops) => hops
                .iter()
                .any(|h| h.interface_index != 0 && !self.by_index.contains_key(&h.interface_index)),
            _ => false,
        })
    }
}

fn set_int_opt(sock: &Socket, opt: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: a valid socket fd and an int that lives across the call, with its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// The `error` field of an `NLMSG_ERROR` payload (0 = acknowledgement, else `-errno`).
fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(-libc::EBADMSG)
}

fn family_of(prefix: &IpNet) -> AddressFamily {
    match prefix {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

/// `RTA_GATEWAY` for a gateway of the prefix's family, `RTA_VIA` for the other one.
fn gateway_attribute(prefix: &IpNet, gateway: IpAddr) -> RouteAttribute {
    match (prefix, gateway) {
        (IpNet::V4(_), IpAddr::V4(_)) | (IpNet::V6(_), IpAddr::V6(_)) => {
            RouteAttribute::Gateway(RouteAddress::from(gateway))
        }
        (_, IpAddr::V4(a)) => RouteAttribute::Via(RouteVia::Inet(a)),
        (_, IpAddr::V6(a)) => RouteAttribute::Via(RouteVia::Inet6(a)),
    }
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn via_addr(v: &RouteVia) -> Option<IpAddr> {
    match v {
        RouteVia::Inet(a) => Some(IpAddr::V4(*a)),
        RouteVia::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn set_recv_timeout(sock: &Socket, timeout: Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket fd and a timeval that lives across the call, with its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_reads_the_first_word() {
        assert_eq!(error_code(&(-3i32).to_ne_bytes()), -3);
        assert_eq!(error_code(&0i32.to_ne_bytes()), 0);
        assert_eq!(error_code(&[1, 2]), -libc::EBADMSG);
    }

    #[test]
    fn gateway_of_the_other_family_is_via() {
        let v4: IpNet = "10.244.0.0/26".parse().unwrap();
        let gw6: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(matches!(
            gateway_attribute(&v4, gw6),
            RouteAttribute::Via(RouteVia::Inet6(_))
        ));
        let gw4: IpAddr = "198.18.0.2".parse().unwrap();
        assert!(matches!(
            gateway_attribute(&v4, gw4),
            RouteAttribute::Gateway(RouteAddress::Inet(_))
        ));
    }
}
