//! The web page end to end on a database made through the public API: pages, JSON API,
//! metrics, health, escaping, authentication, masking, artifact serving, and headless
//! Chromium screenshots (skipped with a message when `chromium` is absent).

#[path = "../common/mod.rs"]
mod common;

mod access;
mod audit;
mod escaping;
mod https;
mod pages;

use common::self_signed;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lungwatch::config::{AuditConfig, Role, WebConfig, WebUser};
use lungwatch::db::{Database, EventLevel, FailureKind, NewInstance, now_secs};
use lungwatch::dicom::InstanceHeader;
use lungwatch::report::{
    AffectedRatio, BelowThreshold, Class, ModelRef, Probabilities, SeriesReport, Sides, Timings,
    ZoneScores, Zones,
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
    let zones = Zones {
        right_upper: s.affected * 0.3,
        right_middle: s.affected * 0.9,
        right_lower: s.affected * 1.4,
        left_upper: s.affected * 0.4,
        left_middle: s.affected,
        left_lower: s.affected * 1.6,
    };
    // The rule of the below_threshold table below.
    let zone_min_ratio = if s.affected > 0.1 { 0.01 } else { 0.0 };
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
        zones,
        zone_scores: ZoneScores::of(&zones, zone_min_ratio),
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

impl Fixture {
    /// A temporary root with `data/` (an empty database in it) and an incoming folder of
    /// that name.
    fn empty(incoming: &str) -> (Fixture, Database) {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let incoming = root.path().join(incoming);
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&incoming).unwrap();
        let db_path = data.join("lungwatch.sqlite");
        let db = Database::open(&db_path).unwrap();
        let f = Fixture {
            _root: root,
            db_path,
            data,
            incoming,
        };
        (f, db)
    }
}

fn fixture() -> Fixture {
    let (f, mut db) = Fixture::empty("incoming");
    let root = f._root.path().to_path_buf();
    let data = f.data.clone();
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
    std::fs::create_dir_all(root.join("outside")).unwrap();
    std::fs::write(root.join("outside/coronal.png"), b"secret").unwrap();
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
    f
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
    (start_with(f, config, Arc::clone(&state)), state)
}

/// The page on `f`, with the audit trail on, sharing `state` with the test.
fn start_with(f: &Fixture, config: &WebConfig, state: Arc<WebState>) -> WebHandle {
    web::start(config, &audit_config(true), &f.db_path, &f.data, state).unwrap()
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

// ---- Security (issue 15): HTTPS, users, throttling, the audit trail ----------------------

/// A self-signed EC P-256 certificate for 127.0.0.1 and localhost, made with the openssl
/// command line (as install.sh does); None, with a message, when openssl is missing.
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
