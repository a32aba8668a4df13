//! The audit trail: rows for a scripted browse, its cost, retention, failure.

use super::*;

/// A scripted browse leaves exactly the expected audit rows: who, from where, what, with
/// which status and patient; failed logins too; pages without patient data leave none.
#[test]
fn audit_trail_of_a_scripted_browse() {
    let f = fixture();
    let cfg = WebConfig {
        users: vec![
            user("ann", "viewer pass", Role::Viewer),
            user("boss", "admin pass", Role::Admin),
        ],
        ..config(true, false)
    };
    let (web, _state) = start(&f, &cfg);
    let addr = web.local_addr();
    let ann = basic("ann", "viewer pass");
    let api = get_with(addr, &format!("/api/studies/{STUDY_A}"), Some(&ann)).json();
    let id = api["series"][0]["result_id"].as_i64().unwrap();
    let browse = [
        ("/", 200),
        ("/metrics", 200),
        ("/studies?patient_id=P001", 200),
        (&format!("/studies/{STUDY_A}") as &str, 200),
        ("/patients/P001", 200),
        ("/api/patients/P001", 200),
        (&format!("/artifacts/{id}/axial-0.png"), 200),
        ("/patients/NOBODY", 404),
        ("/audit", 403),
    ];
    for (path, status) in browse {
        assert_eq!(get_with(addr, path, Some(&ann)).status, status, "{path}");
    }
    assert_eq!(
        get_with(addr, "/patients/P001", Some(&basic("ann", "nope"))).status,
        401
    );
    assert_eq!(
        get_with(addr, "/", Some(&format!("Bearer {TOKEN}"))).status,
        200,
        "token, no patient data: no row"
    );
    assert_eq!(
        get_with(addr, "/api/patients/P001", Some(&format!("Bearer {TOKEN}"))).status,
        200
    );
    drop(web); // flushes the audit writer
    let db = lungwatch::db::Reader::open(&f.db_path).unwrap();
    use lungwatch::db::{AuditEvent, AuditFilter, ReadQueries};
    let mut rows = db.audit_entries(&AuditFilter::default(), 100).unwrap();
    rows.reverse();
    // (user, path, status, patient, event)
    type Row<'a> = (Option<&'a str>, &'a str, u16, Option<&'a str>, AuditEvent);
    let seen: Vec<Row> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.client, "127.0.0.1");
            assert_eq!(r.method, "GET");
            assert!((r.at - now_secs()).abs() < 120);
            (
                r.user.as_deref(),
                r.path.as_str(),
                r.status,
                r.patient_id.as_deref(),
                r.event,
            )
        })
        .collect();
    let study = format!("/api/studies/{STUDY_A}");
    let study_page = format!("/studies/{STUDY_A}");
    let artifact = format!("/artifacts/{id}/axial-0.png");
    use AuditEvent::{LoginFailed, Read};
    assert_eq!(
        seen,
        vec![
            (Some("ann"), study.as_str(), 200, Some("P001"), Read),
            (
                Some("ann"),
                "/studies?patient_id=P001",
                200,
                Some("P001"),
                Read
            ),
            (Some("ann"), study_page.as_str(), 200, Some("P001"), Read),
            (Some("ann"), "/patients/P001", 200, Some("P001"), Read),
            (Some("ann"), "/api/patients/P001", 200, Some("P001"), Read),
            (Some("ann"), artifact.as_str(), 200, Some("P001"), Read),
            (Some("ann"), "/patients/NOBODY", 404, Some("NOBODY"), Read),
            (Some("ann"), "/audit", 403, None, Read),
            (Some("ann"), "/patients/P001", 401, None, LoginFailed),
            (Some("token"), "/api/patients/P001", 200, Some("P001"), Read),
        ]
    );
    // The admin's view: search by user, patient and day, HTML-escaped.
    let (web, _state) = start(&f, &cfg);
    let addr = web.local_addr();
    let boss = basic("boss", "admin pass");
    let page = get_with(addr, "/audit?user=ann", Some(&boss)).text();
    assert!(page.contains("/patients/NOBODY") && page.contains("login-failed"));
    assert!(!page.contains("<td>token</td>"));
    let today = lungwatch::web::fmt_days(now_secs().div_euclid(86_400));
    let page = get_with(
        addr,
        &format!("/audit?patient_id=P001&date={today}"),
        Some(&boss),
    )
    .text();
    assert_eq!(page.matches("<tr><td").count(), 7, "{page}");
    let page = get_with(addr, "/audit?date=1999-01-01", Some(&boss)).text();
    assert!(page.contains("No audit record matches."));
    let page = get_with(addr, "/audit?user=%3Cscript%3E&date=x%3Cb%3E", Some(&boss)).text();
    assert_escaped("/audit", &page);
    assert!(!page.contains("<b>") && page.contains("&lt;script&gt;"));
    let _ = get_with(addr, "/patients/EVIL%20%3C1%3E", Some(&boss));
    drop(web);
    let (web, _state) = start(&f, &cfg);
    let page = get_with(web.local_addr(), "/audit?user=boss", Some(&boss)).text();
    assert!(
        page.contains("EVIL &lt;1&gt;"),
        "hostile patient IDs are escaped in the trail"
    );
    assert_escaped("/audit", &page);
    drop(web);
    // The command-line export reads the same rows.
    let conf = f._root.path().join("lungwatch.toml");
    std::fs::write(
        &conf,
        format!(
            "[paths]\nincoming = {:?}\ndata = {:?}\n",
            f.incoming, f.data
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["audit", "--since", &today, "--csv", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "time,user,client,method,path,status,patient_id,event"
    );
    assert!(
        lines[1].ends_with(&format!(",ann,127.0.0.1,GET,{study},200,P001,read")),
        "{}",
        lines[1]
    );
    assert!(csv.contains(",ann,127.0.0.1,GET,/patients/P001,401,,login-failed"));
    // Plus the admin's six requests: five /audit searches and the hostile patient.
    assert_eq!(lines.len(), 1 + seen.len() + 6, "{csv}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["audit", "--since", "2999-01-01", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no audit records"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["audit", "--since", "yesterday", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `bench/audit.sh` runs this: median latency of a study page with and without auditing.
#[test]
#[ignore = "a benchmark; run by bench/audit.sh"]
fn audit_latency_bench() {
    let n: usize = std::env::var("LUNGWATCH_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let f = fixture();
    let cfg = WebConfig {
        users: vec![user("ann", "viewer pass", Role::Viewer)],
        ..config(false, false)
    };
    let auth = basic("ann", "viewer pass");
    let state = Arc::new(WebState::new(f.incoming.clone(), models()));
    let on = start_with(&f, &cfg, Arc::clone(&state));
    let off = web::start(&cfg, &audit_config(false), &f.db_path, &f.data, state).unwrap();
    let path = format!("/studies/{STUDY_A}");
    let (mut t_on, mut t_off) = (Vec::with_capacity(n), Vec::with_capacity(n));
    // Warm-up (connections, SQLite caches, the Argon2 check), then alternate so that load
    // from elsewhere on the machine affects both the same.
    for _ in 0..50 {
        get_with(on.local_addr(), &path, Some(&auth));
        get_with(off.local_addr(), &path, Some(&auth));
    }
    for i in 0..2 * n {
        let (addr, times) = if i % 2 == 0 {
            (on.local_addr(), &mut t_on)
        } else {
            (off.local_addr(), &mut t_off)
        };
        let t = std::time::Instant::now();
        let r = get_with(addr, &path, Some(&auth));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.status, 200);
    }
    drop(on);
    drop(off);
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[v.len() * 95 / 100])
    };
    let (med_on, p95_on) = stats(&mut t_on);
    let (med_off, p95_off) = stats(&mut t_off);
    let rows = {
        use lungwatch::db::{AuditFilter, ReadQueries};
        let db = lungwatch::db::Reader::open(&f.db_path).unwrap();
        db.audit_entries(&AuditFilter::default(), i64::MAX)
            .unwrap()
            .len()
    };
    assert!(rows >= n, "every audited request left a row ({rows})");
    // A line of its own: the test harness's "test name ... " has no line end.
    println!();
    println!("| auditing | requests | median ms | p95 ms |");
    println!("|---|---|---|---|");
    println!("| off | {n} | {med_off:.3} | {p95_off:.3} |");
    println!("| on | {n} | {med_on:.3} | {p95_on:.3} |");
    println!(
        "| added by auditing | | {:+.3} | {:+.3} |",
        med_on - med_off,
        p95_on - p95_off
    );
    println!(
        "target: under 1 ms added at the median: {}",
        if med_on - med_off < 1.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// The audit writer deletes rows older than `audit.retention_days` when it starts.
#[test]
fn audit_rows_past_the_retention_period_are_removed() {
    use lungwatch::db::{AuditEvent, AuditFilter, AuditRecord, AuditWriter, ReadQueries};
    let f = fixture();
    let day = 86_400;
    let row = |days_ago: i64| AuditRecord {
        at: now_secs() - days_ago * day,
        user: Some("ann".into()),
        client: "10.0.0.1".into(),
        method: "GET".into(),
        path: format!("/patients/P{days_ago}"),
        status: 200,
        patient_id: Some(format!("P{days_ago}")),
        event: AuditEvent::Read,
    };
    let mut w = AuditWriter::open(&f.db_path).unwrap();
    w.append(&[row(400), row(366), row(364), row(10)]).unwrap();
    let kept = |retention_days| {
        let state = Arc::new(WebState::new(f.incoming.clone(), models()));
        let audit = AuditConfig {
            enabled: true,
            retention_days,
        };
        drop(web::start(&config(false, false), &audit, &f.db_path, &f.data, state).unwrap());
        let db = lungwatch::db::Reader::open(&f.db_path).unwrap();
        let mut days: Vec<String> = db
            .audit_entries(&AuditFilter::default(), 100)
            .unwrap()
            .into_iter()
            .map(|r| r.path)
            .collect();
        days.sort();
        days
    };
    assert_eq!(kept(365), ["/patients/P10", "/patients/P364"]);
    assert_eq!(kept(5), Vec::<String>::new());
}

/// While audit rows cannot be written, /healthz says so (503) and the rows are kept and
/// retried; once writing works again, health recovers and no row is lost.
#[test]
fn a_failing_audit_trail_makes_health_degraded_until_it_recovers() {
    let f = fixture();
    let sql = rusqlite::Connection::open(&f.db_path).unwrap();
    sql.execute_batch(
        "CREATE TRIGGER audit_fails BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk trouble'); END;",
    )
    .unwrap();
    let (web, _state) = start(&f, &config(false, false));
    let addr = web.local_addr();
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/patients/P001").status, 200);
    let wait_for = |status: u16| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = get(addr, "/healthz");
            if r.status == status {
                return r.text();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "health stayed {}",
                r.status
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let text = wait_for(503);
    assert!(
        text.contains("audit trail cannot be written") && text.contains("disk trouble"),
        "{text}"
    );
    sql.execute_batch("DROP TRIGGER audit_fails;").unwrap();
    wait_for(200);
    drop(web);
    let db = lungwatch::db::Reader::open(&f.db_path).unwrap();
    use lungwatch::db::ReadQueries;
    let rows = db
        .audit_entries(&lungwatch::db::AuditFilter::default(), 10)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].path, "/patients/P001");
}
