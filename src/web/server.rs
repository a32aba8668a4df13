//! Request threads, routing, authentication check and response headers.

use std::net::{IpAddr, Ipv4Addr};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::auth::{Identity, Outcome};
use super::url::Target;
use super::{
    WebState, artifacts, audit, audit_page, auth, html, metrics, patients, status, studies,
};
use crate::config::{Role, WebConfig};
use crate::db::{AuditEvent, AuditRecord, ReadQueries, Reader};

/// How often an idle request thread checks whether it should stop.
const POLL: Duration = Duration::from_millis(200);

/// Pages allow no scripts, no frames and no outside resources at all: even if escaping
/// were ever missed, an injected script would not run.
const CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sent on HTTPS responses: browsers that have seen the page over HTTPS refuse plain HTTP
/// to it for a year, so a downgrade on the LAN cannot expose passwords.
const HSTS: &str = "max-age=31536000";

pub(super) struct Shared {
    pub server: tiny_http::Server,
    pub config: WebConfig,
    pub db_path: PathBuf,
    pub data_dir: PathBuf,
    pub state: Arc<WebState>,
    pub stop: Arc<AtomicBool>,
    pub verifier: auth::Verifier,
    pub audit: audit::AuditLog,
}

/// What a page handler may use besides the database.
pub struct Ctx<'a> {
    pub config: &'a WebConfig,
    pub state: &'a WebState,
    pub data_dir: &'a Path,
}

pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// The patient this reply is about, for the audit trail, where the page knows it.
    pub patient: Option<String>,
}

impl Reply {
    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
            patient: None,
        }
    }
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::bytes(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }
    pub fn html(body: String) -> Reply {
        Reply::bytes(200, "text/html; charset=utf-8", body.into_bytes())
    }
    pub fn json<T: Serialize>(value: &T) -> Reply {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Reply::bytes(200, "application/json", body),
            Err(e) => Reply::server_error(&e.to_string()),
        }
    }
    pub fn not_found(what: &str) -> Reply {
        Reply::text(404, format!("not found: {what}\n"))
    }
    pub fn forbidden() -> Reply {
        Reply::text(403, "forbidden\n")
    }
    pub fn server_error(detail: &str) -> Reply {
        log::error!("web: {detail}");
        Reply::text(500, "internal error; see the lungwatch log\n")
    }
    /// Names the patient this reply concerns, for the audit trail.
    pub fn about(mut self, patient: Option<String>) -> Reply {
        self.patient = patient;
        self
    }
    fn page_not_found(what: &str) -> Reply {
        let body = maud::html! {
            h1 { "Not found" }
            div.card { p { (what) } p { a href="/studies" { "All studies" } } }
        };
        let mut r = Reply::html(html::layout("Not found", html::Nav::None, body));
        r.status = 404;
        r
    }
    fn json_not_found(what: &str) -> Reply {
        let mut r = Reply::json(&serde_json::json!({ "error": what }));
        r.status = 404;
        r
    }
}

/// The loop of one request thread. Each thread owns one SQLite connection, opened on first
/// use and reopened after an error.
pub(super) fn serve_requests(shared: &Shared) {
    let mut db: Option<Reader> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let request = match shared.server.recv_timeout(POLL) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("web: cannot accept a request: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let reply =
            std::panic::catch_unwind(AssertUnwindSafe(|| handle(shared, &mut db, &request)))
                .unwrap_or_else(|_| {
                    db = None;
                    Reply::server_error(&format!("request {} panicked", request.url()))
                });
        log::debug!(
            "web: {} {} -> {}",
            request.method(),
            request.url(),
            reply.status
        );
        respond(request, reply);
    }
}

fn respond(request: tiny_http::Request, reply: Reply) {
    let secure = request.secure();
    let header = |k: &str, v: &str| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok();
    let mut response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
    let mut headers = vec![
        header("Content-Type", reply.content_type),
        header("X-Content-Type-Options", "nosniff"),
        header("Referrer-Policy", "no-referrer"),
        header("Content-Security-Policy", CSP),
    ];
    if !reply.headers.iter().any(|(k, _)| k == "Cache-Control") {
        headers.push(header("Cache-Control", "no-store"));
    }
    if secure {
        headers.push(header("Strict-Transport-Security", HSTS));
    }
    headers.extend(reply.headers.iter().map(|(k, v)| header(k, v)));
    for h in headers.into_iter().flatten() {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        log::debug!("web: client went away: {e}");
    }
}

fn open_db<'a>(slot: &'a mut Option<Reader>, path: &Path) -> Result<&'a Reader, String> {
    if slot.is_none() {
        *slot =
            Some(Reader::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?);
    }
    Ok(slot.as_ref().expect("just opened"))
}

fn handle(shared: &Shared, slot: &mut Option<Reader>, request: &tiny_http::Request) -> Reply {
    use tiny_http::Method;
    if !matches!(request.method(), Method::Get | Method::Head) {
        let mut r = Reply::text(405, "only GET and HEAD\n");
        r.headers.push(("Allow".into(), "GET, HEAD".into()));
        return r;
    }
    let target = Target::parse(request.url());
    let seg: Vec<&str> = target.segments.iter().map(String::as_str).collect();
    let ctx = Ctx {
        config: &shared.config,
        state: &shared.state,
        data_dir: &shared.data_dir,
    };
    // /healthz is for monitors and load balancers: open, and it reveals nothing clinical.
    if seg == ["healthz"] {
        return healthz(shared, slot, &ctx);
    }
    let client = request
        .remote_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let audit = |user: Option<String>, status: u16, patient: Option<String>, event| {
        shared.audit.record(AuditRecord {
            at: crate::db::now_secs(),
            user,
            client: client.to_string(),
            method: request.method().as_str().to_string(),
            path: request.url().to_string(),
            status,
            patient_id: patient,
            event,
        })
    };
    let identity = match authenticate(shared, request, client, &audit) {
        Ok(identity) => identity,
        Err(refused) => return refused,
    };
    let user = identity.as_ref().map(|i| i.user.clone());
    // The audit trail is for admins. Without authentication configured (possible on
    // loopback only) everyone on this machine is, as they could read the database file.
    let reply = if seg == ["audit"]
        && identity
            .as_ref()
            .is_some_and(|i: &Identity| i.role != Role::Admin)
    {
        Reply::forbidden()
    } else {
        page(shared, slot, &ctx, &seg, &target)
    };
    if reads_patient_data(&seg) {
        let patient = reply.patient.clone().or_else(|| match seg.as_slice() {
            ["studies"] | ["api", "studies"] => target.param("patient_id"),
            ["audit"] => target.param("patient_id"),
            _ => None,
        });
        audit(user, reply.status, patient, AuditEvent::Read);
    }
    reply
}

/// `/healthz`: 200 "ok", or 503 with every problem, the database's included.
fn healthz(shared: &Shared, slot: &mut Option<Reader>, ctx: &Ctx) -> Reply {
    let h = status::health(ctx);
    let db_problem = open_db(slot, &shared.db_path)
        .and_then(|db| db.recent_events(1).map(|_| ()).map_err(|e| e.to_string()))
        .err();
    if db_problem.is_some() {
        *slot = None;
    }
    let mut problems = h.problems;
    problems.extend(db_problem.map(|e| format!("database unavailable: {e}")));
    if problems.is_empty() {
        Reply::text(200, "ok\n")
    } else {
        Reply::text(503, format!("degraded: {}\n", problems.join("; ")))
    }
}

/// The lock-out of `client`, then the credentials: the caller's identity (None where no
/// authentication is configured), or the 429 or 401 reply, its audit record written.
fn authenticate(
    shared: &Shared,
    request: &tiny_http::Request,
    client: IpAddr,
    audit: &impl Fn(Option<String>, u16, Option<String>, AuditEvent),
) -> Result<Option<Identity>, Reply> {
    let logins = &shared.state.logins;
    if shared.config.auth_configured()
        && let Some(wait) = logins.locked(client, Instant::now())
    {
        audit(None, 429, None, AuditEvent::Throttled);
        let mut r = Reply::text(429, "too many failed logins from this address; try later\n");
        r.headers
            .push(("Retry-After".into(), wait.as_secs().max(1).to_string()));
        return Err(r);
    }
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    match shared
        .verifier
        .check(&shared.config, authorization.as_deref())
    {
        Outcome::Open => Ok(None),
        Outcome::Granted(identity) => Ok(Some(identity)),
        outcome => {
            if let Outcome::Denied { user } = outcome {
                if let Some(d) = logins.failed(client, Instant::now()) {
                    log::warn!(
                        "web: {client} locked out for {} s after repeated failed logins",
                        d.as_secs()
                    );
                }
                audit(user, 401, None, AuditEvent::LoginFailed);
            }
            let mut r = Reply::text(401, "authentication required\n");
            r.headers.push((
                "WWW-Authenticate".into(),
                "Basic realm=\"lungwatch\", charset=\"UTF-8\"".into(),
            ));
            Err(r)
        }
    }
}

/// The page or API reply of a route, on this thread's database connection (opened again
/// after a failure).
fn page(
    shared: &Shared,
    slot: &mut Option<Reader>,
    ctx: &Ctx,
    seg: &[&str],
    target: &Target,
) -> Reply {
    match open_db(slot, &shared.db_path) {
        Ok(db) => {
            let reply = route(ctx, db, seg, target);
            if reply.status >= 500 {
                // A failed query may mean a broken connection: start afresh next time.
                *slot = None;
            }
            reply
        }
        Err(e) => {
            let mut r = Reply::server_error(&e);
            r.status = 503;
            r
        }
    }
}

/// The routes that show patient data (identities, results, images), which are audited.
/// `/`, `/api/status` and `/metrics` show counts and UIDs only.
pub(super) fn reads_patient_data(seg: &[&str]) -> bool {
    matches!(
        seg,
        ["studies", ..]
            | ["api", "studies", ..]
            | ["patients", ..]
            | ["api", "patients", ..]
            | ["artifacts", ..]
            | ["audit"]
    )
}

fn route(ctx: &Ctx, db: &Reader, seg: &[&str], target: &Target) -> Reply {
    let fail = |e: rusqlite::Error| Reply::server_error(&format!("database query failed: {e}"));
    match seg {
        [] => match status::collect(ctx, db) {
            Ok(v) => Reply::html(status::render(&v)),
            Err(e) => fail(e),
        },
        ["api", "status"] => match status::collect(ctx, db) {
            Ok(v) => Reply::json(&v),
            Err(e) => fail(e),
        },
        ["studies"] => match studies::collect_list(ctx, db, target) {
            Ok(v) => Reply::html(studies::render_list(&v)),
            Err(e) => fail(e),
        },
        ["api", "studies"] => match studies::collect_list(ctx, db, target) {
            Ok(v) => Reply::json(&v),
            Err(e) => fail(e),
        },
        ["studies", uid] => match studies::collect_study(ctx, db, uid) {
            Ok(Some(v)) => Reply::html(studies::render_study(&v)).about(v.patient_id.clone()),
            Ok(None) => Reply::page_not_found(&format!("No analysed study {uid}.")),
            Err(e) => fail(e),
        },
        ["api", "studies", uid] => match studies::collect_study(ctx, db, uid) {
            Ok(Some(v)) => Reply::json(&v).about(v.patient_id.clone()),
            Ok(None) => Reply::json_not_found("no analysed study with this UID"),
            Err(e) => fail(e),
        },
        ["patients", id] => match patients::collect(db, id) {
            Ok(Some(v)) => Reply::html(patients::render(&v)),
            Ok(None) => Reply::page_not_found(&format!("No analysed study of patient {id}.")),
            Err(e) => fail(e),
        }
        .about(Some(id.to_string())),
        ["api", "patients", id] => match patients::collect(db, id) {
            Ok(Some(v)) => Reply::json(&v),
            Ok(None) => Reply::json_not_found("no analysed study of this patient"),
            Err(e) => fail(e),
        }
        .about(Some(id.to_string())),
        ["audit"] => match audit_page::collect(db, target) {
            Ok(v) => Reply::html(audit_page::render(&v)),
            Err(e) => fail(e),
        },
        ["metrics"] => match metrics::render(ctx, db) {
            Ok(text) => Reply::bytes(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text.into_bytes(),
            ),
            Err(e) => fail(e),
        },
        ["artifacts", id, file] => {
            // The audit trail names the patient whose images these are.
            let patient = id
                .parse()
                .ok()
                .and_then(|id| db.result_patient_id(id).ok().flatten());
            artifacts::serve(db, ctx.data_dir, id, file).about(patient)
        }
        _ => Reply::page_not_found("There is no page at this address."),
    }
}
