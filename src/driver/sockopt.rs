//! Linux socket options that protect BGP's TCP connections: TCP MD5 signatures (RFC 2385),
//! GTSM (RFC 5082), and the classic-BPF filter that enforces GTSM per source on the listener.
//!
//! None of these needs a capability (bgp-robustness.md §6): `CAP_NET_ADMIN` is only for the
//! FIB, `CAP_NET_BIND_SERVICE` only for port 179.
//!
//! # TCP MD5
//! `setsockopt(IPPROTO_TCP, TCP_MD5SIG, struct tcp_md5sig)` with the peer's address and key
//! (`include/uapi/linux/tcp.h`; the `libc` crate has the constant but not the struct). On a
//! listening socket there is one key per peer address, set before a SYN can arrive; accepted
//! sockets inherit the matching key. An outgoing socket gets the key before `connect`. A key
//! length of 0 deletes the key. An IPv6 socket takes IPv4 peers as v4-mapped addresses (the
//! kernel files them as IPv4 keys). Segments with a missing or wrong signature are dropped by
//! the kernel without any answer (`nstat` `TcpExtTCPMD5NotFound`/`TCPMD5Unexpected`/
//! `TCPMD5Failure`), so a mismatch shows as a session that never leaves Connect/Active.
//!
//! # GTSM
//! Outgoing and accepted sockets of a GTSM peer send with TTL / hop limit 255 and set
//! `IP_MINTTL` (`IPV6_MINHOPCOUNT`) to 256 − hops; IPv6 sockets set both families' options, as
//! they carry v4-mapped connections too.
//!
//! A listening socket serves every peer, and Linux checks the *listener's* `IP_MINTTL` for the
//! handshake; the accepted socket inherits it. Setting `IP_MINTTL` only on the accepted socket
//! (what BIRD and FRR do) leaves a window: segments that arrive between the handshake and our
//! `setsockopt` — typically the peer's OPEN, sent right after the handshake — are queued
//! whatever their TTL. So the listener gets a socket filter instead ([`gtsm_filter`]): for each
//! GTSM peer's source address, packets below its minimum TTL are dropped, from the first SYN
//! on; other sources pass. Linux runs a TCP socket's filter after the minimum-TTL check for the
//! listener and for request sockets, and accepted sockets inherit it, so the whole connection
//! is covered. The listener also sends with TTL 255 while any peer uses GTSM (the SYN-ACK is
//! sent with the listener's TTL), and accepted sockets of other peers go back to the default.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use socket2::{SockFilter, SockRef};

use crate::config::{MD5_MAX_KEY_LEN, Md5Key, wipe};

/// `struct tcp_md5sig` (`include/uapi/linux/tcp.h`).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// Which address families a socket carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SockFamily {
    V4,
    /// IPv6, which may also carry IPv4 (v4-mapped) connections.
    V6,
}

impl SockFamily {
    pub(super) fn of(ip: IpAddr) -> SockFamily {
        if ip.is_ipv4() {
            SockFamily::V4
        } else {
            SockFamily::V6
        }
    }
}

fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket for the duration of the call; the option value is a
    // c_int on the stack and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets (`Some`) or deletes (`None`) the TCP MD5 key for `peer` on a socket of `family`.
/// Deleting a key that is not there is not an error. An IPv6 peer on an IPv4 socket is a
/// caller error (`EAFNOSUPPORT`).
pub(super) fn set_md5(
    fd: BorrowedFd<'_>,
    family: SockFamily,
    peer: IpAddr,
    key: Option<&Md5Key>,
) -> io::Result<()> {
    // SAFETY: all-zero bytes are a valid `tcp_md5sig` (plain integers and byte arrays).
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match (family, peer) {
        (SockFamily::V4, IpAddr::V4(a)) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut sig.addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(a).to_be(),
            };
        }
        (SockFamily::V6, ip) => {
            let v6: Ipv6Addr = match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut sig.addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.octets(),
            };
        }
        (SockFamily::V4, IpAddr::V6(_)) => {
            return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
        }
    }
    if let Some(k) = key {
        let b = k.as_bytes();
        // Md5Key guarantees 1..=MD5_MAX_KEY_LEN bytes.
        let n = b.len().min(MD5_MAX_KEY_LEN);
        sig.key[..n].copy_from_slice(&b[..n]);
        sig.keylen = n as u16;
    }
    // SAFETY: `fd` is an open socket; `sig` is a properly initialised tcp_md5sig and its exact
    // size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    let result = if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    wipe(&mut sig.key);
    match result {
        // Deleting a key the socket does not have.
        Err(e) if key.is_none() && e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// The TTL (hop limit) sent: `Some(255)` for GTSM, `None` for the system default.
pub(super) fn set_send_ttl(
    fd: BorrowedFd<'_>,
    family: SockFamily,
    ttl: Option<u8>,
) -> io::Result<()> {
    let v = ttl.map_or(-1, libc::c_int::from);
    set_int(fd, libc::IPPROTO_IP, libc::IP_TTL, v)?;
    if family == SockFamily::V6 {
        set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, v)?;
    }
    Ok(())
}

/// The lowest TTL (hop limit) accepted on a connected socket; 0 accepts any.
pub(super) fn set_min_ttl(fd: BorrowedFd<'_>, family: SockFamily, min: u8) -> io::Result<()> {
    set_int(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MINTTL,
        libc::c_int::from(min),
    )?;
    if family == SockFamily::V6 {
        set_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MINHOPCOUNT,
            libc::c_int::from(min),
        )?;
    }
    Ok(())
}

/// GTSM for one connection to a peer at most `hops` away: send with 255, accept ≥ 256 − hops.
pub(super) fn set_gtsm(fd: BorrowedFd<'_>, family: SockFamily, hops: u8) -> io::Result<()> {
    set_send_ttl(fd, family, Some(255))?;
    set_min_ttl(fd, family, min_ttl(hops))
}

/// The lowest TTL a packet from a peer `hops` away arrives with when sent with 255 (RFC 5082
/// §3: 255 − (hops − 1)).
pub(super) fn min_ttl(hops: u8) -> u8 {
    // The configuration guarantees hops ≥ 1 (NonZeroU8); 256 − hops then fits a u8.
    (256 - u16::from(hops.max(1))) as u8
}

// Classic BPF (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const RSH_K: u16 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// Loads relative to the network header (`SKF_NET_OFF`), whatever the socket's layer.
const NET: i32 = -0x10_0000;
/// Keep the whole packet.
const ACCEPT: u32 = u32::MAX;
const DROP: u32 = 0;
/// `BPF_MAXINSNS`.
const MAX_INSNS: usize = 4096;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter::new(code, jt, jf, k)
}

fn net(off: i32) -> u32 {
    (NET + off) as u32
}

/// A socket filter that drops packets from each `(source, minimum TTL)` below that TTL and
/// passes everything else. IPv4 sources are matched in IPv4 packets (also on an IPv6 socket),
/// IPv6 sources in IPv6 packets. `None` when the program would exceed the kernel's limit
/// (several hundred GTSM peers on one listener).
pub(super) fn gtsm_filter(rules: &[(IpAddr, u8)]) -> Option<Vec<SockFilter>> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for &(ip, min) in rules {
        match ip {
            IpAddr::V4(a) => {
                // ld [src]; jeq addr ? next : skip block; ldb [ttl]; jge min ? accept : drop
                v4.extend([
                    ins(LD_W_ABS, 0, 0, net(12)),
                    ins(JEQ_K, 0, 4, u32::from(a)),
                    ins(LD_B_ABS, 0, 0, net(8)),
                    ins(JGE_K, 0, 1, u32::from(min)),
                    ins(RET_K, 0, 0, ACCEPT),
                    ins(RET_K, 0, 0, DROP),
                ]);
            }
            IpAddr::V6(a) => {
                let o = a.octets();
                let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                v6.extend([
                    ins(LD_W_ABS, 0, 0, net(8)),
                    ins(JEQ_K, 0, 10, w(0)),
                    ins(LD_W_ABS, 0, 0, net(12)),
                    ins(JEQ_K, 0, 8, w(4)),
                    ins(LD_W_ABS, 0, 0, net(16)),
                    ins(JEQ_K, 0, 6, w(8)),
                    ins(LD_W_ABS, 0, 0, net(20)),
                    ins(JEQ_K, 0, 4, w(12)),
                    ins(LD_B_ABS, 0, 0, net(7)),
                    ins(JGE_K, 0, 1, u32::from(min)),
                    ins(RET_K, 0, 0, ACCEPT),
                    ins(RET_K, 0, 0, DROP),
                ]);
            }
        }
    }
    // ldb [version]; rsh 4; jeq 6 ? (ja v6) : v4 section
    let mut prog = vec![
        ins(LD_B_ABS, 0, 0, net(0)),
        ins(RSH_K, 0, 0, 4),
        ins(JEQ_K, 0, 1, 6),
        // Skips the IPv4 section and its final accept.
        ins(JA, 0, 0, (v4.len() + 1) as u32),
    ];
    prog.extend(v4);
    prog.push(ins(RET_K, 0, 0, ACCEPT));
    prog.extend(v6);
    prog.push(ins(RET_K, 0, 0, ACCEPT));
    (prog.len() <= MAX_INSNS).then_some(prog)
}

/// Replaces the socket's filter with `prog`, or removes it (`None`).
pub(super) fn set_filter(sock: &impl AsFd, prog: Option<&[SockFilter]>) -> io::Result<()> {
    let s = SockRef::from(sock);
    match prog {
        Some(p) => s.attach_filter(p),
        None => match s.detach_filter() {
            // No filter attached.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_per_rfc_5082() {
        assert_eq!(min_ttl(1), 255);
        assert_eq!(min_ttl(2), 254);
        assert_eq!(min_ttl(255), 1);
    }

    #[test]
    fn md5_struct_matches_the_kernel_layout() {
        // sockaddr_storage (128) + flags, prefixlen, keylen (4) + ifindex (4) + key (80).
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    /// Runs a classic-BPF program over a packet (only the instructions `gtsm_filter` emits),
    /// with `NET`-relative loads reading `pkt` from its start.
    fn run(prog: &[SockFilter], pkt: &[u8]) -> u32 {
        // SockFilter's fields are private: read them back through its C layout.
        let raw: Vec<libc::sock_filter> = prog
            .iter()
            // SAFETY: socket2's SockFilter is #[repr(transparent)] over libc::sock_filter.
            .map(|f| unsafe { std::mem::transmute_copy::<SockFilter, libc::sock_filter>(f) })
            .collect();
        let (mut a, mut pc) = (0u32, 0usize);
        let load = |k: u32, n: usize| -> u32 {
            let off = (k as i32 - NET) as usize;
            pkt[off..off + n]
                .iter()
                .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
        };
        loop {
            let i = raw[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => a = load(i.k, 4),
                LD_B_ABS => a = load(i.k, 1),
                RSH_K => a >>= i.k,
                JA => pc += i.k as usize,
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn v4_packet(src: [u8; 4], ttl: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[8] = ttl;
        p[12..16].copy_from_slice(&src);
        p
    }

    fn v6_packet(src: Ipv6Addr, hops: u8) -> Vec<u8> {
        let mut p = vec![0u8; 60];
        p[0] = 0x60;
        p[7] = hops;
        p[8..24].copy_from_slice(&src.octets());
        p
    }

    #[test]
    fn gtsm_filter_drops_only_low_ttl_from_protected_sources() {
        let near: IpAddr = "198.18.0.2".parse().unwrap();
        let far: IpAddr = "198.18.1.2".parse().unwrap();
        let v6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let prog = gtsm_filter(&[(near, 255), (far, 254), (IpAddr::V6(v6), 255)]).unwrap();
        assert_eq!(run(&prog, &v4_packet([198, 18, 0, 2], 255)), ACCEPT);
        assert_eq!(run(&prog, &v4_packet([198, 18, 0, 2], 254)), DROP);
        assert_eq!(run(&prog, &v4_packet([198, 18, 1, 2], 254)), ACCEPT);
        assert_eq!(run(&prog, &v4_packet([198, 18, 1, 2], 64)), DROP);
        // Other sources pass whatever their TTL.
        assert_eq!(run(&prog, &v4_packet([198, 18, 0, 9], 1)), ACCEPT);
        assert_eq!(run(&prog, &v6_packet(v6, 255)), ACCEPT);
        assert_eq!(run(&prog, &v6_packet(v6, 254)), DROP);
        assert_eq!(
            run(&prog, &v6_packet("2001:db8::3".parse().unwrap(), 1)),
            ACCEPT
        );
        // An IPv6 packet whose source shares the first words still needs all four.
        assert_eq!(
            run(&prog, &v6_packet("2001:db8::1:2".parse().unwrap(), 1)),
            ACCEPT
        );
        // Empty rules: everything passes.
        let empty = gtsm_filter(&[]).unwrap();
        assert_eq!(run(&empty, &v4_packet([198, 18, 0, 2], 1)), ACCEPT);
        assert_eq!(run(&empty, &v6_packet(v6, 1)), ACCEPT);
        // Too many rules for one program.
        let many: Vec<(IpAddr, u8)> = (0..400u32)
            .map(|i| (IpAddr::V6(Ipv6Addr::from(i as u128 + 1)), 255))
            .collect();
        assert!(gtsm_filter(&many).is_none());
    }
}
