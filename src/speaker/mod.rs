//! The speaker: sessions + RIB composed into one deterministic value (filled in next).
pub mod query;
pub use query::*;
