//! Transport protection of a session: the TCP MD5 signature key (RFC 2385) and what to do when
//! a configured key cannot be read.
//!
//! A key never appears in logs, `Debug` output or rendered configuration, and its bytes are
//! overwritten when the last copy is dropped. GTSM (RFC 5082) needs no secret and is a plain
//! [`PeerConfig::ttl_security`](super::PeerConfig::ttl_security) hop count.

use std::fmt;

/// Longest key Linux accepts (`TCP_MD5SIG_MAXKEYLEN` in `include/uapi/linux/tcp.h`).
pub const MD5_MAX_KEY_LEN: usize = 80;

/// A TCP MD5 signature key: 1 to [`MD5_MAX_KEY_LEN`] octets, used as given (no trimming, no
/// encoding: the bytes of the password or of the Secret's value).
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Key(Vec<u8>);

impl Md5Key {
    /// Checks the length; the value is never part of the error.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Md5Key, KeyProblem> {
        let mut bytes = bytes.into();
        let problem = match bytes.len() {
            0 => KeyProblem::Empty,
            n if n > MD5_MAX_KEY_LEN => KeyProblem::TooLong(n),
            _ => return Ok(Md5Key(bytes)),
        };
        wipe(&mut bytes);
        Err(problem)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Md5Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Md5Key(<redacted>)")
    }
}

impl Drop for Md5Key {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites `bytes` with zeros in a way the optimiser may not remove.
pub(crate) fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to one byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Why a password cannot be used as a TCP MD5 key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("the password is empty")]
    Empty,
    #[error("the password is {0} bytes long; TCP MD5 keys are at most 80 bytes")]
    TooLong(usize),
    #[error("the Secret does not exist")]
    NoSecret,
    #[error("the Secret has no such key")]
    NoKey,
}

/// A password that is configured by reference (a Kubernetes Secret) but cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("password from Secret {secret:?} key {key:?}: {problem}")]
pub struct UnavailableKey {
    pub secret: String,
    pub key: String,
    pub problem: KeyProblem,
}

/// How the session's TCP connections are authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum TcpAuth {
    /// No TCP option.
    #[default]
    None,
    /// Every segment is signed and checked with this key (RFC 2385). Set on the listening
    /// socket for the peer's address and on each outgoing socket before `connect`.
    Md5(Md5Key),
    /// A key is configured but cannot be read: the session stays down (no connection is made
    /// or accepted) until it can. Never falls back to an unsigned session.
    Unavailable(UnavailableKey),
}

impl TcpAuth {
    /// The MD5 key, when there is one to use.
    pub fn md5(&self) -> Option<&Md5Key> {
        match self {
            TcpAuth::Md5(k) => Some(k),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_length_is_checked_and_never_printed() {
        assert_eq!(Md5Key::new(Vec::new()), Err(KeyProblem::Empty));
        assert_eq!(Md5Key::new(vec![b'x'; 81]), Err(KeyProblem::TooLong(81)));
        let k = Md5Key::new("hunter2").unwrap();
        assert_eq!(k.as_bytes(), b"hunter2");
        assert_eq!(Md5Key::new(vec![7u8; 80]).unwrap().as_bytes().len(), 80);
        let shown = format!("{:?} {:?}", k, TcpAuth::Md5(k.clone()));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn wipe_zeroes() {
        let mut v = b"secret".to_vec();
        wipe(&mut v);
        assert_eq!(v, vec![0; 6]);
    }
}
