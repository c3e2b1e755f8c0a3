//! BGP-4 wire codec (sans-IO): framing, decoding and encoding of every message podbgp speaks.
//!
//! RFCs: 4271 (BGP-4), 4760 (MP-BGP), 6793 (4-octet AS), 2918/7313 (route refresh),
//! 4724 (graceful restart capability, End-of-RIB), 8538 (N bit), 8654 (extended message),
//! 7911 (ADD-PATH), 1997/4360/5701/8092 (communities), 4456 (ORIGINATOR_ID/CLUSTER_LIST),
//! 7606 (revised error handling), 7607 (AS 0), 9774 (AS_SET deprecation), 9072 (extended
//! optional parameters length), 2545/8950 (IPv6 next hops), 9234 (OTC, validated only).
//!
//! Files: `decode.rs` (framing, OPEN, NOTIFICATION, ROUTE-REFRESH, dispatch), `attrs.rs`
//! (UPDATE body, path attributes, RFC 7606 classification, RFC 6793 merge), `nlri.rs` (prefix
//! fields), `encode.rs` (all encoders, UPDATE packing), `error.rs` (errors → NOTIFICATION),
//! `types.rs` (the decoded data types).
//!
//! Error-handling pins follow `shared/reference/bgp-robustness.md` §1; the golden vectors in
//! `tests/wire_vectors.rs` were captured from FRR 8.4.4, and the encoder reproduces FRR's
//! attribute order and Extended Length choices byte for byte.
//!
//! Invariants:
//! * No function in this module panics on any input byte sequence (fuzzed: `tests/fuzz`).
//! * Every decode error maps mechanically to a NOTIFICATION (`DecodeError::notification`);
//!   attribute errors that RFC 7606 downgrades are reported inside `Update`, not as errors.
//! * The negotiated [`SessionCodec`] is always passed explicitly; there is no global state.

mod types;
pub use types::*;

// The codec proper (decode, encode, errors, UPDATE packing) lives in the files below.
mod error;
pub use error::*;
mod decode;
pub use decode::*;
mod encode;
pub use encode::*;
mod attrs;
pub use attrs::decode_update;
mod nlri;

/// Length of the fixed header: marker (16) + length (2) + type (1).
pub const HEADER_LEN: usize = 19;
/// Maximum message length without RFC 8654.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Maximum message length with RFC 8654 extended messages.
pub const MAX_EXT_MESSAGE_LEN: usize = 65535;
