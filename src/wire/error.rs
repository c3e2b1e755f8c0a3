// TEMP STUB (not committed) — replaced by the wire branch.
use super::*;
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decode error")]
pub struct DecodeError;
impl DecodeError {
    pub fn notification(&self) -> Notification {
        Notification {
            code: 1,
            subcode: 1,
            data: bytes::Bytes::new(),
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("encode error")]
pub struct EncodeError;
