//! Framing and decoding of BGP messages.
//!
//! RFCs: 4271 §4 and §6.1–§6.2 (header, OPEN, NOTIFICATION, KEEPALIVE), 8654 (extended message
//! length), 5492 (capabilities), 9072 (extended optional parameters length), 4760 / 2918 / 7313
//! / 4724 / 8538 / 6793 / 7911 (capabilities and ROUTE-REFRESH), 6286 and 7607 (OPEN checks).
//! UPDATE bodies are decoded in `attrs.rs`.
//!
//! ```text
//! Message header (RFC 4271 §4.1):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                           Marker (all ones)                   |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Invariants: [`frame_len`] never consumes a byte it has not validated, so the stream cannot
//! desynchronise; no function here panics or allocates in proportion to anything but the input.
//! What the codec does *not* check (session's job): the peer AS against configuration, AS_TRANS
//! consistency, our own BGP Identifier, required capabilities, negotiated families.

use std::net::Ipv4Addr;

use bytes::Bytes;

use super::error::{DecodeError, OpenMalformed};
use super::types::{
    AddPathMode, Capability, Family, GrFamily, Message, Notification, Open, RouteRefresh,
    SessionCodec,
};
use super::{HEADER_LEN, MAX_MESSAGE_LEN};

/// Where decoded `Bytes` values come from: copied out of a borrowed slice, or sliced (zero-copy)
/// out of a shared frame.
#[derive(Clone, Copy)]
pub(crate) struct Src<'a>(Option<&'a Bytes>);

impl Src<'_> {
    pub(crate) const COPY: Src<'static> = Src(None);

    /// `s` as `Bytes`: a slice of the owning frame when `s` lies inside it, else a copy.
    pub(crate) fn bytes(&self, s: &[u8]) -> Bytes {
        if let Some(owner) = self.0 {
            let base = owner.as_ptr() as usize;
            let p = s.as_ptr() as usize;
            if !s.is_empty() && p >= base && p + s.len() <= base + owner.len() {
                return owner.slice_ref(s);
            }
        }
        Bytes::copy_from_slice(s)
    }
}

/// Message type codes (RFC 4271 §4.1, RFC 2918 §3).
pub mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Validates a header's Length and Type (RFC 4271 §6.1, RFC 8654 §4): length within
/// `19..=max_len`, then a known type, then the per-type bounds (OPEN ≥ 29, UPDATE ≥ 23,
/// NOTIFICATION ≥ 21, KEEPALIVE = 19, ROUTE-REFRESH ≥ 23; OPEN and KEEPALIVE never above 4096).
fn check_header(length: u16, ty: u8, max_len: usize) -> Result<(), DecodeError> {
    let l = usize::from(length);
    let bad_len = DecodeError::BadMessageLength { length };
    if l < HEADER_LEN || l > max_len {
        return Err(bad_len);
    }
    let (min, max) = match ty {
        msg_type::OPEN => (29, MAX_MESSAGE_LEN),
        msg_type::UPDATE => (23, usize::MAX),
        msg_type::NOTIFICATION => (21, usize::MAX),
        msg_type::KEEPALIVE => (19, 19),
        msg_type::ROUTE_REFRESH => (23, usize::MAX),
        _ => return Err(DecodeError::BadMessageType { msg_type: ty }),
    };
    if l < min || l > max {
        return Err(bad_len);
    }
    Ok(())
}

/// Framing check on a receive buffer.
///
/// * `Ok(None)`: more bytes are needed (nothing invalid seen so far).
/// * `Ok(Some(n))`: a complete message of `n` octets is at `buf[..n]`.
/// * `Err`: a header error (marker `1/1`, length `1/2`, type `1/3`); the connection must be
///   closed after sending [`DecodeError::notification`].
///
/// `max_len` is `SessionCodec::max_message_len()`; OPEN and KEEPALIVE are capped at 4096
/// regardless (RFC 8654 §4). The marker is checked as soon as its first bytes arrive.
pub fn frame_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, DecodeError> {
    let marker = buf.get(..16).unwrap_or(buf);
    if marker.iter().any(|&b| b != 0xff) {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let (length, ty) = match buf.get(16..19) {
        Some(&[a, b, ty]) => (u16::from_be_bytes([a, b]), ty),
        _ => return Ok(None),
    };
    check_header(length, ty, max_len)?;
    let n = usize::from(length);
    Ok(if buf.len() >= n { Some(n) } else { None })
}

/// Decodes one whole framed message (header included, `frame.len()` equal to its Length).
pub fn decode_message(frame: &[u8], cx: &SessionCodec) -> Result<Message, DecodeError> {
    decode_with(frame, cx, Src::COPY)
}

/// Like [`decode_message`], but `Bytes` values inside the result (unknown attributes and
/// capabilities, NOTIFICATION data) share `frame`'s buffer instead of being copied.
pub fn decode_message_bytes(frame: &Bytes, cx: &SessionCodec) -> Result<Message, DecodeError> {
    decode_with(frame, cx, Src(Some(frame)))
}

fn decode_with(frame: &[u8], cx: &SessionCodec, src: Src<'_>) -> Result<Message, DecodeError> {
    let n = frame_len(frame, cx.max_message_len())?;
    if n != Some(frame.len()) {
        let length = match frame.get(16..18) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => u16::try_from(frame.len()).unwrap_or(u16::MAX),
        };
        return Err(DecodeError::BadMessageLength { length });
    }
    let ty = frame.get(18).copied().unwrap_or(0);
    let body = frame.get(HEADER_LEN..).unwrap_or(&[]);
    match ty {
        msg_type::OPEN => decode_open_src(body, src).map(Message::Open),
        msg_type::UPDATE => super::attrs::decode_update_src(body, cx, src).map(Message::Update),
        msg_type::NOTIFICATION => decode_notification_src(body, src).map(Message::Notification),
        msg_type::KEEPALIVE => Ok(Message::Keepalive),
        msg_type::ROUTE_REFRESH => match body {
            // RFC 2918 §3 / RFC 7313 §3: AFI (2), Message Subtype (1), SAFI (1).
            &[a, b, subtype, safi] => Ok(Message::RouteRefresh(RouteRefresh {
                family: Family {
                    afi: u16::from_be_bytes([a, b]),
                    safi,
                },
                subtype,
            })),
            // RFC 7313 §5: wrong length → 7/1 carrying the whole message (short ones were
            // already rejected by the header check as 1/2).
            _ => Err(DecodeError::RouteRefreshLength {
                message: src.bytes(frame),
            }),
        },
        _ => Err(DecodeError::BadMessageType { msg_type: ty }),
    }
}

/// Decodes a NOTIFICATION body (RFC 4271 §4.5).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Error code    | Error subcode |   Data (variable)             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// RFC 4271 §6.4: a malformed NOTIFICATION cannot be reported; any code/subcode is accepted.
fn decode_notification_src(body: &[u8], src: Src<'_>) -> Result<Notification, DecodeError> {
    match body {
        &[code, subcode, ref data @ ..] => Ok(Notification {
            code,
            subcode,
            data: src.bytes(data),
        }),
        _ => Err(DecodeError::BadMessageLength {
            length: u16::try_from(body.len() + HEADER_LEN).unwrap_or(u16::MAX),
        }),
    }
}

/// Decodes an OPEN body (everything after the 19-octet header); see [`Open`] for the layout.
///
/// Checks, in order: version (2/1), My AS 0 (2/2, RFC 7607), hold time 1–2 (2/6), BGP
/// Identifier 0 (2/3, RFC 6286), then optional parameters: malformed (2/0), non-capability
/// parameter (2/4), capability contents (2/0, or 2/2 for a 4-octet AS of 0).
pub fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    decode_open_src(body, Src::COPY)
}

fn decode_open_src(body: &[u8], src: Src<'_>) -> Result<Open, DecodeError> {
    let &[
        version,
        a0,
        a1,
        h0,
        h1,
        i0,
        i1,
        i2,
        i3,
        opt_len,
        ref params @ ..,
    ] = body
    else {
        return Err(DecodeError::MalformedOpen(OpenMalformed::Truncated));
    };
    if version != 4 {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    let my_as = u16::from_be_bytes([a0, a1]);
    if my_as == 0 {
        return Err(DecodeError::BadPeerAs { asn: 0 });
    }
    let hold_time = u16::from_be_bytes([h0, h1]);
    if hold_time == 1 || hold_time == 2 {
        return Err(DecodeError::UnacceptableHoldTime { hold_time });
    }
    let bgp_id = Ipv4Addr::new(i0, i1, i2, i3);
    if bgp_id.is_unspecified() {
        return Err(DecodeError::BadBgpIdentifier { id: bgp_id });
    }
    let capabilities = decode_opt_params(opt_len, params, src)?;
    Ok(Open {
        version,
        my_as,
        hold_time,
        bgp_id,
        capabilities,
    })
}

/// Optional parameters (RFC 4271 §4.2), classic or RFC 9072 extended form:
///
/// ```text
/// classic:  Opt Parm Len (1) | { Param Type (1) | Param Length (1) | Value } ...
/// RFC 9072: Non-Ext OP Len (1) = 255 | Non-Ext OP Type (1) = 255 |
///           Extended Opt. Parm. Length (2) | { Param Type (1) | Param Length (2) | Value } ...
/// ```
fn decode_opt_params(
    opt_len: u8,
    params: &[u8],
    src: Src<'_>,
) -> Result<Vec<Capability>, DecodeError> {
    let malformed = |m| DecodeError::MalformedOpen(m);
    let (list, wide) = match params {
        &[255, l0, l1, ref list @ ..] if opt_len != 0 => {
            if usize::from(u16::from_be_bytes([l0, l1])) != list.len() {
                return Err(malformed(OpenMalformed::OptParamLength));
            }
            (list, true)
        }
        _ => {
            if usize::from(opt_len) != params.len() {
                return Err(malformed(OpenMalformed::OptParamLength));
            }
            (params, false)
        }
    };
    let mut caps = Vec::new();
    let mut i = 0usize;
    while i < list.len() {
        let (ptype, plen, hdr) = match (wide, list.get(i..)) {
            (false, Some(&[ty, l, ..])) => (ty, usize::from(l), 2),
            (true, Some(&[ty, l0, l1, ..])) => (ty, usize::from(u16::from_be_bytes([l0, l1])), 3),
            _ => return Err(malformed(OpenMalformed::ParamOverrun)),
        };
        let value = list
            .get(i + hdr..i + hdr + plen)
            .ok_or(malformed(OpenMalformed::ParamOverrun))?;
        i += hdr + plen;
        // RFC 5492 §4: type 2 = Capabilities; anything else (incl. deprecated type 1) → 2/4.
        if ptype != 2 {
            return Err(DecodeError::UnsupportedOptionalParameter { param_type: ptype });
        }
        decode_capabilities(value, src, &mut caps)?;
    }
    Ok(caps)
}

/// Capability TLVs inside one Capabilities parameter (RFC 5492 §4):
/// `Capability Code (1) | Capability Length (1) | Capability Value (variable)`.
fn decode_capabilities(
    mut v: &[u8],
    src: Src<'_>,
    out: &mut Vec<Capability>,
) -> Result<(), DecodeError> {
    while let &[code, len, ref rest @ ..] = v {
        let len = usize::from(len);
        let (Some(value), Some(next)) = (rest.get(..len), rest.get(len..)) else {
            return Err(DecodeError::MalformedOpen(OpenMalformed::CapabilityOverrun));
        };
        v = next;
        out.push(decode_capability(code, value, src)?);
    }
    if v.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::MalformedOpen(OpenMalformed::CapabilityOverrun))
    }
}

fn decode_capability(code: u8, v: &[u8], src: Src<'_>) -> Result<Capability, DecodeError> {
    let bad_len = DecodeError::MalformedOpen(OpenMalformed::CapabilityLength { code });
    let cap = match code {
        // RFC 4760 §8: AFI (2) | Reserved (1) | SAFI (1).
        1 => match v {
            &[a, b, _, safi] => Capability::Multiprotocol(Family {
                afi: u16::from_be_bytes([a, b]),
                safi,
            }),
            _ => return Err(bad_len),
        },
        // RFC 2918 §2, RFC 8654 §3, RFC 7313 §4: no value.
        2 | 6 | 70 if !v.is_empty() => return Err(bad_len),
        2 => Capability::RouteRefresh,
        6 => Capability::ExtendedMessage,
        70 => Capability::EnhancedRouteRefresh,
        // RFC 4724 §3 (N bit: RFC 8538 §2):
        // Restart Flags (4 bits: R N . .) | Restart Time (12 bits) | { AFI (2) | SAFI (1) | Flags (1: F . . . . . . .) } ...
        64 => {
            let &[f0, f1, ref tuples @ ..] = v else {
                return Err(bad_len);
            };
            if tuples.len() % 4 != 0 {
                return Err(bad_len);
            }
            let families = tuples
                .chunks_exact(4)
                .filter_map(|c| match c {
                    &[a, b, safi, fl] => Some(GrFamily {
                        family: Family {
                            afi: u16::from_be_bytes([a, b]),
                            safi,
                        },
                        forwarding_preserved: fl & 0x80 != 0,
                    }),
                    _ => None,
                })
                .collect();
            Capability::GracefulRestart {
                restart_state: f0 & 0x80 != 0,
                notification: f0 & 0x40 != 0,
                restart_time: u16::from_be_bytes([f0 & 0x0f, f1]),
                families,
            }
        }
        // RFC 6793 §3; RFC 7607 §2: AS 0 → 2/2.
        65 => match v {
            &[a, b, c, d] => match u32::from_be_bytes([a, b, c, d]) {
                0 => return Err(DecodeError::BadPeerAs { asn: 0 }),
                asn => Capability::FourOctetAs(asn),
            },
            _ => return Err(bad_len),
        },
        // RFC 7911 §4: { AFI (2) | SAFI (1) | Send/Receive (1) } ...; a Send/Receive value
        // outside 1..=3 makes that tuple "not understood" → dropped.
        69 => {
            if !v.len().is_multiple_of(4) {
                return Err(bad_len);
            }
            let tuples = v
                .chunks_exact(4)
                .filter_map(|c| {
                    let &[a, b, safi, mode] = c else { return None };
                    let mode = match mode {
                        1 => AddPathMode::Receive,
                        2 => AddPathMode::Send,
                        3 => AddPathMode::Both,
                        _ => return None,
                    };
                    Some((
                        Family {
                            afi: u16::from_be_bytes([a, b]),
                            safi,
                        },
                        mode,
                    ))
                })
                .collect();
            Capability::AddPath(tuples)
        }
        // RFC 5492 §4: unknown capabilities are ignored by negotiation, kept for display.
        _ => Capability::Unknown {
            code,
            value: src.bytes(v),
        },
    };
    Ok(cap)
}
