//! Helpers shared by the `tests/wire_*.rs` integration tests (included with `#[path]`).
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
use podbgp::wire::*;

/// Decodes a hex string (whitespace ignored). Test input only.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A BGP message with the given type and body (header computed).
pub fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

/// An UPDATE from its three parts (lengths computed).
pub fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    msg(2, &b)
}

/// One path attribute (Extended Length chosen automatically unless already in `flags`).
pub fn attr(flags: u8, ty: u8, value: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    if value.len() > 255 || flags & 0x10 != 0 {
        a.push(flags | 0x10);
        a.push(ty);
        a.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        a.push(flags);
        a.push(ty);
        a.push(value.len() as u8);
    }
    a.extend_from_slice(value);
    a
}

pub fn cx4() -> SessionCodec {
    SessionCodec {
        four_octet_as: true,
        ..SessionCodec::default()
    }
}

pub fn cx2() -> SessionCodec {
    SessionCodec::default()
}

pub fn ibgp4() -> SessionCodec {
    SessionCodec {
        four_octet_as: true,
        ibgp: true,
        ..SessionCodec::default()
    }
}

pub fn v4(s: &str) -> Nlri {
    Nlri {
        prefix: s.parse().unwrap(),
        path_id: None,
    }
}

pub fn v4id(s: &str, id: u32) -> Nlri {
    Nlri {
        prefix: s.parse().unwrap(),
        path_id: Some(id),
    }
}

pub fn v6(s: &str) -> Nlri {
    v4(s)
}

pub fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

pub fn seq(asns: &[u32]) -> AsPath {
    AsPath {
        segments: vec![AsSegment {
            kind: SegmentType::Sequence,
            asns: asns.to_vec(),
        }],
    }
}

pub fn encode(m: &Message, cx: &SessionCodec) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_message(m, cx, &mut out).expect("encode");
    out.to_vec()
}

pub fn decode_update_msg(bytes: &[u8], cx: &SessionCodec) -> Result<Update, DecodeError> {
    match decode_message(bytes, cx)? {
        Message::Update(u) => Ok(u),
        other => panic!("not an UPDATE: {other:?}"),
    }
}
