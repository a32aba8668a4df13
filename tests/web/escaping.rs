//! Every string a page shows, hostile. Each field gets its own marker, `<x-FIELD>`: no page
//! may carry a marker as markup, and each page must show the escaped marker of every field
//! it displays, so a field that stops being escaped, or stops being shown, fails by name.

use super::*;

use lungwatch::config::ObjectKind;
use lungwatch::db::{AssociationRecord, AuditEvent, AuditRecord, AuditWriter, NewDelivery};
use lungwatch::dimse::DicomSecurity;
use lungwatch::dimse::in_service::{DestinationSecurity, ReceiverSecurity};

fn mark(field: &str) -> String {
    format!("<x-{field}>")
}

/// The marker as a page must show it: escaped.
fn shown(field: &str) -> String {
    format!("&lt;x-{field}&gt;")
}

/// A marker in a URL path or query.
fn encoded(field: &str) -> String {
    format!("%3Cx-{field}%3E")
}

/// Asserts that `html` (the page at `page`) holds no marker as markup and shows every
/// field of `fields` escaped.
fn check(page: &str, html: &str, fields: &[&str]) {
    assert!(html.contains(DISCLAIMER), "{page}: {html}");
    if let Some(at) = html.find("<x-") {
        let end = (at + 40).min(html.len());
        panic!("{page} carries a field as markup: {}", &html[at..end]);
    }
    for field in fields {
        assert!(html.contains(&shown(field)), "{page} does not show {field}");
    }
}

fn hostile_models() -> Vec<ModelRef> {
    vec![ModelRef {
        name: mark("model_name"),
        version: mark("model_version"),
        sha256: mark("model_sha256"),
    }]
}

fn hostile_fixture() -> Fixture {
    // A folder name is text the status page shows too.
    let (f, mut db) = Fixture::empty(&mark("incoming"));
    let now = now_secs();
    let (series, study, patient) = (mark("series_uid"), mark("study_uid"), mark("patient_id"));
    let (name, date) = (
        format!("{}^Given", mark("patient_name")),
        mark("study_date"),
    );
    let (accession, description) = (mark("accession"), mark("series_description"));
    let analysed_study = Study {
        series: &series,
        study: &study,
        patient: &patient,
        name: &name,
        date: &date,
        accession: &accession,
        description: &description,
        affected: 0.2,
        p_covid: 0.9,
        processing_ms: 3000,
    };
    insert(&mut db, &analysed_study, now);
    assert!(db.complete_series(&series, None, now, now).unwrap());
    let job = db.claim_job(now).unwrap().unwrap();
    let mut r = report(&analysed_study);
    r.warnings = vec![mark("warning")];
    r.models = hostile_models();
    let delivery = NewDelivery {
        destination: mark("destination"),
        path: "outbox/sr.dcm".into(),
        kind: ObjectKind::Sr,
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.88.33".into(),
        sop_instance_uid: mark("sop_instance_uid"),
        study_uid: Some(study.clone()),
    };
    assert!(
        db.finish_job_with_result(job.id, &r, "results/hostile/r1", &[delivery], now)
            .unwrap()
    );
    let claimed = db.claim_due_deliveries(now, 10).unwrap();
    db.delivery_failed(claimed[0].id, &mark("delivery_error"))
        .unwrap();

    // A job that failed, one waiting in the queue, a skipped series.
    let other = |series: &'static str, description: &'static str| Study {
        series,
        description,
        study: "1.2.3.9",
        patient: "P9",
        name: "N^N",
        date: "20200101",
        accession: "A9",
        affected: 0.0,
        p_covid: 0.1,
        processing_ms: 1,
    };
    let failing = other("<x-failed_series>", "plain");
    insert(&mut db, &failing, now);
    db.complete_series(failing.series, None, now, now).unwrap();
    let job = db.claim_job(now).unwrap().unwrap();
    db.finish_job(
        job.id,
        Some((FailureKind::UnusableSeries, &mark("failure_reason"))),
        now,
    )
    .unwrap();
    let queued = other("<x-queued_series>", "<x-queued_description>");
    insert(&mut db, &queued, now);
    db.complete_series(queued.series, None, now, now).unwrap();
    let skipped = other("<x-skipped_series>", "plain");
    insert(&mut db, &skipped, now);
    db.complete_series(skipped.series, Some(&mark("skip_reason")), now, now)
        .unwrap();
    db.record_quarantine(
        &mark("quarantined_file"),
        "quarantine/x/1.dcm",
        &mark("reason_code"),
        &mark("quarantine_reason"),
        now,
    )
    .unwrap();
    db.log_event(EventLevel::Error, &mark("event"), now)
        .unwrap();
    db.log_association(&AssociationRecord {
        calling_ae: mark("calling_ae"),
        called_ae: mark("called_ae"),
        peer: mark("peer"),
        started_at: now,
        outcome: mark("outcome"),
        ..Default::default()
    })
    .unwrap();
    drop(db);
    AuditWriter::open(&f.db_path)
        .unwrap()
        .append(&[AuditRecord {
            at: now,
            user: Some(mark("audit_user")),
            client: mark("audit_client"),
            method: mark("audit_method"),
            path: mark("audit_path"),
            status: 200,
            patient_id: Some(mark("audit_patient")),
            event: AuditEvent::Read,
        }])
        .unwrap();
    f
}

#[test]
fn every_field_shown_is_escaped() {
    let f = &hostile_fixture();
    let cfg = WebConfig {
        users: vec![user("boss", "admin pass", Role::Admin)],
        ..config(false, false)
    };
    let state = Arc::new(WebState::new(f.incoming.clone(), hostile_models()));
    state.set_problem("watcher", Some(mark("health_problem")));
    state.set_dicom_security(DicomSecurity {
        receiver: Some(ReceiverSecurity {
            ae_title: mark("receiver_ae"),
            listen: mark("receiver_listen"),
            tls: true,
            fingerprint: Some(mark("fingerprint")),
            client_ca: Some(mark("client_ca")),
            plain_on_network: false,
        }),
        destinations: vec![DestinationSecurity {
            name: mark("destination_name"),
            ae_title: mark("destination_ae"),
            address: mark("destination_address"),
            tls: true,
            trust: Some(mark("destination_trust")),
        }],
    });
    let web = start_with(f, &cfg, Arc::clone(&state));
    let addr = web.local_addr();
    let boss = basic("boss", "admin pass");
    let page = |path: &str| {
        let r = get_with(addr, path, Some(&boss));
        assert!(r.status == 200 || r.status == 404, "{path}: {}", r.status);
        r.text()
    };

    check(
        "/",
        &page("/"),
        &[
            "incoming",
            "health_problem",
            "model_name",
            "model_version",
            "model_sha256",
            "queued_series",
            "queued_description",
            "event",
            "failed_series",
            "failure_reason",
            "reason_code",
            "quarantined_file",
            "quarantine_reason",
            "skipped_series",
            "skip_reason",
            "receiver_ae",
            "receiver_listen",
            "client_ca",
            "fingerprint",
            "destination_name",
            "destination_ae",
            "destination_address",
            "destination_trust",
            "calling_ae",
            "called_ae",
            "peer",
            "outcome",
            "destination",
            "sop_instance_uid",
            "study_uid",
            "delivery_error",
        ],
    );
    let list_fields = ["patient_id", "patient_name", "study_date", "accession"];
    check("/studies", &page("/studies"), &list_fields);
    let search = format!(
        "/studies?patient_id={}&accession={}&date={}",
        encoded("search_patient"),
        encoded("search_accession"),
        encoded("search_date")
    );
    // The date term is echoed in the note that says it was not understood, too.
    check(
        &search,
        &page(&search),
        &["search_patient", "search_accession", "search_date"],
    );
    let study_page = format!("/studies/{}", encoded("study_uid"));
    check(
        &study_page,
        &page(&study_page),
        &[
            "study_uid",
            "patient_id",
            "patient_name",
            "study_date",
            "accession",
            "series_uid",
            "series_description",
            "warning",
            "model_name",
            "model_version",
            "model_sha256",
            "destination",
            "delivery_error",
        ],
    );
    let patient_page = format!("/patients/{}", encoded("patient_id"));
    check(
        &patient_page,
        &page(&patient_page),
        &["patient_id", "patient_name", "study_date", "accession"],
    );
    check(
        "/audit",
        &page("/audit"),
        &[
            "audit_user",
            "audit_client",
            "audit_method",
            "audit_path",
            "audit_patient",
        ],
    );
    let audit_search = format!(
        "/audit?user={}&patient_id={}&date={}",
        encoded("search_user"),
        encoded("search_patient"),
        encoded("search_day")
    );
    check(
        &audit_search,
        &page(&audit_search),
        &["search_user", "search_patient", "search_day"],
    );
    // Not-found pages name what was asked for.
    for (path, field) in [
        (
            format!("/studies/{}", encoded("missing_study")),
            "missing_study",
        ),
        (
            format!("/patients/{}", encoded("missing_patient")),
            "missing_patient",
        ),
    ] {
        check(&path, &page(&path), &[field]);
    }
}
