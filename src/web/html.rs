//! HTML escaping, the page layout (inline CSS, no scripts, no external assets) and the
//! small formatters the pages share.

use std::fmt::Write;

use crate::report::Class;

/// The disclaimer every page carries.
pub const DISCLAIMER: &str = "Decision support only, not a diagnosis.";

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an optional DICOM string, showing an em dash when absent.
pub fn esc_opt(s: Option<&str>) -> String {
    match s {
        Some(v) if !v.trim().is_empty() => esc(v),
        _ => "—".to_string(),
    }
}

/// A DICOM person name (`Family^Given^Middle^Prefix^Suffix`) in reading order, unescaped.
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

/// A 0..1 ratio as a percentage with one decimal.
/// A ratio as a percentage with one decimal. A small but nonzero ratio reads "<0.1 %",
/// not "0.0 %", so it never contradicts a nonzero zone score beside it.
pub fn pct(ratio: f64) -> String {
    if ratio > 0.0 && ratio < 0.0005 {
        "&lt;0.1 %".to_string()
    } else {
        format!("{:.1} %", ratio * 100.0)
    }
}

/// A badge of a classifier class.
pub fn class_badge(class: Class) -> String {
    let kind = match class {
        Class::Covid19 => "bad",
        Class::OtherPneumonia => "warn",
        Class::Normal => "good",
    };
    format!("<span class=\"badge {kind}\">{}</span>", esc(class.label()))
}

/// Which navigation entry is highlighted.
#[derive(Clone, Copy, PartialEq)]
pub enum Nav {
    Status,
    Studies,
    None,
}

const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif;color:#1f2933;background:#f4f6f8}
a{color:#1d5fa8;text-decoration:none}a:hover{text-decoration:underline}
header{background:#16324f;color:#fff;padding:0 24px;display:flex;align-items:center;gap:28px;height:52px}
header .brand{font-weight:650;font-size:17px;letter-spacing:.2px;color:#fff}
header .brand small{font-weight:400;opacity:.7;margin-left:6px;font-size:12px}
header nav a{color:#c9d8e8;margin-right:18px;padding:15px 0;border-bottom:3px solid transparent}
header nav a.on{color:#fff;border-bottom-color:#5fa8e8}
header nav a:hover{color:#fff;text-decoration:none}
.disclaimer{background:#fff8e1;border-bottom:1px solid #f0d98c;color:#6b5200;padding:6px 24px;font-size:13px}
main{max-width:1180px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;font-weight:600;margin:4px 0 16px}
h2{font-size:16px;font-weight:600;margin:0 0 10px;color:#243b53}
h3{font-size:14px;font-weight:600;margin:14px 0 6px;color:#334e68}
.card{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 18px;margin-bottom:16px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(250px,1fr));gap:16px;margin-bottom:16px}
.grid .card{margin-bottom:0}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0;align-items:baseline}
.kv dt{color:#627d98}.kv dd{margin:0;font-variant-numeric:tabular-nums}
.big{font-size:26px;font-weight:600;font-variant-numeric:tabular-nums}
.muted{color:#829ab1}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th{text-align:left;font-weight:600;color:#486581;border-bottom:2px solid #dde3ea;padding:6px 10px;font-size:13px;white-space:nowrap}
td.rowhead{font-weight:600;color:#486581}
.nowrap{white-space:nowrap}
td{border-bottom:1px solid #eef1f4;padding:6px 10px;vertical-align:top}
tr:last-child td{border-bottom:none}
td.num,th.num{text-align:right}
.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.good{background:#e3f6ea;color:#1e6b3a}.badge.warn{background:#fff1d6;color:#8a5a00}
.badge.bad{background:#fde4e4;color:#a12828}.badge.muted{background:#eef1f4;color:#52606d}
.banner{border-radius:8px;padding:12px 16px;margin-bottom:16px;font-weight:600}
.banner.bad{background:#fde4e4;color:#8b1d1d;border:1px solid #f3b4b4}
.banner.warn{background:#fff1d6;color:#7a4f00;border:1px solid #f0cf8a}
.bar{background:#eef1f4;border-radius:4px;height:14px;width:100%;min-width:120px;overflow:hidden}
.bar span{display:block;height:100%;background:#5b8fc7}
.bar span.covid19{background:#d05c5c}.bar span.other_pneumonia{background:#e0a33a}.bar span.normal{background:#4f9d69}
form.search{display:flex;gap:12px;flex-wrap:wrap;align-items:flex-end}
form.search label{display:flex;flex-direction:column;font-size:12px;color:#627d98;gap:3px}
input{font:inherit;padding:6px 8px;border:1px solid #bcccdc;border-radius:6px;min-width:170px;background:#fff}
button{font:inherit;padding:7px 16px;border:0;border-radius:6px;background:#1d5fa8;color:#fff;cursor:pointer}
.previews{display:flex;flex-wrap:wrap;gap:12px}
.previews figure{margin:0;background:#0b1620;border-radius:6px;padding:6px}
.previews img{display:block;height:220px;width:auto;image-rendering:auto}
.previews figcaption{color:#c9d8e8;font-size:12px;padding-top:4px;text-align:center}
.zones td{text-align:center}
footer{max-width:1180px;margin:0 auto;padding:0 24px 30px;color:#829ab1;font-size:12px}
.chart{width:100%;height:auto;display:block}
.health{display:flex;align-items:center;gap:10px;font-size:22px;font-weight:650;margin:2px 0 10px}
.health .dot{width:14px;height:14px;border-radius:50%;display:inline-block}
.health.ok{color:#1e6b3a}.health.ok .dot{background:#2f9e5b;box-shadow:0 0 0 4px #d7f0e0}
.health.degraded{color:#a12828}.health.degraded .dot{background:#d64545;box-shadow:0 0 0 4px #fbdcdc}
.health-problems{margin:0 0 10px;padding-left:18px;color:#8b1d1d}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin:4px 0 14px}
.tile{flex:1 1 150px;background:#f7f9fb;border:1px solid #e4e9ef;border-radius:8px;padding:10px 14px}
.tile .label{font-size:12px;color:#627d98}.tile .value{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.tile .sub{font-size:12px;color:#829ab1}
.legend{display:flex;gap:18px;font-size:12px;color:#486581;margin:6px 0 0}
.legend i{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:6px}
a.button{display:inline-block;padding:7px 14px;border-radius:6px;border:1px solid #bcccdc;color:#334e68;background:#fff}
a.button:hover{text-decoration:none;background:#f0f4f8}
.empty{color:#829ab1;font-style:italic}
"#;

/// Wraps a page body in the common layout: header, navigation, disclaimer, footer.
pub fn layout(title: &str, nav: Nav, body: &str) -> String {
    let link = |href: &str, label: &str, n: Nav| {
        format!(
            "<a href=\"{href}\"{}>{label}</a>",
            if n == nav { " class=\"on\"" } else { "" }
        )
    };
    let mut out = String::with_capacity(body.len() + 6000);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · lungwatch</title><style>{CSS}</style></head><body>\
         <header><a class=\"brand\" href=\"/\">lungwatch<small>chest CT analysis</small></a>\
         <nav>{}{}</nav></header>\
         <div class=\"disclaimer\" role=\"note\"><strong>{DISCLAIMER}</strong> \
         Results are produced by software models and must be reviewed by a qualified radiologist.</div>\
         <main>{body}</main>\
         <footer>lungwatch {} · {DISCLAIMER} · <a href=\"/api/status\">JSON API</a> · \
         <a href=\"/metrics\">metrics</a></footer></body></html>\n",
        esc(title),
        link("/", "Status", Nav::Status),
        link("/studies", "Studies", Nav::Studies),
        env!("CARGO_PKG_VERSION"),
    );
    out
}

/// A horizontal bar for a 0..1 value, with a class for its colour.
pub fn bar(value: f64, class: &str) -> String {
    let w = (value.clamp(0.0, 1.0) * 100.0 * 10.0).round() / 10.0;
    format!(
        "<div class=\"bar\" role=\"img\" aria-label=\"{w} %\"><span class=\"{}\" style=\"width:{w}%\"></span></div>",
        esc(class)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc_opt(None), "—");
        assert_eq!(esc_opt(Some("<b>")), "&lt;b&gt;");
    }

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
        assert_eq!(pct(0.0003), "&lt;0.1 %");
        assert_eq!(pct(0.0), "0.0 %");
        assert!(layout("<x>", Nav::Status, "").contains(DISCLAIMER));
        assert!(layout("<x>", Nav::Status, "").contains("&lt;x&gt;"));
    }
}
