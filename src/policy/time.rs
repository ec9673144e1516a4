//! Kubernetes times (RFC 3339, second precision) and Go's duration syntax.

use jiff::Timestamp;

/// Parses an RFC 3339 time as the API server writes it (`metav1.Time`), with any offset.
pub fn parse(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// Formats like `metav1.Time`: UTC, whole seconds, `Z`.
pub fn format(ts: Timestamp) -> String {
    Timestamp::from_second(ts.as_second())
        .unwrap_or(ts)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `end - start` in Go's `time.Duration.String()` syntax (`1h2m3s`, `45s`, `0s`, `1.5s`, `-3s`).
pub fn go_duration(start: Timestamp, end: Timestamp) -> String {
    let nanos = end.as_nanosecond() - start.as_nanosecond();
    // Go's Duration is an int64 of nanoseconds; saturate the way it does.
    let nanos = i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX });
    format_go_duration(nanos)
}

/// Go's `time.Duration(nanos).String()`.
pub fn format_go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        // Below a second Go switches to the largest unit that keeps an integer part.
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (int, frac) = split_frac(u, prec);
        out.push_str(&int.to_string());
        out.push_str(&frac);
        out.push_str(unit);
    } else {
        let (secs, frac) = split_frac(u, 9);
        u = secs;
        let s = u % 60;
        u /= 60;
        if u > 0 {
            let m = u % 60;
            u /= 60;
            if u > 0 {
                out.push_str(&format!("{u}h"));
            }
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&format!("{s}{frac}s"));
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// Parses Go's duration syntax (`time.ParseDuration`: `4s`, `1m30.5s`, `-2h`, `250ms`, `0`)
/// into nanoseconds; `None` for anything else.
pub fn parse_go_duration(text: &str) -> Option<i128> {
    let (neg, mut rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        rest = &rest[digits..];
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut part = int.checked_mul(scale)?;
        let mut unit = scale;
        for d in frac.bytes().take(30) {
            unit /= 10;
            part += i128::from(d - b'0') * unit;
        }
        total = total.checked_add(part)?;
    }
    Some(if neg { -total } else { total })
}

/// Whether a duration a writer sent agrees with the two stored times at their precision. Each
/// stored time is its real time cut to the second, so the real elapsed time lies strictly within
/// 1 s of `end - start`; a writer that rounds it to the second (kubernaut's controller does, from
/// a clock with sub-second precision) lands at most 1 s away.
pub fn agrees_with_times(sent_nanos: i128, start: Timestamp, end: Timestamp) -> bool {
    let computed = end.as_nanosecond() - start.as_nanosecond();
    (sent_nanos - computed).abs() <= 1_000_000_000
}

/// Splits `v` into `v / 10^prec` and the fraction `.ddd` without trailing zeros ("" if zero).
fn split_frac(v: u64, prec: u32) -> (u64, String) {
    let scale = 10u64.pow(prec);
    let frac = v % scale;
    if frac == 0 {
        return (v / scale, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (v / scale, format!(".{}", digits.trim_end_matches('0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_go_reads_them() {
        let s = 1_000_000_000i128;
        for (text, nanos) in [
            ("0", 0),
            ("0s", 0),
            ("4s", 4 * s),
            ("1m30.5s", 90 * s + s / 2),
            ("1h2m3s", 3723 * s),
            ("-3s", -3 * s),
            ("250ms", s / 4),
            ("1.5µs", 1_500),
            (".5s", s / 2),
            ("1h0m0s", 3600 * s),
        ] {
            assert_eq!(parse_go_duration(text), Some(nanos), "{text}");
        }
        for text in ["", "s", "4", "4x", "1..2s", "-", "4 s", "1d"] {
            assert_eq!(parse_go_duration(text), None, "{text}");
        }
        // What we print, we read back.
        for nanos in [
            0i64,
            1,
            999,
            1_500_000,
            59_999_999_999,
            3_723_000_000_000,
            -42_000_000_000,
        ] {
            assert_eq!(
                parse_go_duration(&format_go_duration(nanos)),
                Some(i128::from(nanos))
            );
        }
    }

    #[test]
    fn a_rounded_duration_agrees_with_whole_second_times() {
        let start: Timestamp = "2026-03-01T12:00:00Z".parse().expect("time");
        let end: Timestamp = "2026-03-01T12:00:03Z".parse().expect("time");
        let s = 1_000_000_000i128;
        // Stored 3 s apart: a controller whose clock read 3.6 s rounds to 4 s.
        for sent in [2 * s, 3 * s, 4 * s, 3 * s + s / 2] {
            assert!(agrees_with_times(sent, start, end), "{sent}");
        }
        for sent in [5 * s, s, -3 * s, 4 * s + 1] {
            assert!(!agrees_with_times(sent, start, end), "{sent}");
        }
    }

    fn ts(s: &str) -> Timestamp {
        parse(s).expect("valid time")
    }

    #[test]
    fn go_duration_matches_go() {
        // Expected strings are what Go's time.Duration.String() prints for the same values.
        let cases: [(i64, &str); 14] = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (45_000_000_000, "45s"),
            (60_000_000_000, "1m0s"),
            (210_000_000_000, "3m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_000, "1h2m3s"),
            (-1_000_000_000, "-1s"),
            (100_000_000_000_000, "27h46m40s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format_go_duration(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn duration_between_times() {
        let start = ts("2026-01-01T10:00:00Z");
        assert_eq!(go_duration(start, ts("2026-01-01T10:03:30Z")), "3m30s");
        assert_eq!(go_duration(start, ts("2026-01-01T11:02:03Z")), "1h2m3s");
        assert_eq!(go_duration(start, start), "0s");
        // Offsets are honoured.
        assert_eq!(go_duration(start, ts("2026-01-01T12:00:45+02:00")), "45s");
    }

    #[test]
    fn format_is_metav1_time() {
        assert_eq!(
            format(ts("2026-01-01T10:00:00.987Z")),
            "2026-01-01T10:00:00Z"
        );
        assert_eq!(
            format(ts("2026-01-01T12:00:00+02:00")),
            "2026-01-01T10:00:00Z"
        );
        assert!(parse("yesterday").is_none());
    }
}
