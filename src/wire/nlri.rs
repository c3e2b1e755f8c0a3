//! NLRI prefix encoding: the `<length, prefix>` tuples of the Withdrawn Routes and NLRI fields
//! (RFC 4271 §4.3) and of MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760 §5), optionally preceded by
//! an ADD-PATH Path Identifier (RFC 7911 §3).
//!
//! ```text
//! +--------------------------------+
//! | Path Identifier (4 octets)     |   only when ADD-PATH is negotiated for the family
//! +--------------------------------+
//! | Length (1 octet)               |   prefix length in bits: ≤ 32 (IPv4), ≤ 128 (IPv6)
//! +--------------------------------+
//! | Prefix (variable)              |   ceil(Length / 8) octets; trailing bits are ignored
//! +--------------------------------+
//! ```
//!
//! Invariants: decoding is a single forward pass without recursion or indexing that can panic;
//! a prefix longer than the family allows, or one that overruns its field, is a syntax error
//! (RFC 7606 §5.3) that the caller maps to a session reset. Host bits beyond the prefix length
//! are cleared on decode, so decoded prefixes are always canonical.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::types::{AFI_IPV4, AFI_IPV6, Nlri};

/// An NLRI field is syntactically incorrect (RFC 7606 §5.3); the caller knows which field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NlriSyntax;

/// Reads a 4-octet Path Identifier at `buf[i..]`.
#[inline(always)]
fn path_id_at(buf: &[u8], i: usize) -> Result<u32, NlriSyntax> {
    match buf.get(i..i + 4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(NlriSyntax),
    }
}

/// Decodes a field of IPv4 prefixes, appending to `out`.
pub(crate) fn decode_v4(buf: &[u8], add_path: bool, out: &mut Vec<Nlri>) -> Result<(), NlriSyntax> {
    // A /24 takes 4 octets, the common case; this avoids most reallocations.
    out.reserve(buf.len() / if add_path { 8 } else { 4 } + 1);
    let mut i = 0usize;
    while i < buf.len() {
        let path_id = if add_path {
            let id = path_id_at(buf, i)?;
            i += 4;
            Some(id)
        } else {
            None
        };
        let len = *buf.get(i).ok_or(NlriSyntax)?;
        if len > 32 {
            return Err(NlriSyntax);
        }
        let nbytes = usize::from(len).div_ceil(8);
        let bits = match buf.get(i + 1..i + 1 + nbytes).ok_or(NlriSyntax)? {
            [] => 0,
            &[a] => u32::from_be_bytes([a, 0, 0, 0]),
            &[a, b] => u32::from_be_bytes([a, b, 0, 0]),
            &[a, b, c] => u32::from_be_bytes([a, b, c, 0]),
            &[a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
            _ => return Err(NlriSyntax),
        };
        i += 1 + nbytes;
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        let net = Ipv4Net::new(Ipv4Addr::from(bits & mask), len).map_err(|_| NlriSyntax)?;
        out.push(Nlri {
            prefix: IpNet::V4(net),
            path_id,
        });
    }
    Ok(())
}

/// Decodes a field of IPv6 prefixes, appending to `out`.
pub(crate) fn decode_v6(buf: &[u8], add_path: bool, out: &mut Vec<Nlri>) -> Result<(), NlriSyntax> {
    out.reserve(buf.len() / if add_path { 12 } else { 8 } + 1);
    let mut i = 0usize;
    while i < buf.len() {
        let path_id = if add_path {
            let id = path_id_at(buf, i)?;
            i += 4;
            Some(id)
        } else {
            None
        };
        let len = *buf.get(i).ok_or(NlriSyntax)?;
        if len > 128 {
            return Err(NlriSyntax);
        }
        let nbytes = usize::from(len).div_ceil(8);
        let src = buf.get(i + 1..i + 1 + nbytes).ok_or(NlriSyntax)?;
        let mut octets = [0u8; 16];
        if let Some(dst) = octets.get_mut(..nbytes) {
            dst.copy_from_slice(src);
        }
        i += 1 + nbytes;
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        let addr = Ipv6Addr::from(u128::from_be_bytes(octets) & mask);
        let net = Ipv6Net::new(addr, len).map_err(|_| NlriSyntax)?;
        out.push(Nlri {
            prefix: IpNet::V6(net),
            path_id,
        });
    }
    Ok(())
}

/// Decodes a prefix field of the given AFI (only 1 and 2 are meaningful here).
pub(crate) fn decode_afi(
    afi: u16,
    buf: &[u8],
    add_path: bool,
    out: &mut Vec<Nlri>,
) -> Result<(), NlriSyntax> {
    match afi {
        AFI_IPV4 => decode_v4(buf, add_path, out),
        AFI_IPV6 => decode_v6(buf, add_path, out),
        _ => Err(NlriSyntax),
    }
}

/// Octets one NLRI takes on the wire.
#[inline]
pub(crate) fn encoded_len(n: &Nlri, add_path: bool) -> usize {
    let plen = usize::from(n.prefix.prefix_len());
    1 + plen.div_ceil(8) + if add_path { 4 } else { 0 }
}

/// True when the prefix belongs to `afi`.
#[inline]
pub(crate) fn matches_afi(n: &Nlri, afi: u16) -> bool {
    matches!(
        (n.prefix, afi),
        (IpNet::V4(_), AFI_IPV4) | (IpNet::V6(_), AFI_IPV6)
    )
}

/// Writes one NLRI. Without a path id on an ADD-PATH family, identifier 0 is written.
#[inline]
pub(crate) fn put(n: &Nlri, add_path: bool, out: &mut BytesMut) {
    if add_path {
        out.put_u32(n.path_id.unwrap_or(0));
    }
    let len = n.prefix.prefix_len();
    let nbytes = usize::from(len).div_ceil(8);
    out.put_u8(len);
    match n.prefix {
        IpNet::V4(p) => {
            let o = p.network().octets();
            out.put_slice(o.get(..nbytes).unwrap_or(&o));
        }
        IpNet::V6(p) => {
            let o = p.network().octets();
            out.put_slice(o.get(..nbytes).unwrap_or(&o));
        }
    }
}
