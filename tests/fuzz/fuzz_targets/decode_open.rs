//! `decode_open` on an OPEN body (no header); decoded OPENs must round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    podbgp_fuzz::open(data);
});
