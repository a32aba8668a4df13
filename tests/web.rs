//! The web page end to end on a database made through the public API: pages, JSON API,
//! metrics, health, escaping, authentication, masking, artifact serving, and headless
//! Chromium screenshots (skipped with a message when `chromium` is absent).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lungwatch::config::{AuditConfig, Role, WebConfig, WebUser};
use lungwatch::db::{Database, EventLevel, FailureKind, NewInstance, now_secs};
use lungwatch::dicom::InstanceHeader;
use lungwatch::report::{
    AffectedRatio, BelowThreshold, Class, ModelRef, Probabilities, SeriesReport, Sides, Timings,
    Zones,
};
use lungwatch::web::{self, WebHandle, WebState};

const EVIL_NAME: &str = "<script>alert(1)</script>^Eve";
const EVIL_DESC: &str = "<img src=x onerror=alert(2)>";
const EVIL_PATIENT: &str = "EVIL <1>";
const TOKEN: &str = "correct-horse-battery-staple";

struct Study<'a> {
    series: &'a str,
    study: &'a str,
    patient: &'a str,
    name: &'a str,
    date: &'a str,
    accession: &'a str,
    description: &'a str,
    affected: f64,
    p_covid: f64,
    processing_ms: u64,
}

fn models() -> Vec<ModelRef> {
    [
        ("lung_seg", "0.1.0"),
        ("lesion_seg", "0.1.0"),
        ("classifier", "0.1.0"),
    ]
    .iter()
    .map(|(n, v)| ModelRef {
        name: n.to_string(),
        version: v.to_string(),
        sha256: sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(n))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
    .collect()
}

fn report(s: &Study) -> SeriesReport {
    let p_other = (1.0 - s.p_covid) * 0.6;
    let p_normal = 1.0 - s.p_covid - p_other;
    let top = if s.p_covid >= p_other && s.p_covid >= p_normal {
        Class::Covid19
    } else if p_other >= p_normal {
        Class::OtherPneumonia
    } else {
        Class::Normal
    };
    let lung = 2400.0;
    SeriesReport {
        series_instance_uid: s.series.into(),
        study_instance_uid: Some(s.study.into()),
        patient_id: Some(s.patient.into()),
        patient_name: Some(s.name.into()),
        study_date: Some(s.date.into()),
        accession_number: Some(s.accession.into()),
        series_description: Some(s.description.into()),
        slice_count: 120,
        spacing_mm: [0.7, 0.7, 2.5],
        probabilities: Probabilities {
            covid19: s.p_covid,
            other_pneumonia: p_other,
            normal: p_normal,
        },
        top_class: top,
        lung_volume_ml: Sides {
            left: lung * 0.45,
            right: lung * 0.55,
        },
        lesion_volume_ml: lung * s.affected,
        ggo_volume_ml: lung * s.affected * 0.8,
        consolidation_volume_ml: lung * s.affected * 0.2,
        affected_ratio: AffectedRatio {
            total: s.affected,
            left: s.affected * 1.2,
            right: s.affected * 0.85,
        },
        ggo_share: 0.8,
        consolidation_share: 0.2,
        bilateral: s.affected > 0.01,
        peripheral_share: 0.7,
        peripheral_mm: 10.0,
        zones: Zones {
            right_upper: s.affected * 0.3,
            right_middle: s.affected * 0.9,
            right_lower: s.affected * 1.4,
            left_upper: s.affected * 0.4,
            left_middle: s.affected,
            left_lower: s.affected * 1.6,
        },
        severity_score: (s.affected * 40.0).round().min(24.0) as u8,
        below_threshold: if s.affected > 0.1 {
            BelowThreshold {
                lesion_ml: 1.3,
                components: 7,
                min_component_ml: 0.25,
                zones: 0,
                zone_min_ratio: 0.01,
            }
        } else {
            BelowThreshold::default()
        },
        features: vec![("lesion_ratio".into(), s.affected)],
        models: models(),
        timings_ms: Timings {
            decode: s.processing_ms / 4,
            preprocess: s.processing_ms / 8,
            inference: s.processing_ms / 2,
            postprocess: s.processing_ms / 8,
            total: s.processing_ms,
        },
        warnings: if s.affected > 0.1 {
            vec!["2 missing slices between z = 40.0 and z = 45.0 mm".into()]
        } else {
            vec![]
        },
        per_slice: None,
    }
}

fn header(s: &Study) -> InstanceHeader {
    InstanceHeader {
        series_instance_uid: Some(s.series.into()),
        study_instance_uid: Some(s.study.into()),
        patient_id: Some(s.patient.into()),
        patient_name: Some(s.name.into()),
        study_date: Some(s.date.into()),
        accession_number: Some(s.accession.into()),
        series_description: Some(s.description.into()),
        modality: Some("CT".into()),
        ..Default::default()
    }
}

fn insert(db: &mut Database, s: &Study, now: i64) {
    let h = header(s);
    db.insert_instance(
        &NewInstance {
            sop_instance_uid: &format!("{}.1", s.series),
            uid_derived: false,
            header: &h,
            series_uid: s.series,
            store_path: &format!("store/{}.dcm", s.series),
            sha256: "00",
            size_bytes: 1,
            original_name: "x.dcm",
        },
        now,
    )
    .unwrap();
}

/// Ingests, completes, claims and finishes one series with its result; returns the
/// result's artifact folder (relative to data).
fn analysed(db: &mut Database, s: &Study, artifacts_dir: &str) {
    let now = now_secs();
    insert(db, s, now);
    assert!(db.complete_series(s.series, None, now, now).unwrap());
    let job = db.claim_job(now).unwrap().unwrap();
    assert_eq!(job.series_uid, s.series);
    assert!(
        db.finish_job_with_result(job.id, &report(s), artifacts_dir, &[], now)
            .unwrap()
    );
}

/// Axial previews cut from the real overlay grid in models/eval (8 tiles of 192x192).
fn write_previews(dir: &Path, tiles: &[usize]) {
    std::fs::create_dir_all(dir).unwrap();
    let grid = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/eval/covid19-P002_overlay.png");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(grid).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let (w, tile) = (info.width as usize, 192usize);
    for (k, &t) in tiles.iter().enumerate() {
        let (tx, ty) = (t % 4, t / 4);
        let mut out = Vec::with_capacity(tile * tile * 3);
        for y in 0..tile {
            for x in 0..tile {
                let i = ((ty * tile + y) * w + tx * tile + x) * ch;
                out.extend_from_slice(&buf[i..i + 3]);
            }
        }
        let file = std::fs::File::create(dir.join(format!("axial-{k}.png"))).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), tile as u32, tile as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(&out).unwrap();
    }
    std::fs::write(dir.join("labels.nii.gz"), b"\x1f\x8b fake mask bytes").unwrap();
}

struct Fixture {
    _root: tempfile::TempDir,
    db_path: PathBuf,
    data: PathBuf,
    incoming: PathBuf,
}

const STUDY_A: &str = "1.2.826.0.1.3680043.8.498.1001";
const STUDY_EVIL: &str = "1.2.826.0.1.3680043.8.498.2001";

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let incoming = root.path().join("incoming");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&incoming).unwrap();
    let db_path = data.join("lungwatch.sqlite");
    let mut db = Database::open(&db_path).unwrap();
    let base = Study {
        series: "",
        study: "",
        patient: "P001",
        name: "DOE^JANE",
        date: "",
        accession: "",
        description: "Chest 1.0 B70f",
        affected: 0.0,
        p_covid: 0.9,
        processing_ms: 3200,
    };
    // Patient P001: four studies: +10 pp (progression), -9 pp (regression), +1 pp (stable).
    let timeline = [
        ("20200301", 0.05, "1.2.826.0.1.3680043.8.498.1000", 2900),
        ("20200310", 0.15, STUDY_A, 3400),
        ("20200325", 0.06, "1.2.826.0.1.3680043.8.498.1002", 3100),
        ("20200420", 0.07, "1.2.826.0.1.3680043.8.498.1003", 3900),
    ];
    for (i, (date, affected, study, ms)) in timeline.iter().enumerate() {
        let series = format!("{study}.1");
        let acc = format!("ACC{}", 100 + i);
        let dir = format!("results/{series}/r1");
        analysed(
            &mut db,
            &Study {
                series: &series,
                study,
                date,
                accession: &acc,
                affected: *affected,
                processing_ms: *ms,
                ..base
            },
            &dir,
        );
        write_previews(&data.join(&dir), &[1, 2, 5, 6]);
    }
    // A second series in study A with a smaller ratio: the study keeps the 15 % figures.
    analysed(
        &mut db,
        &Study {
            series: &format!("{STUDY_A}.2"),
            study: STUDY_A,
            date: "20200310",
            accession: "ACC101",
            description: "Chest 5.0 soft tissue",
            affected: 0.12,
            processing_ms: 2500,
            ..base
        },
        &format!("results/{STUDY_A}.2/r1"),
    );
    // Another patient whose DICOM strings are hostile.
    analysed(
        &mut db,
        &Study {
            series: "1.2.826.0.1.3680043.8.498.2001.1",
            study: STUDY_EVIL,
            patient: EVIL_PATIENT,
            name: EVIL_NAME,
            date: "20210105",
            accession: "X<9>",
            description: EVIL_DESC,
            affected: 0.0,
            p_covid: 0.05,
            processing_ms: 1800,
        },
        "results/evil/r1",
    );
    // A result row whose artifact folder points outside the data folder (a tampered row).
    analysed(
        &mut db,
        &Study {
            series: "1.2.826.0.1.3680043.8.498.3001.1",
            study: "1.2.826.0.1.3680043.8.498.3001",
            patient: "P003",
            date: "20210201",
            accession: "ACC300",
            ..base
        },
        "../outside",
    );
    std::fs::create_dir_all(root.path().join("outside")).unwrap();
    std::fs::write(root.path().join("outside/coronal.png"), b"secret").unwrap();
    // A symlink inside a result folder pointing out of the data folder.
    std::fs::create_dir_all(data.join("results/evil/r1")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("results/evil/r1/coronal.png")).unwrap();
    // Queue, failure, skip, quarantine and errors for the status page.
    let now = now_secs();
    let failing = Study {
        series: "1.2.826.0.1.3680043.8.498.6001.1",
        study: "1.2.826.0.1.3680043.8.498.6001",
        patient: "P004",
        ..base
    };
    insert(&mut db, &failing, now);
    db.complete_series(failing.series, None, now, now).unwrap();
    let job = db.claim_job(now).unwrap().unwrap();
    assert_eq!(job.series_uid, failing.series);
    db.finish_job(
        job.id,
        Some((
            FailureKind::UnusableSeries,
            "12-bit lossy JPEG <not supported>",
        )),
        now,
    )
    .unwrap();
    let pending = Study {
        series: "1.2.826.0.1.3680043.8.498.4001.1",
        ..failing
    };
    insert(&mut db, &pending, now);
    db.complete_series(pending.series, None, now, now).unwrap();
    let skipped = Study {
        series: "1.2.826.0.1.3680043.8.498.5001.1",
        ..failing
    };
    insert(&mut db, &skipped, now);
    db.complete_series(
        skipped.series,
        Some("only 12 slices (at least 40 needed)"),
        now,
        now,
    )
    .unwrap();
    db.record_quarantine(
        "broken<1>.dcm",
        "quarantine/truncated/ab-broken.dcm",
        "truncated",
        "file ends inside Pixel Data",
        now,
    )
    .unwrap();
    db.log_event(
        EventLevel::Error,
        "cannot scan /mnt/pacs: <permission denied>",
        now,
    )
    .unwrap();
    db.log_event(
        EventLevel::Info,
        "routine message not for the status page",
        now,
    )
    .unwrap();
    Fixture {
        _root: root,
        db_path,
        data,
        incoming,
    }
}

fn config(auth: bool, masked: bool) -> WebConfig {
    WebConfig {
        listen: "127.0.0.1:0".into(),
        mask_patient_ids: masked,
        token: auth.then(|| TOKEN.to_string()),
        users: Vec::new(),
        tls_cert: None,
        tls_key: None,
        allow_plain_http: false,
    }
}

fn audit_config(enabled: bool) -> AuditConfig {
    AuditConfig {
        enabled,
        retention_days: 365,
    }
}

fn start(f: &Fixture, config: &WebConfig) -> (WebHandle, Arc<WebState>) {
    let state = Arc::new(WebState::new(f.incoming.clone(), models()));
    let h = web::start(
        config,
        &audit_config(true),
        &f.db_path,
        &f.data,
        Arc::clone(&state),
    )
    .unwrap();
    (h, state)
}

struct Response {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Response {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// A raw HTTP/1.0 GET (the server closes the connection after the body).
fn get_with(addr: SocketAddr, path: &str, authorization: Option<&str>) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n{auth}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Response {
        status,
        headers: head,
        body: raw[split + 4..].to_vec(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Response {
    get_with(addr, path, None)
}

const DISCLAIMER: &str = "Decision support only, not a diagnosis.";

#[test]
fn pages_api_metrics_and_health() {
    let f = fixture();
    let (web, state) = start(&f, &config(false, false));
    let addr = web.local_addr();
    assert_ne!(addr.port(), 0);

    // Status page.
    let r = get(addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("text/html"));
    let html = r.text();
    for needle in [
        DISCLAIMER,
        env!("CARGO_PKG_VERSION"),
        "lesion_seg",
        &f.incoming.display().to_string(),
        "free of",
        "only 12 slices (at least 40 needed)",
        "In the queue",
        "1.2.826.0.1.3680043.8.498.4001.1",
        "file ends inside Pixel Data",
        "truncated × 1",
        "cannot scan /mnt/pacs: &lt;permission denied&gt;",
        "12-bit lossy JPEG &lt;not supported&gt;",
        "<div class=\"health ok\"><span class=\"dot\"></span>ok</div>",
    ] {
        assert!(html.contains(needle), "status page lacks {needle:?}");
    }
    assert!(!html.contains("routine message"));
    assert!(!html.contains("Disk full"));
    let s = get(addr, "/api/status").json();
    assert_eq!(s["health"]["status"], "ok");
    assert_eq!(s["queue_pending"], 1);
    assert_eq!(s["queue_running"], 0);
    assert_eq!(
        s["queue"][0]["series_uid"],
        "1.2.826.0.1.3680043.8.498.4001.1"
    );
    assert_eq!(s["queue"][0]["state"], "pending");
    assert_eq!(s["counts"]["jobs_failed"], 1);
    // Distinct studies with a result in the last 24 h: 4 of P001, the hostile one, P003.
    assert_eq!(s["studies_last_24h"], 6);
    assert_eq!(s["processing"]["samples"], 7);
    // Sorted: 1800 2500 2900 3100 3200 3400 3900 -> median 3100, nearest-rank p95 3900.
    assert_eq!(s["processing"]["median_ms"], 3100.0);
    assert_eq!(s["processing"]["p95_ms"], 3900.0);
    assert_eq!(s["models"].as_array().unwrap().len(), 3);
    assert_eq!(s["quarantine_by_reason"][0]["reason_code"], "truncated");
    assert!(s["incoming"]["free_bytes"].as_u64().unwrap() > 0);

    // Health, then degraded by a full disk.
    let h = get(addr, "/healthz");
    assert_eq!((h.status, h.text().as_str()), (200, "ok\n"));
    state.set_disk_full(true);
    let h = get(addr, "/healthz");
    assert_eq!(h.status, 503);
    assert!(
        h.text().contains("disk full: ingest paused"),
        "{}",
        h.text()
    );
    let html = get(addr, "/").text();
    assert!(html.contains("Disk full: ingest paused"));
    assert!(html.contains("<span class=\"dot\"></span>degraded</div>"));
    assert!(html.contains("<li>disk full: ingest paused</li>"));
    state.set_disk_full(false);
    state.set_problem("watcher", Some("cannot watch the drop folder".into()));
    assert!(
        get(addr, "/healthz")
            .text()
            .contains("cannot watch the drop folder")
    );
    state.set_problem("watcher", None);
    assert_eq!(get(addr, "/healthz").status, 200);

    // Studies list and search.
    let list = get(addr, "/api/studies").json();
    let studies = list["studies"].as_array().unwrap();
    assert_eq!(studies.len(), 6);
    // Newest study date first.
    assert_eq!(studies[0]["study_date"], "20210201");
    let a = studies.iter().find(|s| s["study_uid"] == STUDY_A).unwrap();
    assert_eq!(a["series_analysed"], 2);
    assert_eq!(a["affected_ratio"], 0.15);
    assert_eq!(a["key_series_uid"], format!("{STUDY_A}.1"));
    assert_eq!(a["top_class"], "covid19");
    assert_eq!(a["top_probability"], 0.9);
    let by = |q: &str| -> Vec<String> {
        get(addr, &format!("/api/studies?{q}")).json()["studies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["study_uid"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(by("patient_id=p001").len(), 4);
    assert_eq!(by("accession=ACC101"), [STUDY_A]);
    assert_eq!(by("date=2020-03-10"), [STUDY_A]);
    assert_eq!(by("date=2020-03").len(), 3);
    assert_eq!(by("patient_id=EVIL+%3C1%3E"), [STUDY_EVIL]);
    assert_eq!(by("patient_id=%25"), Vec::<String>::new());
    let bad = get(addr, "/studies?date=March").text();
    assert!(bad.contains("not understood"));
    let html = get(addr, "/studies?patient_id=P001&accession=&date=").text();
    assert!(html.contains(DISCLAIMER));
    assert!(html.contains("value=\"P001\""));
    assert!(html.contains("2020-03-25"));
    assert!(html.contains("DOE, JANE"));
    assert!(!html.contains("2021-01-05"));

    // Study page: both series, bars, measurements, previews.
    let r = get(addr, &format!("/studies/{STUDY_A}"));
    assert_eq!(r.status, 200);
    let html = r.text();
    for needle in [
        DISCLAIMER,
        "Chest 1.0 B70f",
        "Chest 5.0 soft tissue",
        "class=\"bar\"",
        "Affected lung ratio",
        "15.0 %",
        "Lung volume, right / left",
        "1320 mL / 1080 mL",
        "Severity score",
        "6 / 24",
        "Bilateral",
        "within 10 mm",
        "lesion_seg",
        "2 missing slices",
        "Below the reporting threshold, not counted above: 1.3 mL of possible lesion in 7 components smaller than 0.25 mL.",
        "Inference",
        "axial-3.png",
        "labels.nii.gz",
        "/patients/P001",
    ] {
        assert!(html.contains(needle), "study page lacks {needle:?}");
    }
    let api = get(addr, &format!("/api/studies/{STUDY_A}")).json();
    let series = api["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["report"]["severity_score"], 6);
    assert_eq!(series[0]["previews"].as_array().unwrap().len(), 4);
    let img_url = series[0]["previews"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let img = get(addr, &img_url);
    assert_eq!(img.status, 200, "{img_url}");
    assert!(img.headers.contains("image/png"));
    assert_eq!(&img.body[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(get(addr, "/studies/1.2.3.404").status, 404);
    assert_eq!(get(addr, "/api/studies/1.2.3.404").status, 404);

    // Patient timeline: four dates in order, labels by the ±2 pp rule.
    let p = get(addr, "/api/patients/P001").json();
    let tl = p["studies"].as_array().unwrap();
    let dates: Vec<&str> = tl
        .iter()
        .map(|s| s["study_date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["20200301", "20200310", "20200325", "20200420"]);
    let trends: Vec<&serde_json::Value> = tl.iter().map(|s| &s["trend"]).collect();
    assert_eq!(
        trends,
        [
            &serde_json::Value::Null,
            &"progression".into(),
            &"regression".into(),
            &"stable".into()
        ]
    );
    assert!((tl[1]["change_pp"].as_f64().unwrap() - 10.0).abs() < 1e-9);
    assert_eq!(p["threshold_pp"], 2.0);
    let html = get(addr, "/patients/P001").text();
    for needle in [
        DISCLAIMER,
        "<svg",
        "2020-03-01",
        "2020-04-20",
        "progression",
        "regression",
        "stable",
        "+10.0 pp",
        "−2 points",
        "DOE, JANE",
    ] {
        assert!(html.contains(needle), "patient page lacks {needle:?}");
    }
    assert_eq!(html.matches("<circle").count(), 4);
    assert_eq!(get(addr, "/patients/NOBODY").status, 404);

    // Metrics.
    let m = get(addr, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m.headers.contains("text/plain; version=0.0.4"));
    let metrics = parse_prometheus(&m.text());
    let value = |k: &str| {
        metrics
            .iter()
            .find(|(n, _)| n == k)
            .unwrap_or_else(|| panic!("no metric {k}"))
            .1
    };
    assert_eq!(value("lungwatch_up"), 1.0);
    assert_eq!(value("lungwatch_queue_depth"), 1.0);
    assert_eq!(value("lungwatch_jobs{state=\"failed\"}"), 1.0);
    assert_eq!(value("lungwatch_jobs{state=\"done\"}"), 7.0);
    assert_eq!(value("lungwatch_quarantined_files"), 1.0);
    assert_eq!(value("lungwatch_processing_seconds_bucket{le=\"2\"}"), 1.0);
    assert_eq!(value("lungwatch_processing_seconds_bucket{le=\"4\"}"), 7.0);
    assert_eq!(
        value("lungwatch_processing_seconds_bucket{le=\"+Inf\"}"),
        7.0
    );
    assert_eq!(value("lungwatch_processing_seconds_count"), 7.0);
    assert!((value("lungwatch_processing_seconds_sum") - 20.8).abs() < 1e-9);

    // Unknown paths and methods.
    assert_eq!(get(addr, "/nope").status, 404);
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.0 405") || raw.starts_with("HTTP/1.1 405"),
        "{raw}"
    );
    web.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener is closed once stop returns"
    );
    // A restart (SIGHUP) can bind the same port again at once.
    let again = WebConfig {
        listen: addr.to_string(),
        ..config(false, false)
    };
    let (web, _state) = start(&f, &again);
    assert_eq!(web.local_addr(), addr);
    assert_eq!(get(addr, "/healthz").status, 200);
}

/// Parses Prometheus text format strictly enough to catch malformed output; returns
/// `(name{labels}, value)` pairs. Checks every sample has a TYPE and histograms are
/// cumulative with +Inf equal to _count.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut typed = std::collections::HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(
                ["gauge", "counter", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let name = key.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name {name}"
        );
        let labels = &key[name.len()..];
        if !labels.is_empty() {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').unwrap();
                assert!(
                    !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                    "{line}"
                );
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "no TYPE for {name}");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        out.push((key.to_string(), v));
    }
    let buckets: Vec<f64> = out
        .iter()
        .filter(|(k, _)| k.starts_with("lungwatch_processing_seconds_bucket"))
        .map(|(_, v)| *v)
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "buckets not cumulative"
    );
    out
}

#[test]
fn dicom_strings_are_escaped_everywhere() {
    let f = fixture();
    let (web, _state) = start(&f, &config(false, false));
    let addr = web.local_addr();
    let pages = [
        "/".to_string(),
        "/studies".to_string(),
        format!("/studies/{STUDY_EVIL}"),
        "/patients/EVIL%20%3C1%3E".to_string(),
        "/studies?patient_id=%3Cscript%3E".to_string(),
        "/patients/%3Cscript%3Ealert(3)%3C%2Fscript%3E".to_string(),
    ];
    for page in &pages {
        let html = get(addr, page).text();
        assert!(html.contains(DISCLAIMER), "{page}");
        assert!(
            !html.contains("<script"),
            "{page} has an unescaped script tag"
        );
        assert!(
            !html.contains("<img src=x"),
            "{page} has an unescaped img tag"
        );
        assert!(!html.contains("<1>"), "{page} has an unescaped patient ID");
    }
    let html = get(addr, &format!("/studies/{STUDY_EVIL}")).text();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    // The patient link carries the ID percent-encoded and the page decodes it.
    assert!(html.contains("/patients/EVIL%20%3C1%3E"));
    let p = get(addr, "/api/patients/EVIL%20%3C1%3E").json();
    assert_eq!(p["patient_id"], EVIL_PATIENT);
    assert_eq!(p["patient_name"], EVIL_NAME);
    // Scripts could not run anyway: the policy forbids them.
    let r = get(addr, "/");
    assert!(
        r.headers
            .contains("Content-Security-Policy: default-src 'none'")
    );
}

#[test]
fn artifacts_serve_only_report_files_inside_the_data_folder() {
    let f = fixture();
    let (web, _state) = start(&f, &config(false, false));
    let addr = web.local_addr();
    let api = get(addr, &format!("/api/studies/{STUDY_A}")).json();
    let id = api["series"][0]["result_id"].as_i64().unwrap();
    assert_eq!(
        get(addr, &format!("/artifacts/{id}/axial-0.png")).status,
        200
    );
    let labels = get(addr, &format!("/artifacts/{id}/labels.nii.gz"));
    assert_eq!(labels.status, 200);
    assert!(labels.headers.contains("attachment"));
    for path in [
        format!("/artifacts/{id}/..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
        format!("/artifacts/{id}/../../../../etc/passwd"),
        format!("/artifacts/{id}/%2Fetc%2Fpasswd"),
        format!("/artifacts/{id}/lungwatch.sqlite"),
        format!("/artifacts/{id}/axial-0.png%00.txt"),
        format!("/artifacts/{id}/coronal.png"), // allowed name, not stored
        "/artifacts/99999/axial-0.png".to_string(),
        "/artifacts/..%2F1/axial-0.png".to_string(),
    ] {
        let r = get(addr, &path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(!r.text().contains("root:"), "{path}");
    }
    // A result row naming a folder outside the data folder, and a symlink out of it.
    let all = get(addr, "/api/studies?patient_id=P003").json();
    let study = all["studies"][0]["study_uid"].as_str().unwrap().to_string();
    let outside = get(addr, &format!("/api/studies/{study}")).json()["series"][0]["result_id"]
        .as_i64()
        .unwrap();
    let r = get(addr, &format!("/artifacts/{outside}/coronal.png"));
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("secret"));
    let evil = get(addr, &format!("/api/studies/{STUDY_EVIL}")).json()["series"][0]["result_id"]
        .as_i64()
        .unwrap();
    let r = get(addr, &format!("/artifacts/{evil}/coronal.png"));
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("root:"));
}

#[test]
fn authentication_and_masking() {
    let f = fixture();
    let (web, _state) = start(&f, &config(true, true));
    let addr = web.local_addr();
    for (i, path) in [
        "/",
        "/studies",
        "/api/status",
        "/metrics",
        &format!("/studies/{STUDY_A}"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = get(addr, path);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.headers.contains("WWW-Authenticate: Basic"), "{path}");
        assert!(!r.text().contains("P001"));
        // Four wrong tokens: a fifth within the minute would lock this address out
        // (repeated_failed_logins_get_429 tests that).
        if i < 4 {
            assert_eq!(
                get_with(addr, path, Some("Bearer wrong-token-wrong-token")).status,
                401
            );
        }
        assert_eq!(
            get_with(addr, path, Some(&format!("Bearer {TOKEN}"))).status,
            200,
            "{path}"
        );
    }
    // The browser's login prompt: any user, the token as password ("it:" + TOKEN).
    let basic = format!("Basic {}", base64(&format!("it:{TOKEN}")));
    assert_eq!(get_with(addr, "/", Some(&basic)).status, 200);
    // Health stays open for monitors.
    assert_eq!(get(addr, "/healthz").status, 200);

    // Masked list pages: no patient IDs or names, in HTML or JSON.
    let auth = Some(format!("Bearer {TOKEN}"));
    let html = get_with(addr, "/studies", auth.as_deref()).text();
    assert!(html.contains("P00***"));
    assert!(
        !html.contains("P001") && !html.contains("DOE"),
        "masked list leaks identity"
    );
    let json = get_with(addr, "/api/studies", auth.as_deref()).text();
    assert!(json.contains("P00***") && !json.contains("P001") && !json.contains("DOE"));
    // Searching by the real ID still works.
    let found = get_with(addr, "/api/studies?patient_id=P001", auth.as_deref()).json();
    assert_eq!(found["studies"].as_array().unwrap().len(), 4);
    drop(web);

    // Basic auth with a named user and an Argon2id hash.
    let cfg = WebConfig {
        users: vec![WebUser {
            name: "radiology".into(),
            password_hash: web::hash_password("s3cret pass").unwrap(),
            role: Role::Viewer,
        }],
        ..config(false, false)
    };
    let (web, _state) = start(&f, &cfg);
    let addr = web.local_addr();
    assert_eq!(get(addr, "/").status, 401);
    let ok = format!("Basic {}", base64("radiology:s3cret pass"));
    let wrong = format!("Basic {}", base64("radiology:s3cret pasS"));
    assert_eq!(get_with(addr, "/", Some(&ok)).status, 200);
    assert_eq!(get_with(addr, "/", Some(&wrong)).status, 401);
}

#[test]
fn start_refuses_an_open_non_loopback_address() {
    let f = fixture();
    let state = Arc::new(WebState::new(f.incoming.clone(), models()));
    let cfg = WebConfig {
        listen: "0.0.0.0:0".into(),
        ..config(false, false)
    };
    let err = web::start(&cfg, &audit_config(true), &f.db_path, &f.data, state)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(
        err.contains("web.listen") && err.contains("no authentication"),
        "{err}"
    );
}

fn base64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (x as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Screenshots of the status, a study and a patient page in headless Chromium, saved to
/// `target/screenshots/` for a person to look at.
#[test]
fn screenshots_in_headless_chromium() {
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!(
            "SKIPPED screenshots_in_headless_chromium: no /usr/bin/chromium (apt-get install chromium)"
        );
        return;
    };
    let f = fixture();
    let (web, state) = start(&f, &config(false, false));
    let addr = web.local_addr();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out_dir = target.join("screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let profile = tempfile::tempdir().unwrap();
    for (name, path, height) in [
        ("status", "/".to_string(), 900),
        ("status-full", "/".to_string(), 1500),
        ("studies", "/studies".to_string(), 900),
        ("study", format!("/studies/{STUDY_A}"), 900),
        ("study-full", format!("/studies/{STUDY_A}"), 2300),
        ("patient", "/patients/P001".to_string(), 900),
        ("status-disk-full", "/".to_string(), 900),
    ] {
        state.set_disk_full(name == "status-disk-full");
        let file = out_dir.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&file);
        let status = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--disable-dev-shm-usage",
                "--no-first-run",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--screenshot={}", file.display()),
                &format!("--window-size=1280,{height}"),
                &format!("http://{addr}{path}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "chromium failed on {path}");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name} is not a PNG");
        assert!(
            bytes.len() > 10_000,
            "{name} looks blank ({} bytes)",
            bytes.len()
        );
        eprintln!("screenshot: {}", file.display());
    }
}

/// `lungwatch serve` itself refuses a non-loopback `web.listen` without authentication,
/// before touching any folder.
#[test]
fn serve_refuses_to_start_open_to_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lungwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\nincoming = {:?}\ndata = {:?}\n[web]\nlisten = \"0.0.0.0:8080\"\n",
            dir.path().join("incoming"),
            dir.path().join("data")
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve kept running with an open, unauthenticated web.listen");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(
        err.contains("web.listen") && err.contains("no authentication"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing created before refusing"
    );
}

// ---- Security (issue 15): HTTPS, users, throttling, the audit trail ----------------------

/// A self-signed EC P-256 certificate for 127.0.0.1 and localhost, made with the openssl
/// command line (as install.sh does); None, with a message, when openssl is missing.
fn self_signed(dir: &Path, test: &str) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "30", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match made {
        Ok(s) if s.success() => Some((cert, key)),
        _ => {
            eprintln!("SKIPPED {test}: no openssl command (apt-get install openssl)");
            None
        }
    }
}

fn have_curl(test: &str) -> bool {
    let ok = std::process::Command::new("curl")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED {test}: no curl command (apt-get install curl)");
    }
    ok
}

/// A request with curl, verifying the server against `cacert`. Err with curl's message
/// when no HTTP exchange happened (TLS refused, connection failed).
fn curl(cacert: &Path, url: &str, extra: &[&str]) -> Result<Response, String> {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(cacert)
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(Response {
        status: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
        headers: std::fs::read_to_string(&head).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
    })
}

fn tls_config(cert: &Path, key: &Path) -> WebConfig {
    WebConfig {
        tls_cert: Some(cert.to_path_buf()),
        tls_key: Some(key.to_path_buf()),
        ..config(false, false)
    }
}

fn user(name: &str, password: &str, role: Role) -> WebUser {
    WebUser {
        name: name.into(),
        password_hash: web::hash_password(password).unwrap(),
        role,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(&format!("{user}:{password}")))
}

/// The checks of `dicom_strings_are_escaped_everywhere` on one page's HTML.
fn assert_escaped(page: &str, html: &str) {
    assert!(html.contains(DISCLAIMER), "{page}");
    assert!(
        !html.contains("<script"),
        "{page} has an unescaped script tag"
    );
    assert!(
        !html.contains("<img src=x"),
        "{page} has an unescaped img tag"
    );
    assert!(!html.contains("<1>"), "{page} has an unescaped patient ID");
}

/// curl over HTTPS against the self-signed certificate: pages, HSTS, the XSS checks, TLS
/// 1.0/1.1 refused (with a control server proving this curl can speak TLS 1.1), and a
/// certificate replaced on disk noticed for the SIGHUP reload.
#[test]
fn https_with_curl_and_the_self_signed_certificate() {
    const TEST: &str = "https_with_curl_and_the_self_signed_certificate";
    if !have_curl(TEST) {
        return;
    }
    let f = fixture();
    let tls_dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(tls_dir.path(), TEST) else {
        return;
    };
    let (web, _state) = start(&f, &tls_config(&cert, &key));
    assert!(web.is_https());
    let base = format!("https://127.0.0.1:{}", web.local_addr().port());
    let r = curl(&cert, &format!("{base}/"), &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains(DISCLAIMER));
    assert!(
        r.headers
            .contains("Strict-Transport-Security: max-age=31536000"),
        "{}",
        r.headers
    );
    assert!(r.text().contains("HTTPS"), "the status page says HTTPS");
    for page in [
        "/".to_string(),
        "/studies".to_string(),
        format!("/studies/{STUDY_EVIL}"),
        "/patients/EVIL%20%3C1%3E".to_string(),
        "/studies?patient_id=%3Cscript%3E".to_string(),
        "/patients/%3Cscript%3Ealert(3)%3C%2Fscript%3E".to_string(),
    ] {
        let r = curl(&cert, &format!("{base}{page}"), &[]).unwrap();
        assert_escaped(&page, &r.text());
    }
    // TLS 1.2 and 1.3 are accepted, each alone.
    for v in [
        ["--tlsv1.2", "--tls-max", "1.2"],
        ["--tlsv1.3", "--tls-max", "1.3"],
    ] {
        assert_eq!(
            curl(&cert, &format!("{base}/healthz"), &v).unwrap().status,
            200,
            "{v:?}"
        );
    }
    // TLS 1.0/1.1: refused by lungwatch, though this curl speaks them (shown against
    // openssl s_server allowing TLS 1.1, when it can be started).
    let old = [
        "--tlsv1.0",
        "--tls-max",
        "1.1",
        "--ciphers",
        "DEFAULT@SECLEVEL=0",
    ];
    let err = curl(&cert, &format!("{base}/healthz"), &old).err();
    assert!(err.is_some(), "TLS 1.1 was accepted");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut control = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-www",
            "-tls1_1",
        ])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut spoke_tls11 = false;
    for _ in 0..50 {
        if curl(&cert, &format!("https://127.0.0.1:{port}/"), &old).is_ok() {
            spoke_tls11 = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    control.kill().unwrap();
    let _ = control.wait();
    if spoke_tls11 {
        eprintln!("control: this curl completed a TLS 1.1 exchange with openssl s_server");
    } else {
        eprintln!(
            "note: the TLS 1.1 control server did not answer; the refusal above stands alone"
        );
    }
    // Plain HTTP to the HTTPS port gets no page.
    let plain = curl(
        &cert,
        &format!("http://127.0.0.1:{}/", web.local_addr().port()),
        &[],
    );
    assert!(plain.map_or(true, |r| !r.text().contains(DISCLAIMER)));
    // A replaced certificate under the same keys is noticed (the daemon restarts the page).
    assert!(!web.tls_files_changed());
    let again = tempfile::tempdir().unwrap();
    let (cert2, key2) = self_signed(again.path(), TEST).unwrap();
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    assert!(web.tls_files_changed());
    drop(web);
    let (web, _state) = start(&f, &tls_config(&cert, &key));
    let base = format!("https://127.0.0.1:{}", web.local_addr().port());
    assert_eq!(
        curl(&cert2, &format!("{base}/healthz"), &[])
            .unwrap()
            .status,
        200
    );
}

/// A non-loopback address needs TLS as well as authentication (or allow_plain_http).
#[test]
fn start_refuses_a_non_loopback_address_without_tls() {
    let f = fixture();
    let state = Arc::new(WebState::new(f.incoming.clone(), models()));
    let cfg = WebConfig {
        listen: "0.0.0.0:0".into(),
        ..config(true, false)
    };
    let err = web::start(
        &cfg,
        &audit_config(true),
        &f.db_path,
        &f.data,
        Arc::clone(&state),
    )
    .err()
    .expect("must refuse")
    .to_string();
    assert!(err.contains("web.listen") && err.contains("TLS"), "{err}");
    // With allow_plain_http it starts, and the status page says why that is risky.
    let cfg = WebConfig {
        allow_plain_http: true,
        ..cfg
    };
    let web = web::start(&cfg, &audit_config(true), &f.db_path, &f.data, state).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], web.local_addr().port()));
    let page = get_with(addr, "/", Some(&format!("Bearer {TOKEN}"))).text();
    assert!(
        page.contains("Security: the web page listens on 0.0.0.0"),
        "{page}"
    );
    assert!(page.contains("plain HTTP"));
    let status = get_with(addr, "/api/status", Some(&format!("Bearer {TOKEN}"))).json();
    assert_eq!(status["https"], false);
    assert!(
        status["security_warnings"][0]
            .as_str()
            .unwrap()
            .contains("unencrypted")
    );
}

/// Every route, on a network-facing config (0.0.0.0, users, token, TLS): none answers
/// patient data without valid credentials, and only admins read the audit trail.
#[test]
fn no_route_returns_patient_data_without_authentication() {
    const TEST: &str = "no_route_returns_patient_data_without_authentication";
    if !have_curl(TEST) {
        return;
    }
    let f = fixture();
    let tls_dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(tls_dir.path(), TEST) else {
        return;
    };
    let cfg = WebConfig {
        listen: "0.0.0.0:0".into(),
        token: Some(TOKEN.into()),
        users: vec![
            user("ann", "viewer pass", Role::Viewer),
            user("boss", "admin pass", Role::Admin),
        ],
        ..tls_config(&cert, &key)
    };
    let (web, _state) = start(&f, &cfg);
    let base = format!("https://127.0.0.1:{}", web.local_addr().port());
    let admin = ["-u", "boss:admin pass"];
    let api = curl(&cert, &format!("{base}/api/studies/{STUDY_A}"), &admin)
        .unwrap()
        .json();
    let id = api["series"][0]["result_id"].as_i64().unwrap();
    // Every route of server.rs's router, each with real identifiers.
    let routes = [
        "/".to_string(),
        "/api/status".to_string(),
        "/studies".to_string(),
        "/studies?patient_id=P001".to_string(),
        "/api/studies".to_string(),
        "/api/studies?patient_id=P001".to_string(),
        format!("/studies/{STUDY_A}"),
        format!("/api/studies/{STUDY_A}"),
        "/patients/P001".to_string(),
        "/api/patients/P001".to_string(),
        format!("/artifacts/{id}/axial-0.png"),
        format!("/artifacts/{id}/labels.nii.gz"),
        "/metrics".to_string(),
        "/audit".to_string(),
        "/no/such/page".to_string(),
    ];
    let leaks = |r: &Response| {
        let t = r.text();
        t.contains("P001")
            || t.contains("DOE")
            || r.body.starts_with(b"\x89PNG")
            || t.contains(STUDY_A)
    };
    // No credentials, and wrong credentials of each kind. Wrong ones count towards the
    // lock-out of their address, so they come from ever new loopback source addresses
    // (127.0.0.10, .11, ...), four each: the throttle is tested on its own below.
    let wrong: [&[&str]; 4] = [
        &[],
        &["-u", "boss:wrong"],
        &["-u", "nobody:admin pass"],
        &["-H", "Authorization: Bearer not-the-token-at-all"],
    ];
    let mut failures = 0;
    for route in &routes {
        for creds in wrong {
            for head in [false, true] {
                let mut args = creds.to_vec();
                let source = format!("127.0.0.{}", 10 + failures / 4);
                if !creds.is_empty() {
                    args.extend(["--interface", &source]);
                    failures += 1;
                }
                if head {
                    args.push("-I");
                }
                let r = curl(&cert, &format!("{base}{route}"), &args).unwrap();
                assert_eq!(r.status, 401, "{route} (HEAD: {head}) with {creds:?}");
                assert!(!leaks(&r), "{route} leaks patient data: {}", r.text());
            }
        }
        // The same route with valid credentials does answer (so the walk means something).
        let r = curl(&cert, &format!("{base}{route}"), &admin).unwrap();
        let expected = if route == "/no/such/page" { 404 } else { 200 };
        assert_eq!(r.status, expected, "{route} as admin: {}", r.text());
    }
    // Health stays open and says nothing clinical.
    let h = curl(&cert, &format!("{base}/healthz"), &[]).unwrap();
    assert_eq!(h.status, 200);
    assert!(!leaks(&h));
    // Roles: viewers and the token read patient pages but not the audit trail.
    for creds in [["-u", "ann:viewer pass"], ["-u", &format!("x:{TOKEN}")]] {
        assert_eq!(
            curl(&cert, &format!("{base}/patients/P001"), &creds)
                .unwrap()
                .status,
            200
        );
        let r = curl(&cert, &format!("{base}/audit"), &creds).unwrap();
        assert_eq!(r.status, 403, "{creds:?}");
    }
    // Other methods are refused before anything else.
    let r = curl(&cert, &format!("{base}/api/patients/P001"), &["-X", "POST"]).unwrap();
    assert_eq!(r.status, 405);
}

/// Five failed logins from one address within a minute: 429 with Retry-After, even for
/// the right password; counted on the status page and in /metrics.
#[test]
fn repeated_failed_logins_get_429() {
    let f = fixture();
    let cfg = WebConfig {
        users: vec![user("ann", "viewer pass", Role::Viewer)],
        ..config(false, false)
    };
    let (web, state) = start(&f, &cfg);
    let addr = web.local_addr();
    let good = basic("ann", "viewer pass");
    // A browser's first request carries no credentials: not a failed login.
    assert_eq!(get(addr, "/").status, 401);
    for _ in 0..4 {
        assert_eq!(
            get_with(addr, "/", Some(&basic("ann", "guess"))).status,
            401
        );
    }
    let metrics = get_with(addr, "/metrics", Some(&good)).text();
    let values = parse_prometheus(&metrics);
    let value = |name: &str| values.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    assert_eq!(
        value("lungwatch_failed_logins_total"),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(value("lungwatch_locked_out_addresses"), Some(0.0));
    let status = get_with(addr, "/api/status", Some(&good)).json();
    assert_eq!(status["logins"]["failed_logins"], 4);
    let page = get_with(addr, "/", Some(&good)).text();
    assert!(
        page.contains("<dt>Failed logins</dt><dd>4</dd>"),
        "status page shows the count"
    );
    // The fifth failure within the minute locks the address out.
    assert_eq!(
        get_with(addr, "/", Some(&basic("ann", "guess5"))).status,
        401
    );
    for creds in [Some(good.as_str()), Some("Basic YW5uOnd4"), None] {
        let r = get_with(addr, "/studies", creds);
        assert_eq!(r.status, 429, "{creds:?}");
        let retry: u64 = r
            .headers
            .lines()
            .find_map(|l| l.strip_prefix("Retry-After: "))
            .expect("Retry-After")
            .trim()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert!(!r.text().contains("P001"));
    }
    // Health is not throttled: monitors must see the box.
    assert_eq!(get(addr, "/healthz").status, 200);
    let counts = state.login_counts();
    assert_eq!(counts.failed_logins, 5);
    assert_eq!(counts.throttled_requests, 3);
    assert_eq!(counts.locked_addresses, 1);
    // The lock-out survives a restart of the page (SIGHUP), as it lives in WebState.
    drop(web);
    let web = web::start(&cfg, &audit_config(true), &f.db_path, &f.data, state).unwrap();
    assert_eq!(get_with(web.local_addr(), "/", Some(&good)).status, 429);
}

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

/// `lungwatch passwd` hashes stdin; `serve` takes the hash and refuses the old keys.
#[test]
fn passwd_hashes_are_accepted_and_sha256_keys_refused() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let hash = line
        .trim()
        .strip_prefix("password_hash = \"")
        .and_then(|h| h.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // That line, pasted into a config, lets the user in (and only with that password).
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[paths]\nincoming = \"/a\"\ndata = \"/b\"\n[web]\nlisten = \"0.0.0.0:8443\"\n\
         tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n[[web.users]]\nname = \"ann\"\n{}\n",
        line.trim()
    );
    let parsed = lungwatch::config::Config::from_toml(&toml, Path::new("t.toml")).unwrap();
    let f = fixture();
    let cfg = WebConfig {
        users: parsed.web.users.clone(),
        ..config(false, false)
    };
    let (web, _state) = start(&f, &cfg);
    assert_eq!(
        get_with(web.local_addr(), "/", Some(&basic("ann", "correct horse"))).status,
        200
    );
    assert_eq!(
        get_with(web.local_addr(), "/", Some(&basic("ann", "correct horsE"))).status,
        401
    );
    drop(web);
    // Too short a password is refused.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    assert!(!child.wait_with_output().unwrap().status.success());
    // The retired SHA-256 keys stop `serve` with instructions, before any folder is made.
    let sha = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    let conf = dir.path().join("old.toml");
    std::fs::write(
        &conf,
        format!(
            "[paths]\nincoming = {:?}\ndata = {:?}\n[web]\nbasic_user = \"it\"\n\
             basic_password_sha256 = {sha:?}\n",
            dir.path().join("incoming"),
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["serve", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("web.basic_") && err.contains("lungwatch passwd"),
        "{err}"
    );
    assert!(!dir.path().join("data").exists());
}

/// `serve` on 0.0.0.0 with authentication but without TLS refuses to start.
#[test]
fn serve_refuses_0_0_0_0_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("lungwatch.toml");
    std::fs::write(
        &conf,
        format!(
            "[paths]\nincoming = {:?}\ndata = {:?}\n[web]\nlisten = \"0.0.0.0:8080\"\n\
             token = \"{TOKEN}\"\n",
            dir.path().join("incoming"),
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["serve", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("web.listen") && err.contains("TLS is not configured"),
        "{err}"
    );
    assert!(!dir.path().join("data").exists());
}

/// The status page over HTTPS in headless Chromium, trusting only this certificate (by
/// its public-key hash), saved as `target/screenshots/status-https.png`.
#[test]
fn screenshot_of_the_status_page_over_https() {
    const TEST: &str = "screenshot_of_the_status_page_over_https";
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIPPED {TEST}: no /usr/bin/chromium (apt-get install chromium)");
        return;
    };
    let f = fixture();
    let tls_dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(tls_dir.path(), TEST) else {
        return;
    };
    let spki = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | \
             openssl dgst -sha256 -binary | base64",
            cert.display()
        ))
        .output()
        .unwrap();
    let spki = String::from_utf8(spki.stdout).unwrap().trim().to_string();
    let (web, _state) = start(&f, &tls_config(&cert, &key));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out_dir = target.join("screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = out_dir.join("status-https.png");
    let _ = std::fs::remove_file(&file);
    let profile = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--ignore-certificate-errors-spki-list={spki}"),
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", file.display()),
            "--window-size=1280,900",
            &format!("https://127.0.0.1:{}/", web.local_addr().port()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "chromium failed");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // An interstitial ("Your connection is not private") is a small page; the status page
    // with its cards is not. A person checks the image itself.
    assert!(bytes.len() > 10_000, "looks blank ({} bytes)", bytes.len());
    eprintln!("screenshot: {}", file.display());
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
    let on = web::start(
        &cfg,
        &audit_config(true),
        &f.db_path,
        &f.data,
        Arc::clone(&state),
    )
    .unwrap();
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

/// `lungwatch passwd` on a terminal (a pseudo-terminal made by Python's `pty`): asks twice,
/// never echoes the password, prints the hash line.
#[test]
fn passwd_on_a_terminal_does_not_echo() {
    const SCRIPT: &str = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "passwd"])
out = b""
def read(secs):
    global out
    end = time.time() + secs
    while time.time() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                return
read(1); os.write(fd, b"terminal secret 1\n"); read(1); os.write(fd, b"terminal secret 1\n"); read(5)
sys.stdout.write(out.decode())
"#;
    let out = match std::process::Command::new("python3")
        .args(["-c", SCRIPT, env!("CARGO_BIN_EXE_lungwatch")])
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            eprintln!("SKIPPED passwd_on_a_terminal_does_not_echo: no python3 with pty");
            return;
        }
    };
    assert!(
        out.contains("Password: ") && out.contains("Repeat it: "),
        "{out:?}"
    );
    assert!(out.contains("password_hash = \"$argon2id$"), "{out:?}");
    assert!(
        !out.contains("terminal secret"),
        "the password was echoed: {out:?}"
    );
}

/// `lungwatch check` reads the certificate like `serve` does and prints its fingerprint,
/// the one openssl computes; a missing key file fails the check.
#[test]
fn check_reports_the_certificate_fingerprint() {
    const TEST: &str = "check_reports_the_certificate_fingerprint";
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(dir.path(), TEST) else {
        return;
    };
    let conf = dir.path().join("lungwatch.toml");
    let write = |key: &Path| {
        std::fs::write(
            &conf,
            format!("[web]\ntls_cert = {cert:?}\ntls_key = {key:?}\n"),
        )
        .unwrap()
    };
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
            .args(["check", "--models"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
            .arg("--config")
            .arg(&conf)
            .output()
            .unwrap()
    };
    write(&key);
    let out = check();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fp = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let fp = String::from_utf8(fp.stdout).unwrap();
    let fp = fp.trim().rsplit('=').next().unwrap().to_string();
    assert!(
        text.contains(&format!(
            "web TLS certificate: ok, SHA-256 fingerprint {fp}"
        )),
        "{text}"
    );
    write(&dir.path().join("missing.pem"));
    let out = check();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("web.tls_key"));
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
