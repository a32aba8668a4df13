//! The text formatters the pages share: dates, durations, sizes, percentages, person
//! names and masked IDs. Plain text out; the templates escape it.

/// A DICOM person name (`Family^Given^Middle^Prefix^Suffix`) in reading order.
pub fn person_name(pn: &str) -> String {
    let parts: Vec<&str> = pn.split('=').next().unwrap_or("").split('^').collect();
    let family = parts.first().copied().unwrap_or("").trim();
    let given = parts.get(1).copied().unwrap_or("").trim();
    match (family.is_empty(), given.is_empty()) {
        (false, false) => format!("{family}, {given}"),
        (false, true) => family.to_string(),
        (true, false) => given.to_string(),
        (true, true) => pn.trim().to_string(),
    }
}

/// A patient ID masked for list pages: its first three characters, then `***`.
pub fn mask_id(id: &str) -> String {
    let head: String = id.chars().take(3).collect();
    format!("{head}***")
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// A DICOM DA (`YYYYMMDD`, also tolerating `YYYY.MM.DD` and `YYYY-MM-DD`) as days since
/// the epoch; None when it is not a valid date.
pub fn dicom_date_days(da: &str) -> Option<i64> {
    let digits: String = da.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() != 8 {
        return None;
    }
    let y: i64 = digits[0..4].parse().ok()?;
    let m: i64 = digits[4..6].parse().ok()?;
    let d: i64 = digits[6..8].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    (civil_from_days(days) == (y, m, d)).then_some(days)
}

/// `YYYY-MM-DD` for a DICOM date; the raw value when it does not parse, "—" when absent.
pub fn fmt_dicom_date(da: Option<&str>) -> String {
    match da {
        None => "—".into(),
        Some(d) => match dicom_date_days(d) {
            Some(days) => fmt_days(days),
            None => d.to_string(),
        },
    }
}

pub fn fmt_days(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A Unix timestamp as `YYYY-MM-DD HH:MM UTC`.
pub fn fmt_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    format!(
        "{} {:02}:{:02} UTC",
        fmt_days(days),
        rem / 3600,
        rem % 3600 / 60
    )
}

pub fn fmt_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {} s", secs % 60)
    } else {
        format!("{secs} s")
    }
}

pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A 0..1 ratio as a percentage with one decimal. A small but nonzero ratio reads "<0.1 %",
/// not "0.0 %", so it never contradicts a nonzero zone score beside it.
pub fn pct(ratio: f64) -> String {
    if ratio > 0.0 && ratio < 0.0005 {
        "<0.1 %".to_string()
    } else {
        format!("{:.1} %", ratio * 100.0)
    }
}

/// An optional DICOM string as shown: an em dash when absent or blank.
pub fn or_dash(s: Option<&str>) -> &str {
    match s {
        Some(v) if !v.trim().is_empty() => v,
        _ => "—",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_reject_nonsense() {
        assert_eq!(dicom_date_days("19700101"), Some(0));
        assert_eq!(fmt_dicom_date(Some("20200314")), "2020-03-14");
        assert_eq!(fmt_dicom_date(Some("2020.03.14")), "2020-03-14");
        assert_eq!(fmt_dicom_date(Some("20200230")), "20200230");
        assert_eq!(dicom_date_days("2020"), None);
        for days in [-1000, 0, 18335, 20000, 50000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(fmt_time(86400 + 3600 + 60), "1970-01-02 01:01 UTC");
    }

    #[test]
    fn names_masks_and_units() {
        assert_eq!(person_name("DOE^JOHN^^^"), "DOE, JOHN");
        assert_eq!(person_name("DOE"), "DOE");
        assert_eq!(mask_id("PAT12345"), "PAT***");
        assert_eq!(mask_id("Ü1"), "Ü1***");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_duration(3725), "1 h 2 min");
        assert_eq!(pct(0.1234), "12.3 %");
        assert_eq!(pct(0.0003), "<0.1 %");
        assert_eq!(pct(0.0), "0.0 %");
        assert_eq!(or_dash(None), "—");
        assert_eq!(or_dash(Some(" ")), "—");
        assert_eq!(or_dash(Some("<b>")), "<b>");
    }
}
