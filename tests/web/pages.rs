//! Every page, the JSON API and the metrics, escaping, artifacts, screenshots.

use super::*;

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
