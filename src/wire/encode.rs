//! Encoding of BGP messages, path attributes, and UPDATE packing.
//!
//! RFCs: 4271 §4 (messages), §5 and §9.1.4 (attributes, packing), 4760 (MP_REACH_NLRI /
//! MP_UNREACH_NLRI), 6793 §4.2.2 (sending to a 2-octet-AS peer: AS_TRANS, AS4_PATH,
//! AS4_AGGREGATOR), 7606 §5.1 (MP attribute first, no mixing of reach and unreach), 4724 §2
//! (End-of-RIB), 7911 (ADD-PATH), 8654 (extended message), 9072 (extended optional parameters),
//! 2545 / 8950 (IPv6 next hops).
//!
//! Invariants:
//! * Every produced message is ≤ the negotiated maximum length, or the call fails
//!   ([`encode_message`]) or emits nothing for the offending part (packing functions, which are
//!   infallible by signature and documented per function).
//! * Attributes are written in ascending type order (RFC 4271 §5), MP_REACH_NLRI /
//!   MP_UNREACH_NLRI always first (RFC 7606 §5.1). The Extended Length bit is used exactly when a
//!   value exceeds 255 octets, except for MP_REACH_NLRI / MP_UNREACH_NLRI carrying NLRI, which
//!   always use it (as FRR does).
//! * Unknown optional transitive attributes are re-sent with the Partial bit set; unknown
//!   optional non-transitive attributes are never sent (RFC 4271 §5, §9).
//! * The encoder does not apply policy: the caller strips LOCAL_PREF, ORIGINATOR_ID and
//!   CLUSTER_LIST for eBGP peers before calling.

use bytes::{BufMut, Bytes, BytesMut};

use super::decode::msg_type;
use super::error::EncodeError;
use super::nlri;
use super::types::{
    AS_TRANS, AddPathMode, AsSegment, Capability, Family, Message, MpNextHop, MpReach, MpUnreach,
    Nlri, Notification, Open, PathAttrs, RouteRefresh, SegmentType, SessionCodec, Update,
    attr_type as t, flags,
};
use super::{HEADER_LEN, MAX_MESSAGE_LEN};

/// The 19-octet KEEPALIVE message (RFC 4271 §4.4).
pub fn keepalive() -> Bytes {
    const KEEPALIVE: [u8; 19] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x00, 0x13, 0x04,
    ];
    Bytes::from_static(&KEEPALIVE)
}

/// A NOTIFICATION message; data longer than fits in 4096 octets is truncated (RFC 4271 §4.5
/// before RFC 8654 negotiation is known, which is the safe ceiling for an error path).
pub fn notification_message(n: &Notification) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + 2 + n.data.len());
    let start = begin(&mut out, msg_type::NOTIFICATION);
    out.put_u8(n.code);
    out.put_u8(n.subcode);
    let room = MAX_MESSAGE_LEN - HEADER_LEN - 2;
    out.put_slice(n.data.get(..room).unwrap_or(&n.data));
    let _ = finish(&mut out, start, MAX_MESSAGE_LEN);
    out.freeze()
}

/// End-of-RIB marker for `family` (RFC 4724 §2): an empty UPDATE for IPv4 unicast, otherwise an
/// UPDATE holding only an empty MP_UNREACH_NLRI.
pub fn end_of_rib(family: Family) -> Bytes {
    let mut out = BytesMut::with_capacity(32);
    let start = begin(&mut out, msg_type::UPDATE);
    out.put_u16(0);
    if family == Family::IPV4_UNICAST {
        out.put_u16(0);
    } else {
        out.put_u16(6);
        put_mp_unreach(&mut out, family, &[], false);
    }
    let _ = finish(&mut out, start, MAX_MESSAGE_LEN);
    out.freeze()
}

/// Appends one complete message (header included) to `out`.
///
/// Fails, leaving `out` as it was, when the message would exceed `cx.max_message_len()`
/// (4096 for OPEN/KEEPALIVE regardless) or a field cannot be represented.
pub fn encode_message(
    msg: &Message,
    cx: &SessionCodec,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    let res = match msg {
        Message::Open(o) => encode_open(o, out),
        Message::Update(u) => encode_update(u, cx, out),
        Message::Notification(n) => {
            let s = begin(out, msg_type::NOTIFICATION);
            out.put_u8(n.code);
            out.put_u8(n.subcode);
            out.put_slice(&n.data);
            finish(out, s, cx.max_message_len())
        }
        Message::Keepalive => {
            out.put_slice(&keepalive());
            Ok(())
        }
        Message::RouteRefresh(r) => {
            encode_route_refresh(r, out);
            Ok(())
        }
    };
    if res.is_err() {
        out.truncate(start);
    }
    res
}

/// Writes a header with a zero length; returns its offset for [`finish`].
fn begin(out: &mut BytesMut, ty: u8) -> usize {
    let start = out.len();
    out.put_slice(&[0xff; 16]);
    out.put_u16(0);
    out.put_u8(ty);
    start
}

/// Fills in the Length of the message started at `start`, or fails if it exceeds `max`.
fn finish(out: &mut BytesMut, start: usize, max: usize) -> Result<(), EncodeError> {
    let len = out.len() - start;
    if len > max || len > usize::from(u16::MAX) {
        return Err(EncodeError::MessageTooLong { len, max });
    }
    set_u16(out, start + 16, len);
    Ok(())
}

/// Overwrites a 2-octet field previously written as a placeholder.
fn set_u16(out: &mut BytesMut, at: usize, v: usize) {
    let v = u16::try_from(v).unwrap_or(u16::MAX);
    if let Some(dst) = out.get_mut(at..at + 2) {
        dst.copy_from_slice(&v.to_be_bytes());
    }
}

/// ROUTE-REFRESH (RFC 2918 §3, RFC 7313 §3).
///
/// ```text
///  0       7      15      23      31
/// +-------+-------+-------+-------+
/// |      AFI      | Subt. | SAFI  |
/// +-------+-------+-------+-------+
/// ```
fn encode_route_refresh(r: &RouteRefresh, out: &mut BytesMut) {
    let s = begin(out, msg_type::ROUTE_REFRESH);
    out.put_u16(r.family.afi);
    out.put_u8(r.subtype);
    out.put_u8(r.family.safi);
    let _ = finish(out, s, MAX_MESSAGE_LEN);
}

// ---------------------------------------------------------------------------------------------
// OPEN
// ---------------------------------------------------------------------------------------------

/// OPEN (RFC 4271 §4.2). Each capability goes into its own Capabilities optional parameter (as
/// FRR does); the RFC 9072 extended format is used only when the parameters exceed 255 octets.
fn encode_open(o: &Open, out: &mut BytesMut) -> Result<(), EncodeError> {
    let mut tlvs: Vec<BytesMut> = Vec::with_capacity(o.capabilities.len());
    for c in &o.capabilities {
        let mut b = BytesMut::with_capacity(8);
        encode_capability(c, &mut b)?;
        tlvs.push(b);
    }
    let s = begin(out, msg_type::OPEN);
    out.put_u8(o.version);
    out.put_u16(o.my_as);
    out.put_u16(o.hold_time);
    out.put_slice(&o.bgp_id.octets());
    let classic: usize = tlvs.iter().map(|c| 2 + c.len()).sum();
    if classic <= 255 {
        out.put_u8(classic as u8);
        for c in &tlvs {
            out.put_u8(2);
            out.put_u8(c.len() as u8);
            out.put_slice(c);
        }
    } else {
        let ext: usize = tlvs.iter().map(|c| 3 + c.len()).sum();
        let ext_len =
            u16::try_from(ext).map_err(|_| EncodeError::OptionalParametersTooLong { len: ext })?;
        // RFC 9072 §2: Non-Ext OP Len = 255, Non-Ext OP Type = 255, 2-octet lengths follow.
        out.put_u8(255);
        out.put_u8(255);
        out.put_u16(ext_len);
        for c in &tlvs {
            out.put_u8(2);
            out.put_u16(c.len() as u16);
            out.put_slice(c);
        }
    }
    finish(out, s, MAX_MESSAGE_LEN)
}

/// One capability TLV (RFC 5492 §4): code (1), length (1), value.
fn encode_capability(c: &Capability, b: &mut BytesMut) -> Result<(), EncodeError> {
    let (code, value): (u8, BytesMut) = match c {
        Capability::Multiprotocol(f) => {
            let mut v = BytesMut::with_capacity(4);
            v.put_u16(f.afi);
            v.put_u8(0);
            v.put_u8(f.safi);
            (1, v)
        }
        Capability::RouteRefresh => (2, BytesMut::new()),
        Capability::ExtendedMessage => (6, BytesMut::new()),
        Capability::GracefulRestart {
            restart_state,
            notification,
            restart_time,
            families,
        } => {
            if *restart_time > 0x0fff {
                return Err(EncodeError::RestartTimeTooLarge(*restart_time));
            }
            let mut v = BytesMut::with_capacity(2 + 4 * families.len());
            let fl =
                if *restart_state { 0x8000 } else { 0 } | if *notification { 0x4000 } else { 0 };
            v.put_u16(fl | restart_time);
            for g in families {
                v.put_u16(g.family.afi);
                v.put_u8(g.family.safi);
                v.put_u8(if g.forwarding_preserved { 0x80 } else { 0 });
            }
            (64, v)
        }
        Capability::FourOctetAs(asn) => {
            let mut v = BytesMut::with_capacity(4);
            v.put_u32(*asn);
            (65, v)
        }
        Capability::AddPath(tuples) => {
            let mut v = BytesMut::with_capacity(4 * tuples.len());
            for (f, mode) in tuples {
                v.put_u16(f.afi);
                v.put_u8(f.safi);
                v.put_u8(match mode {
                    AddPathMode::Receive => 1,
                    AddPathMode::Send => 2,
                    AddPathMode::Both => 3,
                });
            }
            (69, v)
        }
        Capability::EnhancedRouteRefresh => (70, BytesMut::new()),
        Capability::Unknown { code, value } => (*code, BytesMut::from(&value[..])),
    };
    let len = u8::try_from(value.len()).map_err(|_| EncodeError::CapabilityTooLong {
        code,
        len: value.len(),
    })?;
    b.put_u8(code);
    b.put_u8(len);
    b.put_slice(&value);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// UPDATE
// ---------------------------------------------------------------------------------------------

/// A whole UPDATE from its decoded form. IPv4 prefixes go into the classic fields; prefixes of
/// the wrong address family in a field are skipped.
fn encode_update(u: &Update, cx: &SessionCodec, out: &mut BytesMut) -> Result<(), EncodeError> {
    let v4_ap = cx.add_path_tx.contains(&Family::IPV4_UNICAST);
    let s = begin(out, msg_type::UPDATE);
    let wrl_at = out.len();
    out.put_u16(0);
    for n in u.withdrawn.iter().filter(|n| nlri::matches_afi(n, 1)) {
        nlri::put(n, v4_ap, out);
    }
    set_u16(out, wrl_at, out.len() - wrl_at - 2);
    let tpal_at = out.len();
    out.put_u16(0);
    if let Some(MpReach {
        family,
        next_hop,
        nlri,
    }) = &u.mp_reach
    {
        put_mp_reach(
            out,
            *family,
            next_hop,
            nlri,
            cx.add_path_tx.contains(family),
        );
    }
    if let Some(MpUnreach { family, withdrawn }) = &u.mp_unreach {
        put_mp_unreach(out, *family, withdrawn, cx.add_path_tx.contains(family));
    }
    encode_path_attrs(&u.attrs, cx, out);
    let tpal = out.len() - tpal_at - 2;
    if tpal > usize::from(u16::MAX) {
        let len = out.len() - s;
        return Err(EncodeError::MessageTooLong {
            len,
            max: cx.max_message_len(),
        });
    }
    set_u16(out, tpal_at, tpal);
    for n in u.nlri.iter().filter(|n| nlri::matches_afi(n, 1)) {
        nlri::put(n, v4_ap, out);
    }
    finish(out, s, cx.max_message_len())
}

/// The next-hop octets of MP_REACH_NLRI (RFC 4760 §3, RFC 2545 §3, RFC 8950 §3).
fn next_hop_bytes(nh: &MpNextHop) -> ([u8; 32], usize) {
    let mut b = [0u8; 32];
    let len = match nh {
        MpNextHop::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            4
        }
        MpNextHop::V6 {
            global,
            link_local: None,
        } => {
            b[..16].copy_from_slice(&global.octets());
            16
        }
        MpNextHop::V6 {
            global,
            link_local: Some(ll),
        } => {
            b[..16].copy_from_slice(&global.octets());
            b[16..].copy_from_slice(&ll.octets());
            32
        }
    };
    (b, len)
}

/// MP_REACH_NLRI, always with the Extended Length bit (layout in `attrs.rs`).
fn put_mp_reach(out: &mut BytesMut, family: Family, nh: &MpNextHop, list: &[Nlri], add_path: bool) {
    out.put_u8(flags::OPTIONAL | flags::EXTENDED_LENGTH);
    out.put_u8(t::MP_REACH_NLRI);
    let len_at = out.len();
    out.put_u16(0);
    out.put_u16(family.afi);
    out.put_u8(family.safi);
    let (b, l) = next_hop_bytes(nh);
    out.put_u8(l as u8);
    out.put_slice(b.get(..l).unwrap_or(&b));
    out.put_u8(0);
    for n in list.iter().filter(|n| nlri::matches_afi(n, family.afi)) {
        nlri::put(n, add_path, out);
    }
    set_u16(out, len_at, out.len() - len_at - 2);
}

/// MP_UNREACH_NLRI. An empty one (End-of-RIB) is written with a 1-octet length, as FRR does;
/// otherwise the Extended Length bit is used.
fn put_mp_unreach(out: &mut BytesMut, family: Family, list: &[Nlri], add_path: bool) {
    if list.is_empty() {
        out.put_u8(flags::OPTIONAL);
        out.put_u8(t::MP_UNREACH_NLRI);
        out.put_u8(3);
        out.put_u16(family.afi);
        out.put_u8(family.safi);
        return;
    }
    out.put_u8(flags::OPTIONAL | flags::EXTENDED_LENGTH);
    out.put_u8(t::MP_UNREACH_NLRI);
    let len_at = out.len();
    out.put_u16(0);
    out.put_u16(family.afi);
    out.put_u8(family.safi);
    for n in list.iter().filter(|n| nlri::matches_afi(n, family.afi)) {
        nlri::put(n, add_path, out);
    }
    set_u16(out, len_at, out.len() - len_at - 2);
}

/// Attribute header: Extended Length exactly when the value exceeds 255 octets.
fn attr_header(out: &mut BytesMut, f: u8, tc: u8, len: usize) {
    if len > 255 {
        out.put_u8(f | flags::EXTENDED_LENGTH);
        out.put_u8(tc);
        out.put_u16(len.min(usize::from(u16::MAX)) as u16);
    } else {
        out.put_u8(f & !flags::EXTENDED_LENGTH);
        out.put_u8(tc);
        out.put_u8(len as u8);
    }
}

/// Largest item count of a list attribute whose value fits the 2-octet attribute length.
fn fit(count: usize, item: usize) -> usize {
    count.min(usize::from(u16::MAX) / item)
}

const WK: u8 = flags::TRANSITIVE;
const OPT: u8 = flags::OPTIONAL;
const OPT_T: u8 = flags::OPTIONAL | flags::TRANSITIVE;

/// Encodes the path attributes (everything in `PathAttrs`, including NEXT_HOP when set, never
/// MP_REACH/MP_UNREACH) once, for reuse across many UPDATEs and peers.
///
/// Attribute order is FRR's (verified byte for byte against FRR 8.4 in `tests/wire_vectors.rs`):
/// ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, ATOMIC_AGGREGATE, AGGREGATOR, COMMUNITIES,
/// LARGE_COMMUNITY, ORIGINATOR_ID, CLUSTER_LIST, EXTENDED_COMMUNITIES, AS4_PATH, AS4_AGGREGATOR,
/// then unknown attributes. (RFC 4271 §5 only says SHOULD for ascending type order; receivers
/// must accept any order.) AS_PATH and AS4_PATH always use the Extended Length bit, as FRR does.
///
/// On a 2-octet session (`!cx.four_octet_as`) AS numbers above 65535 become AS_TRANS and the
/// real values go into AS4_PATH / AS4_AGGREGATOR (RFC 6793 §4.2.2); AS4_PATH is sent only when
/// the path holds such an AS. Lists too long for a 2-octet attribute length are truncated
/// (such a set could never fit a message anyway). Unknown optional transitive attributes are
/// emitted with the Partial bit set, in their stored order; unknown non-transitive ones and raw
/// attributes that collide with a type the codec encodes itself are never emitted.
pub fn encode_path_attrs(attrs: &PathAttrs, cx: &SessionCodec, out: &mut BytesMut) {
    let four = cx.four_octet_as;
    if let Some(o) = attrs.origin {
        attr_header(out, WK, t::ORIGIN, 1);
        out.put_u8(o as u8);
    }
    if let Some(p) = &attrs.as_path {
        let width = if four { 4 } else { 2 };
        put_as_path(out, WK, t::AS_PATH, p.segments.iter(), width);
    }
    if let Some(nh) = attrs.next_hop {
        attr_header(out, WK, t::NEXT_HOP, 4);
        out.put_slice(&nh.octets());
    }
    if let Some(med) = attrs.med {
        attr_header(out, OPT, t::MULTI_EXIT_DISC, 4);
        out.put_u32(med);
    }
    if let Some(lp) = attrs.local_pref {
        attr_header(out, WK, t::LOCAL_PREF, 4);
        out.put_u32(lp);
    }
    if attrs.atomic_aggregate {
        attr_header(out, WK, t::ATOMIC_AGGREGATE, 0);
    }
    let mut as4_aggregator = None;
    if let Some(a) = attrs.aggregator {
        if four {
            attr_header(out, OPT_T, t::AGGREGATOR, 8);
            out.put_u32(a.asn);
        } else {
            attr_header(out, OPT_T, t::AGGREGATOR, 6);
            match u16::try_from(a.asn) {
                Ok(asn) => out.put_u16(asn),
                Err(_) => {
                    out.put_u16(AS_TRANS);
                    as4_aggregator = Some(a);
                }
            }
        }
        out.put_slice(&a.address.octets());
    }
    if !attrs.communities.is_empty() {
        let n = fit(attrs.communities.len(), 4);
        attr_header(out, OPT_T, t::COMMUNITIES, 4 * n);
        for c in attrs.communities.iter().take(n) {
            out.put_u32(*c);
        }
    }
    if !attrs.large_communities.is_empty() {
        let n = fit(attrs.large_communities.len(), 12);
        attr_header(out, OPT_T, t::LARGE_COMMUNITY, 12 * n);
        for c in attrs.large_communities.iter().take(n) {
            out.put_u32(c.global_admin);
            out.put_u32(c.local1);
            out.put_u32(c.local2);
        }
    }
    if let Some(id) = attrs.originator_id {
        attr_header(out, OPT, t::ORIGINATOR_ID, 4);
        out.put_slice(&id.octets());
    }
    if !attrs.cluster_list.is_empty() {
        let n = fit(attrs.cluster_list.len(), 4);
        attr_header(out, OPT, t::CLUSTER_LIST, 4 * n);
        for c in attrs.cluster_list.iter().take(n) {
            out.put_slice(&c.octets());
        }
    }
    if !attrs.ext_communities.is_empty() {
        let n = fit(attrs.ext_communities.len(), 8);
        attr_header(out, OPT_T, t::EXTENDED_COMMUNITIES, 8 * n);
        for c in attrs.ext_communities.iter().take(n) {
            out.put_u64(*c);
        }
    }
    if !four {
        // RFC 6793 §4.2.2: AS4_PATH only when some AS does not fit 2 octets; it never carries
        // confederation segments.
        if let Some(p) = &attrs.as_path {
            let as4 = || {
                let real =
                    |s: &&AsSegment| matches!(s.kind, SegmentType::Sequence | SegmentType::Set);
                p.segments.iter().filter(real)
            };
            if as4().any(|s| s.asns.iter().any(|&a| a > 0xffff)) {
                put_as_path(out, OPT_T, t::AS4_PATH, as4(), 4);
            }
        }
        if let Some(a) = as4_aggregator {
            attr_header(out, OPT_T, t::AS4_AGGREGATOR, 8);
            out.put_u32(a.asn);
            out.put_slice(&a.address.octets());
        }
    }
    for a in attrs.unknown.iter() {
        // RFC 4271 §5: unrecognised optional transitive → Partial set; non-transitive → dropped.
        if a.flags & OPT_T != OPT_T || encoded_natively(a.type_code) {
            continue;
        }
        let v = a.value.get(..usize::from(u16::MAX)).unwrap_or(&a.value);
        attr_header(out, OPT_T | flags::PARTIAL, a.type_code, v.len());
        out.put_slice(v);
    }
}

/// Attribute types `encode_path_attrs` (or the MP packers) write from typed fields.
fn encoded_natively(tc: u8) -> bool {
    matches!(tc, 1..=10 | 14..=18 | 32)
}

/// AS_PATH / AS4_PATH value, always with the Extended Length bit (FRR's encoding): segments of at
/// most 255 AS numbers (longer ones are split), empty segments skipped, the whole value capped
/// at 65535 octets.
fn put_as_path<'a>(
    out: &mut BytesMut,
    f: u8,
    tc: u8,
    segments: impl Iterator<Item = &'a AsSegment> + Clone,
    width: usize,
) {
    let chunks = || {
        segments
            .clone()
            .flat_map(|s| s.asns.chunks(255).map(move |c| (s.kind, c)))
    };
    let mut len = 0usize;
    let mut count = 0usize;
    for (_, c) in chunks() {
        let l = 2 + width * c.len();
        if len + l > usize::from(u16::MAX) {
            break;
        }
        len += l;
        count += 1;
    }
    out.put_u8(f | flags::EXTENDED_LENGTH);
    out.put_u8(tc);
    out.put_u16(len as u16);
    for (kind, c) in chunks().take(count) {
        out.put_u8(kind as u8);
        out.put_u8(c.len() as u8);
        for &asn in c {
            if width == 4 {
                out.put_u32(asn);
            } else {
                out.put_u16(u16::try_from(asn).unwrap_or(AS_TRANS));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------------------------

/// Octets of a message before any NLRI, for an announcement of `family`.
fn announce_overhead(attrs_len: usize, mp_nh: Option<usize>) -> usize {
    // header + Withdrawn Routes Length + Total Path Attribute Length + attributes
    let base = HEADER_LEN + 2 + 2 + attrs_len;
    match mp_nh {
        None => base,
        // MP_REACH_NLRI: flags, type, 2-octet length, AFI, SAFI, NH length, NH, Reserved.
        Some(nh) => base + 4 + 3 + 1 + nh + 1,
    }
}

/// The largest pre-encoded attribute block for which one NLRI of `family` still fits a message
/// under `cx` (useful to check before calling [`pack_announce`], which drops what cannot fit).
pub fn max_attrs_len(cx: &SessionCodec, family: Family, next_hop: Option<MpNextHop>) -> usize {
    let (classic, nh) = announce_form(family, next_hop.as_ref());
    let one = 1
        + if family.afi == 2 { 16 } else { 4 }
        + if cx.add_path_tx.contains(&family) {
            4
        } else {
            0
        };
    let fixed = announce_overhead(0, if classic { None } else { Some(nh) }) + one;
    cx.max_message_len().saturating_sub(fixed)
}

/// Classic IPv4 field or MP_REACH_NLRI, and the next-hop length in the latter case.
fn announce_form(family: Family, next_hop: Option<&MpNextHop>) -> (bool, usize) {
    match next_hop {
        // RFC 8950: an IPv4 NLRI with an IPv6 next hop must travel in MP_REACH_NLRI.
        Some(nh @ MpNextHop::V6 { .. }) => (false, next_hop_bytes(nh).1),
        Some(nh) => (family == Family::IPV4_UNICAST, next_hop_bytes(nh).1),
        None => (family == Family::IPV4_UNICAST, 0),
    }
}

/// Splits `list` into consecutive runs whose encoding fits `room` octets each (greedy, hence the
/// minimum number of messages for an order-preserving split) and calls `emit` per run.
/// Entries of another address family take no room and are skipped by the writers; an entry that
/// cannot fit even alone is dropped.
fn runs(
    list: &[Nlri],
    afi: u16,
    add_path: bool,
    room: usize,
    mut emit: impl FnMut(&[Nlri], usize),
) {
    let mut start = 0usize;
    let mut used = 0usize;
    for (i, n) in list.iter().enumerate() {
        if !nlri::matches_afi(n, afi) {
            continue;
        }
        let l = nlri::encoded_len(n, add_path);
        if used + l > room {
            if used > 0 {
                emit(list.get(start..i).unwrap_or(&[]), used);
            }
            start = i;
            used = 0;
            if l > room {
                start = i + 1;
                continue;
            }
        }
        used += l;
    }
    if used > 0 {
        emit(list.get(start..).unwrap_or(&[]), used);
    }
}

/// Packs announcements of `nlri` (all sharing `encoded_attrs`, from [`encode_path_attrs`]) into
/// as few UPDATEs as fit `cx.max_message_len()`, pushing each complete message to `out`.
///
/// * IPv4 unicast with no or an IPv4 `next_hop`: classic NLRI field; `encoded_attrs` must hold
///   NEXT_HOP (`next_hop` is then ignored).
/// * Any other family, or IPv4 unicast with an IPv6 `next_hop` (RFC 8950): MP_REACH_NLRI as the
///   first attribute (RFC 7606 §5.1) followed by `encoded_attrs`. Without `next_hop` nothing is
///   emitted.
/// * Path identifiers are written iff `cx.add_path_tx` contains `family` (0 when absent).
/// * Prefixes of another address family are skipped. If `encoded_attrs` is so large that not
///   even one prefix fits (see [`max_attrs_len`]), nothing is emitted.
pub fn pack_announce(
    cx: &SessionCodec,
    encoded_attrs: &[u8],
    family: Family,
    next_hop: Option<MpNextHop>,
    nlri: &[Nlri],
    out: &mut Vec<Bytes>,
) {
    let max = cx.max_message_len();
    let add_path = cx.add_path_tx.contains(&family);
    let (classic, nh_len) = announce_form(family, next_hop.as_ref());
    match (family.afi, &next_hop) {
        (_, None) if !classic => return,
        // An IPv6 NLRI cannot have an IPv4 next hop.
        (super::types::AFI_IPV6, Some(MpNextHop::V4(_))) => return,
        _ => {}
    }
    let overhead = announce_overhead(
        encoded_attrs.len(),
        if classic { None } else { Some(nh_len) },
    );
    let Some(room) = max.checked_sub(overhead) else {
        return;
    };
    runs(nlri, family.afi, add_path, room, |run, used| {
        let mut m = BytesMut::with_capacity(overhead + used);
        let s = begin(&mut m, msg_type::UPDATE);
        m.put_u16(0);
        if classic {
            m.put_u16(encoded_attrs.len() as u16);
            m.put_slice(encoded_attrs);
            for n in run.iter().filter(|n| nlri::matches_afi(n, family.afi)) {
                nlri::put(n, add_path, &mut m);
            }
        } else if let Some(nh) = &next_hop {
            m.put_u16((4 + 3 + 1 + nh_len + 1 + used + encoded_attrs.len()) as u16);
            put_mp_reach(&mut m, family, nh, run, add_path);
            m.put_slice(encoded_attrs);
        }
        if finish(&mut m, s, max).is_ok() {
            out.push(m.freeze());
        }
    });
}

/// Packs withdrawals of `nlri` into as few UPDATEs as fit: the classic Withdrawn Routes field
/// for IPv4 unicast, MP_UNREACH_NLRI (sole attribute) otherwise. Path identifiers as in
/// [`pack_announce`].
pub fn pack_withdraw(cx: &SessionCodec, family: Family, nlri: &[Nlri], out: &mut Vec<Bytes>) {
    let max = cx.max_message_len();
    let add_path = cx.add_path_tx.contains(&family);
    let classic = family == Family::IPV4_UNICAST;
    // header + WRL + TPAL (+ MP_UNREACH_NLRI: flags, type, 2-octet length, AFI, SAFI)
    let overhead = HEADER_LEN + 4 + if classic { 0 } else { 4 + 3 };
    let Some(room) = max.checked_sub(overhead) else {
        return;
    };
    runs(nlri, family.afi, add_path, room, |run, used| {
        let mut m = BytesMut::with_capacity(overhead + used);
        let s = begin(&mut m, msg_type::UPDATE);
        if classic {
            m.put_u16(used as u16);
            for n in run.iter().filter(|n| nlri::matches_afi(n, family.afi)) {
                nlri::put(n, add_path, &mut m);
            }
            m.put_u16(0);
        } else {
            m.put_u16(0);
            m.put_u16((4 + 3 + used) as u16);
            put_mp_unreach(&mut m, family, run, add_path);
        }
        if finish(&mut m, s, max).is_ok() {
            out.push(m.freeze());
        }
    });
}
