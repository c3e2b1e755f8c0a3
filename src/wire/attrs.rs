//! UPDATE body and path-attribute decoding with RFC 7606 error classification.
//!
//! RFCs: 4271 §4.3, §5 and §6.3 (UPDATE, attributes), 7606 (revised error handling), 4760
//! (MP_REACH_NLRI / MP_UNREACH_NLRI), 6793 (AS4_PATH / AS4_AGGREGATOR), 7607 (AS 0), 9774
//! (AS_SET deprecation), 1997 / 4360 / 5701 / 8092 (communities), 4456 (route reflection),
//! 9234 (OTC), 2545 / 8950 (IPv6 next hops), 7911 (ADD-PATH).
//!
//! ```text
//! UPDATE body (RFC 4271 §4.3):
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//!
//! Path attribute:
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |O|T|P|E|unused |  Attr. Type   |  Attr. Length: 1 octet, or 2 when E (Extended Length) is set
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Classification (pinned in `shared/reference/bgp-robustness.md` §1.4; the strongest action
//! wins, RFC 7606 §3(h)):
//! * **Session reset** (returned as [`DecodeError`]): Withdrawn/Total-Attribute length overrun
//!   (3/1), duplicate MP_REACH/MP_UNREACH (3/1), unrecognized well-known attribute (3/2), any
//!   malformed MP_REACH/MP_UNREACH incl. flags and next-hop length (3/9), syntactically bad NLRI in
//!   any field (3/10), and RFC 7606 §5.2: treat-as-withdraw needed but no reachable NLRI (3/1).
//! * **Treat-as-withdraw** (`Update::treat_as_withdraw`, first error kept): attribute-list
//!   framing (§4), ORIGIN, AS_PATH (incl. AS 0, AS_SET/AS_CONFED_SET, confed segments on eBGP),
//!   NEXT_HOP (length, 0/8, 127/8, 224/3), MED, LOCAL_PREF/ORIGINATOR_ID/CLUSTER_LIST on iBGP,
//!   COMMUNITIES, EXTENDED_COMMUNITIES, IPv6 extended communities (25), LARGE_COMMUNITY, OTC (35),
//!   flag errors on those, missing well-known mandatory attributes (§3(d)), and any malformed
//!   recognized optional transitive attribute carrying the Partial bit.
//! * **Attribute discard** (`Update::discarded`): ATOMIC_AGGREGATE, AGGREGATOR (incl. AS 0),
//!   LOCAL_PREF/ORIGINATOR_ID/CLUSTER_LIST from eBGP, AS4_PATH/AS4_AGGREGATOR (always on a
//!   4-octet session; on a 2-octet one when malformed, incl. AS 0 and AS_SET), and repeated
//!   attributes (§3(g), the first occurrence is kept).
//!
//! On treat-as-withdraw the well-formed attributes are still filled into `Update::attrs` (for
//! logging); callers must not use them for the withdrawn prefixes.
//!
//! MP_REACH_NLRI / MP_UNREACH_NLRI of a family other than IPv4/IPv6 unicast never fail the
//! decode: their NLRI are skipped. Such an MP_REACH is dropped (`mp_reach` stays `None`, but it
//! still counts as reachable NLRI for RFC 7606 §5.2 and §3(d)); such an MP_UNREACH is reported as
//! an `MpUnreach` of that family with an empty `withdrawn` list, so End-of-RIB markers of any
//! family are still recognisable. Callers must check `Family::is_supported`.

use std::net::Ipv4Addr;

use super::decode::Src;
use super::error::{DecodeError, MpError, NlriField, update_subcode as sub};
use super::nlri;
use super::types::{
    AS_TRANS, Aggregator, AsPath, AsSegment, AttrAction, AttrError, Family, LargeCommunity,
    MpNextHop, MpReach, MpUnreach, Origin, PathAttrs, RawAttr, SegmentType, SessionCodec, Update,
    attr_type as t, flags,
};

/// Attribute type code of the IPv6 Address-Specific Extended Community (RFC 5701).
const IPV6_EXT_COMMUNITIES: u8 = 25;
/// Attribute type code of Only-to-Customer (RFC 9234).
const OTC: u8 = 35;

/// Expected O/T flag class of a recognised attribute (RFC 4271 §5, RFC 7606 §3(c)).
#[derive(Clone, Copy)]
enum Class {
    WellKnown,
    OptionalTransitive,
    OptionalNonTransitive,
}

fn class_of(type_code: u8) -> Option<Class> {
    Some(match type_code {
        t::ORIGIN | t::AS_PATH | t::NEXT_HOP | t::LOCAL_PREF | t::ATOMIC_AGGREGATE => {
            Class::WellKnown
        }
        t::MULTI_EXIT_DISC | t::ORIGINATOR_ID | t::CLUSTER_LIST => Class::OptionalNonTransitive,
        t::MP_REACH_NLRI | t::MP_UNREACH_NLRI => Class::OptionalNonTransitive,
        t::AGGREGATOR
        | t::COMMUNITIES
        | t::EXTENDED_COMMUNITIES
        | t::AS4_PATH
        | t::AS4_AGGREGATOR
        | t::LARGE_COMMUNITY
        | IPV6_EXT_COMMUNITIES
        | OTC => Class::OptionalTransitive,
        _ => return None,
    })
}

/// True when the O/T/P bits agree with the attribute's definition. The Partial bit must be
/// clear on well-known and optional non-transitive attributes (RFC 4271 §4.3).
fn flags_ok(class: Class, f: u8) -> bool {
    let otp = f & (flags::OPTIONAL | flags::TRANSITIVE | flags::PARTIAL);
    match class {
        Class::WellKnown => otp == flags::TRANSITIVE,
        Class::OptionalNonTransitive => otp == flags::OPTIONAL,
        Class::OptionalTransitive => otp & !flags::PARTIAL == flags::OPTIONAL | flags::TRANSITIVE,
    }
}

/// Decodes the body of an UPDATE (everything after the 19-octet header).
///
/// Returns `Err` only for session-reset cases; see the module documentation.
pub fn decode_update(body: &[u8], cx: &SessionCodec) -> Result<Update, DecodeError> {
    decode_update_src(body, cx, Src::COPY)
}

pub(crate) fn decode_update_src(
    body: &[u8],
    cx: &SessionCodec,
    src: Src<'_>,
) -> Result<Update, DecodeError> {
    // RFC 4271 §6.3 / RFC 7606 §3(b): the two length fields must fit the message.
    let wrl = match body.get(..2) {
        Some(&[a, b]) => usize::from(u16::from_be_bytes([a, b])),
        _ => return Err(DecodeError::WithdrawnLengthOverrun),
    };
    let withdrawn_raw = body
        .get(2..2 + wrl)
        .ok_or(DecodeError::WithdrawnLengthOverrun)?;
    let tpal = match body.get(2 + wrl..4 + wrl) {
        Some(&[a, b]) => usize::from(u16::from_be_bytes([a, b])),
        _ => return Err(DecodeError::WithdrawnLengthOverrun),
    };
    let attrs_raw = body
        .get(4 + wrl..4 + wrl + tpal)
        .ok_or(DecodeError::AttributeLengthOverrun)?;
    let nlri_raw = body.get(4 + wrl + tpal..).unwrap_or(&[]);

    let v4_add_path = cx.add_path_rx.contains(&Family::IPV4_UNICAST);
    let mut update = Update::default();
    if !withdrawn_raw.is_empty() {
        nlri::decode_v4(withdrawn_raw, v4_add_path, &mut update.withdrawn).map_err(|_| {
            DecodeError::InvalidNetworkField {
                field: NlriField::Withdrawn,
            }
        })?;
    }
    if !nlri_raw.is_empty() {
        nlri::decode_v4(nlri_raw, v4_add_path, &mut update.nlri).map_err(|_| {
            DecodeError::InvalidNetworkField {
                field: NlriField::Nlri,
            }
        })?;
    }

    let mut st = AttrState::new(cx, src);
    st.walk(attrs_raw)?;
    st.finish(update)
}

/// Accumulates the attribute walk of one UPDATE.
struct AttrState<'c, 'b> {
    cx: &'c SessionCodec,
    src: Src<'b>,
    /// Attribute types already seen (RFC 7606 §3(g)); 256 bits.
    seen: [u64; 4],
    attrs: PathAttrs,
    taw: Option<AttrError>,
    discarded: Vec<AttrError>,
    mp_reach: Option<MpReach>,
    mp_unreach: Option<MpUnreach>,
    /// An MP_REACH_NLRI of an unsupported family carried NLRI octets.
    foreign_reach: bool,
    /// AS4_PATH / AS4_AGGREGATOR from a 2-octet session, merged after the walk (RFC 6793 §4.2.3)
    /// so the result does not depend on attribute order.
    as4_path: Option<AsPath>,
    as4_aggregator: Option<Aggregator>,
}

impl<'c, 'b> AttrState<'c, 'b> {
    fn new(cx: &'c SessionCodec, src: Src<'b>) -> Self {
        AttrState {
            cx,
            src,
            seen: [0; 4],
            attrs: PathAttrs::default(),
            taw: None,
            discarded: Vec::new(),
            mp_reach: None,
            mp_unreach: None,
            foreign_reach: false,
            as4_path: None,
            as4_aggregator: None,
        }
    }

    fn error(&self, action: AttrAction, type_code: u8, subcode: u8, raw: &[u8]) -> AttrError {
        AttrError {
            action,
            type_code,
            subcode,
            data: self.src.bytes(raw),
        }
    }

    /// RFC 7606 treat-as-withdraw; the first such error is kept.
    fn withdraw(&mut self, type_code: u8, subcode: u8, raw: &[u8]) {
        if self.taw.is_none() {
            self.taw = Some(self.error(AttrAction::TreatAsWithdraw, type_code, subcode, raw));
        }
    }

    /// RFC 7606 attribute discard.
    fn discard(&mut self, type_code: u8, subcode: u8, raw: &[u8]) {
        let e = self.error(AttrAction::AttributeDiscard, type_code, subcode, raw);
        self.discarded.push(e);
    }

    /// A malformed recognised optional transitive attribute: its own rule, except that the
    /// Partial bit escalates to treat-as-withdraw (bgp-robustness.md §1.4 pin).
    fn malformed_optional(&mut self, f: u8, type_code: u8, subcode: u8, raw: &[u8], discard: bool) {
        if discard && f & flags::PARTIAL == 0 {
            self.discard(type_code, subcode, raw);
        } else {
            self.withdraw(type_code, subcode, raw);
        }
    }

    fn walk(&mut self, block: &[u8]) -> Result<(), DecodeError> {
        let mut pos = 0usize;
        while pos < block.len() {
            let rest = block.get(pos..).unwrap_or(&[]);
            // RFC 7606 §4: fewer than 3 (4 with Extended Length) octets left, or a length that
            // overruns the attribute field → treat-as-withdraw; the TPAL still locates the NLRI.
            let (f, type_code) = match rest {
                &[f, tc, ..] => (f, tc),
                _ => {
                    self.withdraw(0, sub::MALFORMED_ATTRIBUTE_LIST, rest);
                    break;
                }
            };
            let ext = f & flags::EXTENDED_LENGTH != 0;
            let (hdr, len) = match (ext, rest.get(2..)) {
                (false, Some(&[l, ..])) => (3, usize::from(l)),
                (true, Some(&[a, b, ..])) => (4, usize::from(u16::from_be_bytes([a, b]))),
                _ => {
                    self.overrun(type_code, rest)?;
                    break;
                }
            };
            let Some(raw) = rest.get(..hdr + len) else {
                self.overrun(type_code, rest)?;
                break;
            };
            let value = raw.get(hdr..).unwrap_or(&[]);
            pos += hdr + len;
            self.attribute(f, type_code, value, raw)?;
        }
        Ok(())
    }

    /// RFC 7606 §4 framing error at the last attribute. If it is MP_REACH/MP_UNREACH its NLRI
    /// cannot be located, so treat-as-withdraw is impossible → session reset (§5.3, 3/9).
    fn overrun(&mut self, type_code: u8, rest: &[u8]) -> Result<(), DecodeError> {
        if type_code == t::MP_REACH_NLRI || type_code == t::MP_UNREACH_NLRI {
            return Err(DecodeError::MalformedMpAttribute {
                type_code,
                kind: MpError::Overrun,
                attr: self.src.bytes(rest),
            });
        }
        self.withdraw(type_code, sub::ATTRIBUTE_LENGTH, rest);
        Ok(())
    }

    fn attribute(&mut self, f: u8, tc: u8, v: &[u8], raw: &[u8]) -> Result<(), DecodeError> {
        // RFC 7606 §3(g): duplicates. MP attributes reset; anything else keeps the first.
        let (word, bit) = (usize::from(tc >> 6), 1u64 << (tc & 63));
        let seen = self.seen.get(word).copied().unwrap_or(0) & bit != 0;
        if seen {
            if tc == t::MP_REACH_NLRI || tc == t::MP_UNREACH_NLRI {
                return Err(DecodeError::DuplicateMpAttribute { type_code: tc });
            }
            self.discard(tc, sub::MALFORMED_ATTRIBUTE_LIST, raw);
            return Ok(());
        }
        if let Some(w) = self.seen.get_mut(word) {
            *w |= bit;
        }

        let ibgp = self.cx.ibgp;
        let four = self.cx.four_octet_as;
        // Rules that apply whatever the flags say.
        match tc {
            // RFC 4271 §5.1.5 / RFC 7606 §7.5, §7.9, §7.10: never accepted from eBGP.
            t::LOCAL_PREF | t::ORIGINATOR_ID | t::CLUSTER_LIST if !ibgp => {
                self.discard(tc, 0, raw);
                return Ok(());
            }
            // RFC 6793 §4.1: a NEW speaker discards AS4_* received from a NEW speaker.
            t::AS4_PATH | t::AS4_AGGREGATOR if four => {
                self.discard(tc, sub::OPTIONAL_ATTRIBUTE, raw);
                return Ok(());
            }
            _ => {}
        }

        let Some(class) = class_of(tc) else {
            return self.unknown(f, tc, v, raw);
        };
        if !flags_ok(class, f) {
            return self.flags_error(tc, raw);
        }

        match tc {
            t::ORIGIN => match *v {
                [0] => self.attrs.origin = Some(Origin::Igp),
                [1] => self.attrs.origin = Some(Origin::Egp),
                [2] => self.attrs.origin = Some(Origin::Incomplete),
                [_] => self.withdraw(tc, sub::INVALID_ORIGIN, raw),
                _ => self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw),
            },
            t::AS_PATH => match parse_as_path(v, if four { 4 } else { 2 }) {
                Ok(path) if path_acceptable(&path, ibgp) => self.attrs.as_path = Some(path),
                _ => self.withdraw(tc, sub::MALFORMED_AS_PATH, raw),
            },
            t::NEXT_HOP => match v {
                &[a, b, c, d] => {
                    let nh = Ipv4Addr::new(a, b, c, d);
                    if valid_host(nh) {
                        self.attrs.next_hop = Some(nh);
                    } else {
                        self.withdraw(tc, sub::INVALID_NEXT_HOP, raw);
                    }
                }
                _ => self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw),
            },
            t::MULTI_EXIT_DISC => match be_u32(v) {
                Some(x) => self.attrs.med = Some(x),
                None => self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw),
            },
            t::LOCAL_PREF => match be_u32(v) {
                Some(x) => self.attrs.local_pref = Some(x),
                None => self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw),
            },
            t::ATOMIC_AGGREGATE => {
                if v.is_empty() {
                    self.attrs.atomic_aggregate = true;
                } else {
                    self.discard(tc, sub::ATTRIBUTE_LENGTH, raw);
                }
            }
            t::AGGREGATOR => {
                let aggr = match (four, v) {
                    (true, &[a, b, c, d, e, g, h, i]) => Some(Aggregator {
                        asn: u32::from_be_bytes([a, b, c, d]),
                        address: Ipv4Addr::new(e, g, h, i),
                    }),
                    (false, &[a, b, e, g, h, i]) => Some(Aggregator {
                        asn: u32::from(u16::from_be_bytes([a, b])),
                        address: Ipv4Addr::new(e, g, h, i),
                    }),
                    _ => None,
                };
                match aggr {
                    // RFC 7607 §2: AS 0 in AGGREGATOR → discard.
                    Some(a) if a.asn != 0 => self.attrs.aggregator = Some(a),
                    Some(_) => self.malformed_optional(f, tc, sub::OPTIONAL_ATTRIBUTE, raw, true),
                    None => self.malformed_optional(f, tc, sub::ATTRIBUTE_LENGTH, raw, true),
                }
            }
            t::COMMUNITIES => match list::<4>(v) {
                Some(it) => self.attrs.communities = it.map(u32::from_be_bytes).collect(),
                None => self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw),
            },
            t::ORIGINATOR_ID => match v {
                &[a, b, c, d] => self.attrs.originator_id = Some(Ipv4Addr::new(a, b, c, d)),
                _ => self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw),
            },
            t::CLUSTER_LIST => match list::<4>(v) {
                Some(it) => self.attrs.cluster_list = it.map(Ipv4Addr::from).collect(),
                None => self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw),
            },
            t::MP_REACH_NLRI => self.mp_reach(v, raw)?,
            t::MP_UNREACH_NLRI => self.mp_unreach(v, raw)?,
            t::EXTENDED_COMMUNITIES => match list::<8>(v) {
                Some(it) => self.attrs.ext_communities = it.map(u64::from_be_bytes).collect(),
                None => self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw),
            },
            // Only reached on a 2-octet session (see above). RFC 6793 §6: shorter than 6 octets,
            // odd, or bad segments → malformed → discard; so are AS 0 (RFC 7607) and AS_SET
            // (RFC 9774, which applies to AS4_PATH too).
            t::AS4_PATH => match parse_as_path(v, 4) {
                Ok(mut path) if v.len() >= 6 && !has_as0(&path) && !has_set(&path) => {
                    // RFC 6793 §6: confederation segments in AS4_PATH are dropped.
                    path.segments.retain(|s| s.kind == SegmentType::Sequence);
                    self.as4_path = Some(path);
                }
                _ => self.malformed_optional(f, tc, sub::OPTIONAL_ATTRIBUTE, raw, true),
            },
            t::AS4_AGGREGATOR => match v {
                &[a, b, c, d, e, g, h, i] if u32::from_be_bytes([a, b, c, d]) != 0 => {
                    self.as4_aggregator = Some(Aggregator {
                        asn: u32::from_be_bytes([a, b, c, d]),
                        address: Ipv4Addr::new(e, g, h, i),
                    });
                }
                _ => self.malformed_optional(f, tc, sub::OPTIONAL_ATTRIBUTE, raw, true),
            },
            t::LARGE_COMMUNITY => match list::<12>(v) {
                Some(it) => {
                    self.attrs.large_communities = it
                        .map(|c| {
                            let [a, b, c0, d, e, g, h, i, j, k, l, m] = c;
                            LargeCommunity {
                                global_admin: u32::from_be_bytes([a, b, c0, d]),
                                local1: u32::from_be_bytes([e, g, h, i]),
                                local2: u32::from_be_bytes([j, k, l, m]),
                            }
                        })
                        .collect();
                }
                None => self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw),
            },
            // Recognised for validation only (RFC 7606 §7.15, RFC 9234 §5); carried verbatim.
            IPV6_EXT_COMMUNITIES | OTC => {
                let ok = if tc == OTC {
                    v.len() == 4
                } else {
                    !v.is_empty() && v.len().is_multiple_of(20)
                };
                if ok {
                    self.keep_raw(f, tc, v);
                } else {
                    self.withdraw(tc, sub::ATTRIBUTE_LENGTH, raw);
                }
            }
            _ => self.keep_raw(f, tc, v),
        }
        Ok(())
    }

    /// RFC 7606 §3(c): O/T/P bits conflicting with the attribute's definition.
    fn flags_error(&mut self, tc: u8, raw: &[u8]) -> Result<(), DecodeError> {
        match tc {
            // RFC 7606 §5.3 and the robustness pin: MP attributes with bad flags reset (3/9).
            t::MP_REACH_NLRI | t::MP_UNREACH_NLRI => Err(DecodeError::MalformedMpAttribute {
                type_code: tc,
                kind: MpError::Flags,
                attr: self.src.bytes(raw),
            }),
            // RFC 7606 §7.6, §7.7; RFC 6793 §6: discard.
            t::ATOMIC_AGGREGATE | t::AGGREGATOR | t::AS4_PATH | t::AS4_AGGREGATOR => {
                self.discard(tc, sub::ATTRIBUTE_FLAGS, raw);
                Ok(())
            }
            _ => {
                self.withdraw(tc, sub::ATTRIBUTE_FLAGS, raw);
                Ok(())
            }
        }
    }

    /// An attribute podbgp does not interpret (RFC 4271 §5, §9).
    fn unknown(&mut self, f: u8, tc: u8, v: &[u8], raw: &[u8]) -> Result<(), DecodeError> {
        if f & flags::OPTIONAL == 0 {
            // RFC 4271 §6.3, not revised by RFC 7606; pinned `NOTIFY 3/2`.
            return Err(DecodeError::UnrecognizedWellKnown {
                attr: self.src.bytes(raw),
            });
        }
        self.keep_raw(f, tc, v);
        Ok(())
    }

    fn keep_raw(&mut self, f: u8, tc: u8, v: &[u8]) {
        let flags = f & (flags::OPTIONAL | flags::TRANSITIVE | flags::PARTIAL);
        self.attrs.unknown.push(RawAttr {
            flags,
            type_code: tc,
            value: self.src.bytes(v),
        });
    }

    /// MP_REACH_NLRI (RFC 4760 §3).
    ///
    /// ```text
    /// +---------------------------------------------------------+
    /// | Address Family Identifier (2 octets)                    |
    /// +---------------------------------------------------------+
    /// | Subsequent Address Family Identifier (1 octet)          |
    /// +---------------------------------------------------------+
    /// | Length of Next Hop Network Address (1 octet)            |
    /// +---------------------------------------------------------+
    /// | Network Address of Next Hop (variable)                  |
    /// +---------------------------------------------------------+
    /// | Reserved (1 octet)                                      |
    /// +---------------------------------------------------------+
    /// | Network Layer Reachability Information (variable)       |
    /// +---------------------------------------------------------+
    /// ```
    fn mp_reach(&mut self, v: &[u8], raw: &[u8]) -> Result<(), DecodeError> {
        let err = |kind| DecodeError::MalformedMpAttribute {
            type_code: t::MP_REACH_NLRI,
            kind,
            attr: self.src.bytes(raw),
        };
        let (afi, safi, nh_len) = match v {
            &[a, b, s, l, _, ..] => (u16::from_be_bytes([a, b]), s, usize::from(l)),
            _ => return Err(err(MpError::TooShort)),
        };
        let family = Family { afi, safi };
        // The Reserved octet must be present after the next hop; its value is ignored.
        let (Some(nh), Some(nlri_raw)) = (v.get(4..4 + nh_len), v.get(5 + nh_len..)) else {
            return Err(err(MpError::NextHopLength));
        };
        if !family.is_supported() {
            self.foreign_reach |= !nlri_raw.is_empty();
            return Ok(());
        }
        let next_hop = match nh {
            // RFC 4760 §3 (IPv4), RFC 2545 §3 / RFC 8950 §3 (IPv6, with or without link-local).
            &[a, b, c, d] if family == Family::IPV4_UNICAST => {
                MpNextHop::V4(Ipv4Addr::new(a, b, c, d))
            }
            _ if nh.len() == 16 => MpNextHop::V6 {
                global: ipv6(nh),
                link_local: None,
            },
            _ if nh.len() == 32 => MpNextHop::V6 {
                global: ipv6(nh.get(..16).unwrap_or(&[])),
                link_local: Some(ipv6(nh.get(16..).unwrap_or(&[]))),
            },
            _ => return Err(err(MpError::NextHopLength)),
        };
        let mut nlri = Vec::new();
        let add_path = self.cx.add_path_rx.contains(&family);
        nlri::decode_afi(afi, nlri_raw, add_path, &mut nlri).map_err(|_| {
            DecodeError::InvalidNetworkField {
                field: NlriField::MpReach,
            }
        })?;
        self.mp_reach = Some(MpReach {
            family,
            next_hop,
            nlri,
        });
        Ok(())
    }

    /// MP_UNREACH_NLRI (RFC 4760 §4).
    ///
    /// ```text
    /// +---------------------------------------------------------+
    /// | Address Family Identifier (2 octets)                    |
    /// +---------------------------------------------------------+
    /// | Subsequent Address Family Identifier (1 octet)          |
    /// +---------------------------------------------------------+
    /// | Withdrawn Routes (variable)                             |
    /// +---------------------------------------------------------+
    /// ```
    fn mp_unreach(&mut self, v: &[u8], raw: &[u8]) -> Result<(), DecodeError> {
        let (afi, safi, rest) = match v {
            &[a, b, s, ref rest @ ..] => (u16::from_be_bytes([a, b]), s, rest),
            _ => {
                return Err(DecodeError::MalformedMpAttribute {
                    type_code: t::MP_UNREACH_NLRI,
                    kind: MpError::TooShort,
                    attr: self.src.bytes(raw),
                });
            }
        };
        let family = Family { afi, safi };
        let mut withdrawn = Vec::new();
        if family.is_supported() {
            let add_path = self.cx.add_path_rx.contains(&family);
            nlri::decode_afi(afi, rest, add_path, &mut withdrawn).map_err(|_| {
                DecodeError::InvalidNetworkField {
                    field: NlriField::MpUnreach,
                }
            })?;
        }
        self.mp_unreach = Some(MpUnreach { family, withdrawn });
        Ok(())
    }

    /// Post-walk rules: RFC 6793 merge, RFC 7606 §3(d) and §5.2.
    fn finish(mut self, mut update: Update) -> Result<Update, DecodeError> {
        if !self.cx.four_octet_as {
            self.merge_as4();
        }
        let reachable = !update.nlri.is_empty()
            || self.mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty())
            || self.foreign_reach;
        if reachable {
            // RFC 7606 §3(d): a missing well-known mandatory attribute → treat-as-withdraw.
            // NEXT_HOP is mandatory only for NLRI in the classic field (RFC 4760 §3).
            let mut missing = Vec::with_capacity(3);
            if self.attrs.origin.is_none() && !self.seen_type(t::ORIGIN) {
                missing.push(t::ORIGIN);
            }
            if self.attrs.as_path.is_none() && !self.seen_type(t::AS_PATH) {
                missing.push(t::AS_PATH);
            }
            if !update.nlri.is_empty()
                && self.attrs.next_hop.is_none()
                && !self.seen_type(t::NEXT_HOP)
            {
                missing.push(t::NEXT_HOP);
            }
            for tc in missing {
                self.withdraw(tc, sub::MISSING_WELL_KNOWN, &[tc]);
            }
        } else if let Some(e) = &self.taw {
            // RFC 7606 §5.2: nothing to withdraw, so the error cannot be contained.
            return Err(DecodeError::MalformedWithoutNlri {
                type_code: e.type_code,
                subcode: e.subcode,
            });
        }
        update.attrs = self.attrs;
        update.mp_reach = self.mp_reach;
        update.mp_unreach = self.mp_unreach;
        update.treat_as_withdraw = self.taw;
        update.discarded = self.discarded;
        Ok(update)
    }

    fn seen_type(&self, tc: u8) -> bool {
        self.seen.get(usize::from(tc >> 6)).copied().unwrap_or(0) & (1u64 << (tc & 63)) != 0
    }

    /// RFC 6793 §4.2.3: rebuild the 4-octet path and aggregator from a 2-octet session.
    ///
    /// * AGGREGATOR present with an AS other than AS_TRANS → AS4_AGGREGATOR and AS4_PATH are
    ///   ignored (an OLD speaker aggregated the route).
    /// * AGGREGATOR = AS_TRANS → AS4_AGGREGATOR replaces it. AS4_AGGREGATOR without AGGREGATOR
    ///   is ignored.
    /// * AS_PATH with fewer AS numbers than AS4_PATH → AS4_PATH ignored; otherwise the leading
    ///   AS_PATH part is prepended to AS4_PATH (see [`merge_as4_path`]).
    fn merge_as4(&mut self) {
        let as4_path = self.as4_path.take();
        let as4_aggregator = self.as4_aggregator.take();
        if let Some(aggr) = &mut self.attrs.aggregator {
            if aggr.asn != u32::from(AS_TRANS) {
                return;
            }
            if let Some(a4) = as4_aggregator {
                *aggr = a4;
            }
        }
        if let (Some(path), Some(p4)) = (&self.attrs.as_path, &as4_path) {
            self.attrs.as_path = Some(merge_as4_path(path, p4));
        }
    }
}

/// Number of AS numbers in a path for RFC 6793 §4.2.3: an AS_SET counts 1, confederation
/// segments count 0 (as for the decision process, RFC 4271 §9.1.2.2 a).
fn count_asns(p: &AsPath) -> usize {
    p.len_for_decision()
}

/// RFC 6793 §4.2.3 AS_PATH + AS4_PATH reconstruction.
///
/// "the AS path information SHALL be constructed by taking as many AS numbers and path segments
/// as necessary from the leading part of the AS_PATH attribute, and then prepending them to the
/// AS4_PATH attribute [...] a valid AS_CONFED_SEQUENCE or AS_CONFED_SET path segment SHALL be
/// prepended if it is either the leading path segment or is adjacent to a path segment that is
/// prepended." The AS_SEQUENCEs meeting at the seam are coalesced when they fit in one segment.
pub(crate) fn merge_as4_path(path: &AsPath, as4: &AsPath) -> AsPath {
    let (n, m) = (count_asns(path), count_asns(as4));
    if n < m {
        return path.clone();
    }
    let mut need = n - m;
    let mut out: Vec<AsSegment> = Vec::with_capacity(path.segments.len() + as4.segments.len());
    for seg in &path.segments {
        match seg.kind {
            SegmentType::ConfedSequence | SegmentType::ConfedSet => out.push(seg.clone()),
            SegmentType::Set if need > 0 => {
                out.push(seg.clone());
                need -= 1;
            }
            SegmentType::Sequence if need > 0 => {
                let k = need.min(seg.asns.len());
                out.push(AsSegment {
                    kind: SegmentType::Sequence,
                    asns: seg.asns.get(..k).unwrap_or(&[]).to_vec(),
                });
                need -= k;
                if k < seg.asns.len() {
                    break;
                }
            }
            _ => break,
        }
    }
    let mut rest = as4.segments.iter();
    // Only the seam is coalesced; AS4_PATH's own segmentation is kept.
    if let (Some(last), Some(first)) = (out.last_mut(), as4.segments.first())
        && last.kind == SegmentType::Sequence
        && first.kind == SegmentType::Sequence
        && last.asns.len() + first.asns.len() <= 255
    {
        last.asns.extend_from_slice(&first.asns);
        rest.next();
    }
    out.extend(rest.cloned());
    AsPath { segments: out }
}

/// AS_PATH / AS4_PATH segments (RFC 4271 §4.3 b, RFC 6793 §3).
///
/// ```text
/// +------------------+------------------+---------------------------------+
/// | segment type (1) | segment len (1)  | len × AS number (2 or 4 octets) |
/// +------------------+------------------+---------------------------------+
/// ```
/// Unknown segment types, zero-length segments and overruns/underruns are errors.
pub(crate) fn parse_as_path(v: &[u8], width: usize) -> Result<AsPath, ()> {
    let mut segments = Vec::new();
    let mut i = 0usize;
    while i < v.len() {
        let (kind, n) = match v.get(i..i + 2) {
            Some(&[1, n]) => (SegmentType::Set, n),
            Some(&[2, n]) => (SegmentType::Sequence, n),
            Some(&[3, n]) => (SegmentType::ConfedSequence, n),
            Some(&[4, n]) => (SegmentType::ConfedSet, n),
            _ => return Err(()),
        };
        if n == 0 {
            return Err(());
        }
        let bytes = usize::from(n) * width;
        let body = v.get(i + 2..i + 2 + bytes).ok_or(())?;
        let asns = if width == 4 {
            body.chunks_exact(4)
                .map(|c| c.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)))
                .collect()
        } else {
            body.chunks_exact(2)
                .map(|c| c.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)))
                .collect()
        };
        segments.push(AsSegment { kind, asns });
        i += 2 + bytes;
    }
    Ok(AsPath { segments })
}

fn has_set(p: &AsPath) -> bool {
    p.segments.iter().any(|s| s.kind == SegmentType::Set)
}

fn has_as0(p: &AsPath) -> bool {
    p.segments.iter().any(|s| s.asns.contains(&0))
}

/// RFC 7607 (AS 0), RFC 9774 (AS_SET / AS_CONFED_SET) and RFC 5065 §5 (confederation segments
/// from outside the confederation: podbgp is never a confederation member, so they are accepted
/// only from iBGP peers).
fn path_acceptable(p: &AsPath, ibgp: bool) -> bool {
    p.segments.iter().all(|s| match s.kind {
        SegmentType::Sequence => !s.asns.contains(&0),
        SegmentType::ConfedSequence => ibgp && !s.asns.contains(&0),
        SegmentType::Set | SegmentType::ConfedSet => false,
    })
}

/// RFC 4271 §6.3: NEXT_HOP must be a valid host address. 0/8, 127/8 and 224/3 (multicast and
/// class E, as FRR's `IPV4_CLASS_DE`) are syntactically invalid.
fn valid_host(a: Ipv4Addr) -> bool {
    let o = a.octets()[0];
    o != 0 && o != 127 && o < 224
}

fn be_u32(v: &[u8]) -> Option<u32> {
    match v {
        &[a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
        _ => None,
    }
}

/// A non-empty list of `N`-octet items exactly filling `v` (RFC 7606 §7.8, §7.10, §7.14, RFC 8092).
fn list<const N: usize>(v: &[u8]) -> Option<impl Iterator<Item = [u8; N]> + '_> {
    if v.is_empty() || !v.len().is_multiple_of(N) {
        return None;
    }
    Some(
        v.chunks_exact(N)
            .filter_map(|c| <[u8; N]>::try_from(c).ok()),
    )
}

fn ipv6(b: &[u8]) -> std::net::Ipv6Addr {
    let mut o = [0u8; 16];
    if let Ok(a) = <[u8; 16]>::try_from(b) {
        o = a;
    }
    std::net::Ipv6Addr::from(o)
}
