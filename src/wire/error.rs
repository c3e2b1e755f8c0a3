//! Typed codec errors and their mechanical mapping onto NOTIFICATION messages.
//!
//! RFCs: 4271 §4.5 and §6 (error codes, subcodes and the Data field of each), 7606 (which
//! UPDATE errors still reset the session), 7313 §5 (ROUTE-REFRESH errors), 5492, 6793,
//! 7607, 9072 (OPEN errors).
//!
//! Invariants:
//! * A [`DecodeError`] is only ever produced for a *session reset* case. Everything that RFC 7606
//!   downgrades (treat-as-withdraw, attribute discard) is reported inside the decoded `Update`.
//! * No variant carries a `String`. Variants carrying [`Bytes`] hold exactly the octets the RFC
//!   wants in the NOTIFICATION Data field, so [`DecodeError::notification`] is a pure mapping.

use std::net::Ipv4Addr;

use bytes::Bytes;

use super::types::Notification;

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313, RFC 9687).
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
    pub const SEND_HOLD_TIMER_EXPIRED: u8 = 8;
}

/// Message Header Error subcodes (RFC 4271 §6.1).
pub mod header_subcode {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492 §5).
pub mod open_subcode {
    pub const UNSPECIFIC: u8 = 0;
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    pub const ROLE_MISMATCH: u8 = 11;
}

/// UPDATE Message Error subcodes (RFC 4271 §6.3).
pub mod update_subcode {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const MISSING_WELL_KNOWN: u8 = 3;
    pub const ATTRIBUTE_FLAGS: u8 = 4;
    pub const ATTRIBUTE_LENGTH: u8 = 5;
    pub const INVALID_ORIGIN: u8 = 6;
    pub const INVALID_NEXT_HOP: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Cease subcodes (RFC 4486, RFC 8538, RFC 9384).
pub mod cease_subcode {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIG_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    pub const HARD_RESET: u8 = 9;
    pub const BFD_DOWN: u8 = 10;
}

/// Why an OPEN's optional parameters or capabilities are malformed (all map to `NOTIFY 2/0`,
/// the choice of FRR and holo; RFC 4271 has no better subcode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenMalformed {
    /// The OPEN body is shorter than its 10 fixed octets.
    Truncated,
    /// Opt Parm Len (or the RFC 9072 extended length) disagrees with the message length.
    OptParamLength,
    /// An optional parameter header or value overruns the optional-parameters field.
    ParamOverrun,
    /// A capability header or value overruns its optional parameter.
    CapabilityOverrun,
    /// A known capability has a length its RFC does not allow.
    CapabilityLength { code: u8 },
}

/// Which NLRI-carrying field was syntactically incorrect (RFC 7606 §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NlriField {
    /// The classic Withdrawn Routes field.
    Withdrawn,
    /// The classic Network Layer Reachability Information field.
    Nlri,
    /// The NLRI inside MP_REACH_NLRI.
    MpReach,
    /// The Withdrawn Routes inside MP_UNREACH_NLRI.
    MpUnreach,
}

/// What is wrong with an MP_REACH_NLRI / MP_UNREACH_NLRI attribute (RFC 4760 §7, RFC 7606 §5.3,
/// §7.11, §7.12). Pinned to `NOTIFY 3/9` (bgp-robustness.md §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MpError {
    /// Optional bit clear, Transitive bit set or Partial bit set.
    Flags,
    /// MP_REACH shorter than 5 octets or MP_UNREACH shorter than 3.
    TooShort,
    /// The next-hop length is inconsistent with the AFI/SAFI, or overruns the attribute.
    NextHopLength,
    /// The attribute's length overruns the path-attribute field (RFC 7606 §4 cannot locate its
    /// NLRI, so treat-as-withdraw is impossible).
    Overrun,
}

/// A decode failure that resets the session. Each variant names the RFC case it implements.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    // ---- Message header (RFC 4271 §6.1) -------------------------------------------------
    /// RFC 4271 §6.1: the marker is not all ones. `NOTIFY 1/1`.
    #[error("connection not synchronized: header marker is not all ones")]
    ConnectionNotSynchronized,
    /// RFC 4271 §6.1 / RFC 8654: length < 19, > the maximum, or wrong for the type. `NOTIFY 1/2`,
    /// data = the erroneous Length field.
    #[error("bad message length {length}")]
    BadMessageLength { length: u16 },
    /// RFC 4271 §6.1: unknown type code. `NOTIFY 1/3`, data = the type octet.
    #[error("bad message type {msg_type}")]
    BadMessageType { msg_type: u8 },

    // ---- OPEN (RFC 4271 §6.2 and extensions) ----------------------------------------------
    /// RFC 4271 §6.2: version ≠ 4. `NOTIFY 2/1`, data = `00 04` (largest supported version).
    #[error("unsupported BGP version {version}")]
    UnsupportedVersion { version: u8 },
    /// RFC 7607 §2: My AS or the 4-octet AS capability is 0. `NOTIFY 2/2`.
    #[error("bad peer AS {asn}")]
    BadPeerAs { asn: u32 },
    /// RFC 6286 §2.2: BGP Identifier 0. `NOTIFY 2/3`.
    #[error("bad BGP identifier {id}")]
    BadBgpIdentifier { id: Ipv4Addr },
    /// RFC 4271 §6.2: an optional parameter other than Capabilities (type 2). `NOTIFY 2/4`.
    #[error("unsupported optional parameter type {param_type}")]
    UnsupportedOptionalParameter { param_type: u8 },
    /// RFC 4271 §6.2: hold time 1 or 2 seconds. `NOTIFY 2/6`.
    #[error("unacceptable hold time {hold_time}")]
    UnacceptableHoldTime { hold_time: u16 },
    /// Malformed optional parameters or capabilities (bgp-robustness.md §1.3). `NOTIFY 2/0`.
    #[error("malformed OPEN optional parameters: {0:?}")]
    MalformedOpen(OpenMalformed),

    // ---- UPDATE (RFC 4271 §6.3 as revised by RFC 7606) ------------------------------------
    /// RFC 7606 §3(b): Withdrawn Routes Length overruns the message. `NOTIFY 3/1`.
    #[error("withdrawn routes length overruns the UPDATE")]
    WithdrawnLengthOverrun,
    /// RFC 7606 §3(b): Total Path Attribute Length overruns the message. `NOTIFY 3/1`.
    #[error("total path attribute length overruns the UPDATE")]
    AttributeLengthOverrun,
    /// RFC 7606 §3(g): MP_REACH_NLRI or MP_UNREACH_NLRI appears more than once. `NOTIFY 3/1`.
    #[error("duplicate attribute {type_code}")]
    DuplicateMpAttribute { type_code: u8 },
    /// RFC 7606 §5.2: attributes but no reachable NLRI, and an error stronger than attribute
    /// discard (`type_code`/`subcode` describe that error). Pinned to `NOTIFY 3/1`, no data.
    #[error("UPDATE without reachable NLRI carries malformed attribute {type_code}")]
    MalformedWithoutNlri { type_code: u8, subcode: u8 },
    /// RFC 4271 §6.3: an unrecognized attribute with the Optional bit clear. `NOTIFY 3/2`,
    /// data = the attribute (flags, type, length, value).
    #[error("unrecognized well-known attribute")]
    UnrecognizedWellKnown { attr: Bytes },
    /// RFC 4760 §7 / RFC 7606 §5.3, §7.11, §7.12: bad MP_REACH_NLRI / MP_UNREACH_NLRI.
    /// Pinned to `NOTIFY 3/9`, data = the attribute.
    #[error("malformed multiprotocol attribute {type_code}: {kind:?}")]
    MalformedMpAttribute {
        type_code: u8,
        kind: MpError,
        attr: Bytes,
    },
    /// RFC 7606 §5.3: a prefix length > 32/128 or a prefix overrunning its field (including
    /// path identifiers that were not negotiated, RFC 7911). `NOTIFY 3/10`.
    #[error("invalid network field in {field:?}")]
    InvalidNetworkField { field: NlriField },

    // ---- ROUTE-REFRESH (RFC 7313 §5) ------------------------------------------------------
    /// RFC 7313 §5: ROUTE-REFRESH longer than 23 octets. `NOTIFY 7/1`, data = the whole message.
    #[error("invalid ROUTE-REFRESH length {}", message.len())]
    RouteRefreshLength { message: Bytes },
}

impl DecodeError {
    /// The NOTIFICATION to send for this error (RFC 4271 §6, bgp-robustness.md §1.1), with the
    /// Data field the RFC requires.
    pub fn notification(&self) -> Notification {
        use DecodeError::*;
        let (code, subcode, data) = match self {
            ConnectionNotSynchronized => (
                code::MESSAGE_HEADER,
                header_subcode::CONNECTION_NOT_SYNCHRONIZED,
                Bytes::new(),
            ),
            BadMessageLength { length } => (
                code::MESSAGE_HEADER,
                header_subcode::BAD_MESSAGE_LENGTH,
                Bytes::copy_from_slice(&length.to_be_bytes()),
            ),
            BadMessageType { msg_type } => (
                code::MESSAGE_HEADER,
                header_subcode::BAD_MESSAGE_TYPE,
                Bytes::copy_from_slice(&[*msg_type]),
            ),
            UnsupportedVersion { .. } => (
                code::OPEN_MESSAGE,
                open_subcode::UNSUPPORTED_VERSION,
                Bytes::from_static(&[0, 4]),
            ),
            BadPeerAs { .. } => (code::OPEN_MESSAGE, open_subcode::BAD_PEER_AS, Bytes::new()),
            BadBgpIdentifier { .. } => (
                code::OPEN_MESSAGE,
                open_subcode::BAD_BGP_IDENTIFIER,
                Bytes::new(),
            ),
            UnsupportedOptionalParameter { .. } => (
                code::OPEN_MESSAGE,
                open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                Bytes::new(),
            ),
            UnacceptableHoldTime { .. } => (
                code::OPEN_MESSAGE,
                open_subcode::UNACCEPTABLE_HOLD_TIME,
                Bytes::new(),
            ),
            MalformedOpen(_) => (code::OPEN_MESSAGE, open_subcode::UNSPECIFIC, Bytes::new()),
            WithdrawnLengthOverrun
            | AttributeLengthOverrun
            | DuplicateMpAttribute { .. }
            | MalformedWithoutNlri { .. } => (
                code::UPDATE_MESSAGE,
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                Bytes::new(),
            ),
            UnrecognizedWellKnown { attr } => (
                code::UPDATE_MESSAGE,
                update_subcode::UNRECOGNIZED_WELL_KNOWN,
                attr.clone(),
            ),
            MalformedMpAttribute { attr, .. } => (
                code::UPDATE_MESSAGE,
                update_subcode::OPTIONAL_ATTRIBUTE,
                attr.clone(),
            ),
            InvalidNetworkField { .. } => (
                code::UPDATE_MESSAGE,
                update_subcode::INVALID_NETWORK_FIELD,
                Bytes::new(),
            ),
            RouteRefreshLength { message } => (code::ROUTE_REFRESH, 1, message.clone()),
        };
        Notification {
            code,
            subcode,
            data,
        }
    }
}

impl From<&DecodeError> for Notification {
    fn from(e: &DecodeError) -> Self {
        e.notification()
    }
}

impl From<DecodeError> for Notification {
    fn from(e: DecodeError) -> Self {
        e.notification()
    }
}

/// An encode failure: the message cannot be represented on the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message would exceed the negotiated maximum (RFC 4271 §4.1, RFC 8654).
    #[error("message of {len} octets exceeds the maximum of {max}")]
    MessageTooLong { len: usize, max: usize },
    /// A capability value longer than its 1-octet length field allows (RFC 5492 §4).
    #[error("capability {code} value of {len} octets does not fit")]
    CapabilityTooLong { code: u8, len: usize },
    /// The optional parameters exceed even the RFC 9072 extended length.
    #[error("optional parameters of {len} octets do not fit")]
    OptionalParametersTooLong { len: usize },
    /// Graceful-restart time above the 12-bit maximum of 4095 s (RFC 4724 §3).
    #[error("graceful restart time {0} exceeds 4095")]
    RestartTimeTooLarge(u16),
}
