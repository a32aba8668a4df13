//! The page layout (inline CSS, no scripts, no external assets) and the pieces of markup
//! the pages share. Every page is a maud template: whatever is spliced in is escaped
//! unless it is itself `Markup`, so no page can forget to escape a DICOM string.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::report::{Class, ModelRef};

/// The disclaimer every page carries.
pub const DISCLAIMER: &str = "Decision support only, not a diagnosis.";

/// A badge of a classifier class.
pub fn class_badge(class: Class) -> Markup {
    let kind = match class {
        Class::Covid19 => "bad",
        Class::OtherPneumonia => "warn",
        Class::Normal => "good",
    };
    html! { span class={ "badge " (kind) } { (class.label()) } }
}

/// Models as a table of name, version and a shortened checksum (the whole one on hover).
pub fn models_table(models: &[ModelRef]) -> Markup {
    html! {
        table {
            tr { th { "Model" } th { "Version" } th { "SHA-256" } }
            @for m in models {
                tr {
                    td { (m.name) }
                    td { (m.version) }
                    td.mono title=(m.sha256) { (m.sha256.chars().take(12).collect::<String>()) "…" }
                }
            }
        }
    }
}

/// One field of a search form: its label, query parameter, current value and placeholder.
pub struct SearchField<'a> {
    pub label: &'a str,
    pub name: &'a str,
    pub value: Option<&'a str>,
    pub placeholder: Option<&'a str>,
}

impl<'a> SearchField<'a> {
    pub fn new(
        label: &'a str,
        name: &'a str,
        value: Option<&'a str>,
        placeholder: Option<&'a str>,
    ) -> Self {
        SearchField {
            label,
            name,
            value,
            placeholder,
        }
    }
}

/// A GET search form to `action`, its fields showing the current terms, with a Search
/// button and a Clear link back to `action`.
pub fn search_form(action: &str, fields: &[SearchField]) -> Markup {
    html! {
        div.card {
            form.search method="get" action=(action) {
                @for f in fields {
                    label {
                        (f.label)
                        input name=(f.name) value=(f.value.unwrap_or("")) placeholder=[f.placeholder];
                    }
                }
                button type="submit" { "Search" } " "
                a.button href=(action) { "Clear" }
            }
        }
    }
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
pub fn layout(title: &str, nav: Nav, body: Markup) -> String {
    let link = |href: &str, label: &str, n: Nav| html! { a href=(href) class=[(n == nav).then_some("on")] { (label) } };
    let page = html! {
        (DOCTYPE) "\n"
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · lungwatch" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a.brand href="/" { "lungwatch" small { "chest CT analysis" } }
                    nav {
                        (link("/", "Status", Nav::Status))
                        (link("/studies", "Studies", Nav::Studies))
                    }
                }
                div.disclaimer role="note" {
                    strong { (DISCLAIMER) }
                    " Results are produced by software models and must be reviewed by a qualified radiologist."
                }
                main { (body) }
                footer {
                    "lungwatch " (env!("CARGO_PKG_VERSION")) " · " (DISCLAIMER) " · "
                    a href="/api/status" { "JSON API" } " · "
                    a href="/metrics" { "metrics" }
                }
            }
        }
        "\n"
    };
    page.into_string()
}

/// A horizontal bar for a 0..1 value, with a class for its colour.
pub fn bar(value: f64, class: &str) -> Markup {
    let w = (value.clamp(0.0, 1.0) * 100.0 * 10.0).round() / 10.0;
    html! {
        div.bar role="img" aria-label={ (w) " %" } {
            span class=(class) style={ "width:" (w) "%" } {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_escapes_its_title_and_carries_the_disclaimer() {
        let page = layout("<x>", Nav::Status, html! { p { "body" } });
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(page.contains(DISCLAIMER));
        assert!(page.contains("<title>&lt;x&gt; · lungwatch</title>"));
        assert!(
            page.contains("<a href=\"/\" class=\"on\">Status</a><a href=\"/studies\">Studies</a>")
        );
        assert!(page.contains("<main><p>body</p></main>"));
    }

    #[test]
    fn badges_and_bars() {
        assert_eq!(
            class_badge(Class::Covid19).into_string(),
            format!(
                "<span class=\"badge bad\">{}</span>",
                Class::Covid19.label()
            )
        );
        assert_eq!(
            bar(0.25, "normal").into_string(),
            "<div class=\"bar\" role=\"img\" aria-label=\"25 %\"><span class=\"normal\" style=\"width:25%\"></span></div>"
        );
    }
}
