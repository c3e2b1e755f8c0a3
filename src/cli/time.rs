//! Time formatting for the CLI: BIRD's "since" column and UTC timestamps, without a date crate.

/// BIRD's protocol "since" column with its default `timeformat protocol iso short`: the local
/// time of day (`%T`) when the change is less than 20 hours old, else the local date (`%F`).
/// This is what `calicoctl node status` prints in SINCE (`17:38:47`, `2016-11-21`).
///
/// `utc_offset` is the local zone's offset from UTC in seconds at `since_unix`.
pub fn format_bird_since(since_unix: i64, now_unix: i64, utc_offset: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(since_unix + utc_offset);
    if now_unix - since_unix < 20 * 3600 {
        format!("{h:02}:{mi:02}:{s:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02}")
    }
}

/// UTC RFC 3339 with milliseconds, e.g. `2023-11-14T22:13:20.123Z`.
pub fn format_utc_millis(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// UTC RFC 3339 in whole seconds, e.g. `2023-11-14T22:13:20Z`.
pub fn format_utc(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Breaks Unix seconds into (year, month, day, hour, minute, second), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
pub fn civil(unix: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs / 60 % 60) as u32,
        (secs % 60) as u32,
    )
}

/// The local zone's UTC offset in seconds at `at_unix` (0 if the zone cannot be read).
pub fn local_utc_offset(at_unix: i64) -> i64 {
    // `time_t` is 64-bit on the Linux targets podbgp supports.
    let t = at_unix as libc::time_t;
    // SAFETY: `localtime_r` only writes into the `tm` we pass; an all-zero `tm` is a valid
    // value of this plain C struct (its `tm_zone` pointer is only ever read by us as null).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() { 0 } else { tm.tm_gmtoff }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(-1), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn bird_since() {
        let since = 1_700_000_000; // 2023-11-14 22:13:20 UTC
        assert_eq!(format_bird_since(since, since + 5, 0), "22:13:20");
        assert_eq!(
            format_bird_since(since, since + 20 * 3600 - 1, 0),
            "22:13:20"
        );
        assert_eq!(format_bird_since(since, since + 20 * 3600, 0), "2023-11-14");
        // UTC+2: the local clock already shows the next day.
        assert_eq!(format_bird_since(since, since + 60, 7200), "00:13:20");
        assert_eq!(format_bird_since(since, since + 86_400, 7200), "2023-11-15");
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(
            format_utc_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_utc_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
