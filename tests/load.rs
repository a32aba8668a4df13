//! Load and longitudinal follow-up end to end: twenty series dropped into the folder at
//! once all complete without loss, and one patient's three studies form a timeline in
//! date order with the change between scans. The series are the three covid-ct-md
//! exports re-identified (new patient, study, series and instance UIDs, dates), so the
//! pixels are real and the expected figures are known.
//!
//! Prints the throughput and the daemon's idle and busy resident memory:
//! `cargo test --release --test load -- --nocapture`

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, Identity, files_under, reidentify};
use lungwatch::db::ReadQueries;

const SERIES: usize = 20;
const TIMELINE_PATIENT: &str = "LW-FOLLOWUP-1";

/// The copies: the first three are one patient's normal, COVID-19 and CAP scans on three
/// dates (written in reverse date order, so ordering comes from the dates); the other
/// seventeen are one study per patient.
fn plan() -> Vec<(&'static str, Identity)> {
    let sources = ["covid19-P002", "cap-cap002", "normal-normal002"];
    let timeline = [
        ("cap-cap002", "20200330"),
        ("covid19-P002", "20200316"),
        ("normal-normal002", "20200302"),
    ];
    (0..SERIES)
        .map(|i| {
            let (source, patient_id, study_date) = match timeline.get(i) {
                Some(&(source, date)) => (source, TIMELINE_PATIENT.to_string(), date),
                None => (sources[i % 3], format!("LW-LOAD-{i:02}"), "20200401"),
            };
            let identity = Identity {
                patient_id,
                study_date,
                study_uid: format!("2.25.7310{i:02}1"),
                series_uid: format!("2.25.7310{i:02}2"),
                accession: format!("ACC{i:04}"),
            };
            (source, identity)
        })
        .collect()
}

/// Resident and peak resident memory of a process, in MiB, from /proc.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn twenty_series_dropped_at_once_complete_and_build_a_timeline() {
    let Some(data) = common::shared_data("20-series load") else {
        return;
    };
    let mut d = Daemon::new("");
    // Prepare every copy beside the drop folder (same file system), then drop them all.
    let staging: PathBuf = d.root.path().join("prepared");
    let plan = plan();
    let mut total_slices = 0i64;
    for (i, (source, who)) in plan.iter().enumerate() {
        let src = data.join("covid-ct-md").join(source);
        total_slices += reidentify(
            &files_under(&src),
            who,
            &staging.join(format!("series{i:02}")),
        ) as i64;
    }
    d.start();
    d.web_address(); // models loaded, page up: the daemon is idle and ready
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.child.as_ref().unwrap().id();
    let (idle_rss, _) = memory_mib(pid);

    let dropped = Instant::now();
    std::fs::rename(&staging, d.incoming.join("burst")).unwrap();
    let mut busy_rss: f64 = 0.0;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let counts = loop {
        busy_rss = busy_rss.max(memory_mib(pid).0);
        let c = d.counts();
        if let Some(c) = c.filter(|c| c.jobs_done + c.jobs_failed >= SERIES as i64) {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "20 series not analysed in time; counts {:?}\n{}",
            d.counts(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let elapsed = dropped.elapsed().as_secs_f64();
    let (_, peak_rss) = memory_mib(pid);
    assert_eq!(counts.jobs_failed, 0, "{}", d.log());
    assert_eq!(counts.instances, total_slices, "every slice stored once");
    assert_eq!((counts.quarantined, counts.series_skipped), (0, 0));
    assert_eq!(counts.series_selected, SERIES as i64);
    assert!(d.incoming_files().is_empty(), "drop folder not emptied");
    let results = d.db().all_results().unwrap();
    assert_eq!(results.len(), SERIES, "one result per series");

    // Copies of the same export give the same figures: the analysis is deterministic.
    for (source, _) in plan.iter().take(3) {
        let same: Vec<_> = plan
            .iter()
            .filter(|(s, _)| s == source)
            .map(|(_, who)| {
                let r = results
                    .iter()
                    .find(|r| r.report.series_instance_uid == who.series_uid)
                    .expect("a result per planned series");
                (r.report.lesion_volume_ml, r.report.affected_ratio.total)
            })
            .collect();
        assert!(same.windows(2).all(|w| w[0] == w[1]), "{source}: {same:?}");
    }

    let series_per_min = SERIES as f64 / elapsed * 60.0;
    println!(
        "load: {SERIES} series, {total_slices} slices dropped at once, all analysed in {elapsed:.1} s: \
         {series_per_min:.1} series/min, {:.0} slices/s",
        total_slices as f64 / elapsed
    );
    println!(
        "daemon RSS: idle {idle_rss:.0} MiB, busy max {busy_rss:.0} MiB (sampled every 0.25 s), peak {peak_rss:.0} MiB (VmHWM)"
    );

    // The follow-up patient: three studies in date order, each change consistent with
    // the ratios, normal first and the COVID-19 scan clearly worse than the CAP one.
    let (status, body) = d.http_get(&format!("/api/patients/{TIMELINE_PATIENT}"));
    assert_eq!(status, 200, "{body}");
    let timeline: serde_json::Value = serde_json::from_str(&body).unwrap();
    let studies = timeline["studies"].as_array().expect("studies array");
    assert_eq!(studies.len(), 3, "{body}");
    let dates: Vec<&str> = studies
        .iter()
        .map(|s| s["study_date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["20200302", "20200316", "20200330"]);
    let ratio = |k: usize| studies[k]["affected_ratio"].as_f64().unwrap();
    assert!(ratio(0) < 0.005, "normal scan ratio {}", ratio(0));
    assert!(
        ratio(1) > 2.0 * ratio(2),
        "covid {} cap {}",
        ratio(1),
        ratio(2)
    );
    assert!(studies[0]["change_pp"].is_null());
    for k in 1..3 {
        let change = studies[k]["change_pp"].as_f64().unwrap();
        assert!(
            (change - 100.0 * (ratio(k) - ratio(k - 1))).abs() < 1e-6,
            "study {k}: change {change} pp vs ratios {} {}",
            ratio(k - 1),
            ratio(k)
        );
        let expected = if change > 2.0 {
            "progression"
        } else if change < -2.0 {
            "regression"
        } else {
            "stable"
        };
        assert_eq!(studies[k]["trend"], expected, "study {k}");
        println!(
            "timeline {}: affected {:.2} %, change {change:+.2} pp, {}",
            dates[k],
            100.0 * ratio(k),
            expected
        );
    }
    // The page shows the same timeline, with its chart.
    let (status, page) = d.http_get(&format!("/patients/{TIMELINE_PATIENT}"));
    assert_eq!(status, 200);
    assert!(page.contains("<svg"), "no chart on the patient page");
    for date in ["2020-03-02", "2020-03-16", "2020-03-30"] {
        assert!(page.contains(date), "{date} missing from the patient page");
    }
    // Screenshots of the three pages in headless Chromium, kept under target/screenshots.
    let covid_study = &plan[1].1.study_uid;
    screenshot_pages(
        &d,
        &[
            ("daemon-status", "/".to_string()),
            ("daemon-study", format!("/studies/{covid_study}")),
            ("daemon-patient", format!("/patients/{TIMELINE_PATIENT}")),
        ],
    );
    assert!(d.stop_with(15));
}

/// Renders each page with Debian's headless Chromium into target/screenshots/NAME.png
/// (tests/web/ writes its synthetic-data pages beside them).
/// Skips with a message where Chromium is not installed.
fn screenshot_pages(d: &Daemon, pages: &[(&str, String)]) {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("SKIPPED screenshots: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let address = d.web_address();
    for (name, path) in pages {
        let png = out_dir.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&png);
        let profile = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--disable-dev-shm-usage",
                "--window-size=1280,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("http://{address}{path}"))
            .output()
            .unwrap();
        let size = std::fs::metadata(&png).map_or(0, |m| m.len());
        assert!(
            size > 10_000,
            "{name}: no real screenshot ({size} bytes)\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        println!(
            "screenshot {name} ({path}): {} ({size} bytes)",
            png.display()
        );
    }
}
