//! The daemon end to end on real exports: interleaved bursts, SIGKILL mid-ingest, growing
//! files, garbage, and clean shutdown on SIGTERM/SIGINT.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use common::phantom::PhantomSpec;
use common::{Daemon, covid_series, drop_file, shuffle};
use lungwatch::db::ReadQueries;
use lungwatch::ingest::examine;

const TOTAL_SLICES: i64 = 133 + 131 + 167;

/// Series UID of each covid-ct-md folder, read from its first file.
fn series_uids(data: &std::path::Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (folder, path) in covid_series(data) {
        out.entry(folder).or_insert_with(|| {
            examine(&std::fs::read(path).unwrap())
                .unwrap()
                .series_instance_uid
                .unwrap()
        });
    }
    out
}

/// Everything indexed is in the store once, and nothing else is there.
fn assert_store_consistent(d: &Daemon) {
    let counts = d.counts().unwrap();
    assert_eq!(
        d.store_files().len() as i64,
        counts.instances,
        "store files vs indexed instances"
    );
    assert!(
        common::files_under(&d.data.join("staging")).is_empty(),
        "staging left behind"
    );
}

#[test]
fn interleaved_bursts_assemble_into_complete_selected_series() {
    let Some(data) = common::shared_data("interleaved bursts") else {
        return;
    };
    let mut files = covid_series(&data);
    shuffle(&mut files, 0x5eed);
    let mut d = Daemon::new("");
    d.start();
    // Four bursts, interleaving all three series, into nested folders as some PACS do.
    for (burst, chunk) in files.chunks(files.len() / 4 + 1).enumerate() {
        let sub = d.incoming.join(format!("export{burst}"));
        std::fs::create_dir_all(&sub).unwrap();
        for (i, (folder, path)) in chunk.iter().enumerate() {
            drop_file(path, &sub, &format!("{folder}-{i}.dcm"));
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    let c = d.wait_for(120, "three complete selected series", |c| {
        c.series_selected == 3 && c.instances == TOTAL_SLICES
    });
    assert_eq!((c.quarantined, c.series_skipped), (0, 0));
    assert_eq!(c.jobs_pending + c.jobs_running + c.jobs_done, 3);
    // The worker analyses them; each result is stored with its job's `done`.
    let c = d.wait_for(240, "three analysed series", |c| c.jobs_done == 3);
    assert_eq!(c.jobs_failed, 0);
    let results = d.db().all_results().unwrap();
    assert_eq!(results.len(), 3, "one result per job");
    let ratio = |slices: usize| {
        let r = results
            .iter()
            .find(|r| r.report.slice_count == slices)
            .expect("result by slice count");
        for file in ["labels.nii.gz", "coronal.png", "axial-0.png"] {
            assert!(
                d.data.join(&r.artifacts_dir).join(file).is_file(),
                "{file} of {slices}-slice series"
            );
        }
        r.report.affected_ratio.total
    };
    let (covid, cap, normal) = (ratio(133), ratio(131), ratio(167));
    assert!(
        normal < 0.005 && covid > 2.0 * cap,
        "ratios {covid} {cap} {normal}"
    );
    for r in &results {
        println!(
            "series {}: processing {} ms (stages {:?})",
            r.report.series_instance_uid, r.report.timings_ms.total, r.report.timings_ms
        );
    }
    // The same results through the web page and its API.
    assert_eq!(d.http_get("/healthz").0, 200);
    let (status, page) = d.http_get("/");
    assert_eq!(status, 200);
    assert!(page.contains("Decision support only, not a diagnosis."));
    let (status, studies) = d.http_get("/api/studies");
    assert_eq!(status, 200, "{studies}");
    for r in &results {
        assert!(
            studies.contains(&r.report.series_instance_uid)
                || studies.contains(r.report.study_instance_uid.as_deref().unwrap_or("?")),
            "{studies}"
        );
        let patient = r
            .report
            .patient_id
            .clone()
            .expect("covid-ct-md has patient IDs");
        let (status, timeline) = d.http_get(&format!("/api/patients/{patient}"));
        assert_eq!(status, 200, "{timeline}");
        assert!(timeline.contains(&format!("{}", r.report.severity_score)));
    }
    let (status, metrics) = d.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("lungwatch_up"), "{metrics}");
    assert!(
        d.incoming_files().is_empty(),
        "drop folder not emptied: {:?}",
        d.incoming_files()
    );
    assert_store_consistent(&d);
    let db = d.db();
    for (folder, uid) in series_uids(&data) {
        let expected = common::files_under(&data.join("covid-ct-md").join(&folder)).len();
        assert_eq!(
            db.series_instances(&uid).unwrap().len(),
            expected,
            "{folder}"
        );
    }

    // `status --json` reports the same counts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["status", "--json", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["counts"]["instances"], TOTAL_SLICES);
    assert_eq!(status["counts"]["jobs_done"], 3);

    // Dropping the same series again stores nothing twice.
    for (folder, path) in files.iter().take(40) {
        drop_file(
            path,
            &d.incoming,
            &format!(
                "again-{folder}-{}",
                path.file_name().unwrap().to_string_lossy()
            ),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !d.incoming_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "duplicates not cleared\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(d.counts().unwrap().instances, TOTAL_SLICES);
    assert_store_consistent(&d);
    assert!(d.stop_with(15));
}

#[test]
fn sigkill_mid_ingest_then_restart_loses_and_duplicates_nothing() {
    let Some(data) = common::shared_data("SIGKILL mid-ingest") else {
        return;
    };
    let mut files = covid_series(&data);
    shuffle(&mut files, 42);
    let mut d = Daemon::new("");
    for (i, (folder, path)) in files.iter().enumerate() {
        drop_file(path, &d.incoming, &format!("{folder}-{i:04}.dcm"));
    }
    d.start();
    d.wait_for(60, "some instances indexed", |c| c.instances >= 40);
    d.kill9();
    let after_kill = d.counts().unwrap().instances;
    assert!(
        after_kill < TOTAL_SLICES,
        "killed too late to test anything"
    );
    d.start();
    d.wait_for(60, "a few more", |c| c.instances >= after_kill + 60);
    d.kill9();
    d.start();
    let c = d.wait_for(120, "every slice indexed after restarts", |c| {
        c.instances == TOTAL_SLICES && c.series_selected == 3
    });
    assert_eq!(c.quarantined, 0);
    assert_eq!(c.jobs_pending + c.jobs_running + c.jobs_done, 3);
    assert!(d.incoming_files().is_empty());
    assert_store_consistent(&d);
    assert!(d.stop_with(15));
}

#[test]
fn sigkill_mid_job_then_restart_completes_the_job_once() {
    let Some(data) = common::shared_data("SIGKILL mid-job") else {
        return;
    };
    let mut d = Daemon::new("");
    let folder = data.join("covid-ct-md").join("covid19-P002");
    for (i, path) in common::files_under(&folder).iter().enumerate() {
        drop_file(path, &d.incoming, &format!("p002-{i:04}.dcm"));
    }
    d.start();
    d.wait_for(120, "the job running", |c| c.jobs_running == 1);
    d.kill9();
    let c = d.counts().unwrap();
    assert_eq!((c.jobs_running, c.jobs_done), (1, 0), "killed mid-job");
    d.start();
    let c = d.wait_for(120, "the job done after restart", |c| c.jobs_done == 1);
    assert_eq!((c.jobs_pending, c.jobs_running, c.jobs_failed), (0, 0, 0));
    let results = d.db().all_results().unwrap();
    assert_eq!(results.len(), 1, "exactly one result");
    assert!(
        d.log().contains("pending again"),
        "the interrupted job was requeued"
    );
    assert!(d.stop_with(15));
}

#[test]
fn growing_file_is_not_taken_until_complete() {
    let Some(data) = common::shared_data("growing file") else {
        return;
    };
    let src = std::fs::read(data.join("covid-ct-md/cap-cap002/IM0001.dcm")).unwrap();
    let mut d = Daemon::new("");
    d.start();
    std::thread::sleep(Duration::from_millis(500));
    let target = d.incoming.join("IM0001.dcm");
    let mut f = std::fs::File::create(&target).unwrap();
    // Written in 12 pieces over ~4 s: slower than the 1 s stability window as a whole,
    // but each pause shorter than it.
    for piece in src.chunks(src.len() / 12 + 1) {
        f.write_all(piece).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(350));
        let c = d.counts();
        if let Some(c) = c {
            assert_eq!(
                (c.instances, c.quarantined),
                (0, 0),
                "taken while still growing"
            );
        }
    }
    drop(f);
    let c = d.wait_for(30, "the finished file stored", |c| c.instances == 1);
    assert_eq!(c.quarantined, 0);
    assert!(d.stop_with(15));
}

#[test]
fn garbage_is_quarantined_with_reasons_and_the_daemon_keeps_going() {
    let Some(data) = common::shared_data("garbage") else {
        return;
    };
    let mut d = Daemon::new("");
    let real = std::fs::read(data.join("covid-ct-md/cap-cap002/IM0002.dcm")).unwrap();
    let conf = data.join("dicom-conformance");
    let mut noise = vec![0u8; 70_000];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(d.incoming.join("random.bin"), &noise).unwrap();
    std::fs::write(d.incoming.join("empty.dcm"), b"").unwrap();
    std::fs::write(d.incoming.join("half.dcm"), &real[..real.len() / 2]).unwrap();
    std::fs::write(d.incoming.join("notes.txt"), b"exported by PACS\n").unwrap();
    std::fs::copy(
        conf.join("cornerstone/no-pixel-data.dcm"),
        d.incoming.join("sr.dcm"),
    )
    .unwrap();
    std::fs::copy(
        conf.join(
            "cornerstone/CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm",
        ),
        d.incoming.join("jpeg12.dcm"),
    )
    .unwrap();
    std::fs::copy(
        conf.join("pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm"),
        d.incoming.join("short.dcm"),
    )
    .unwrap();
    std::fs::copy(
        conf.join("pydicom-data/bad_sequence.dcm"),
        d.incoming.join("bad_sequence.dcm"),
    )
    .unwrap();
    // A real slice without its Series Instance UID.
    let mut obj =
        lungwatch::dicom::read::parse(&real, lungwatch::dicom::read::Extent::Full).unwrap();
    obj.remove_element(dicom_dictionary_std::tags::SERIES_INSTANCE_UID);
    obj.write_to_file(d.incoming.join("no-series.dcm")).unwrap();
    // Two files claiming the same SOP Instance UID with different pixels.
    // (cornerstone's CTImage.dcm has real UIDs; the TotalSegmentator files have none.)
    let first = conf.join("cornerstone/CTImage.dcm");
    let mut altered = std::fs::read(&first).unwrap();
    let mid = altered.len() / 2;
    altered[mid] ^= 0x55;
    std::fs::copy(&first, d.incoming.join("a-original.dcm")).unwrap();
    d.start();
    d.wait_for(30, "the original stored", |c| c.instances >= 3);
    std::fs::write(d.incoming.join("b-altered.dcm"), &altered).unwrap();
    let c = d.wait_for(60, "garbage quarantined", |c| c.quarantined >= 8);
    // bad_sequence.dcm is a real, decodable CT image; the too-short J2K file decodes
    // identically to its complete twin (only a trailing delimiter is missing).
    assert_eq!(
        c.instances,
        3,
        "{:?}",
        d.db().recent_quarantine(20).unwrap()
    );
    let reasons: BTreeMap<String, String> = d
        .db()
        .recent_quarantine(20)
        .unwrap()
        .into_iter()
        .map(|q| {
            let name = std::path::Path::new(&q.original_name)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, q.reason_code)
        })
        .collect();
    let expected = [
        ("random.bin", "not-dicom"),
        ("empty.dcm", "empty"),
        ("half.dcm", "truncated"),
        ("notes.txt", "not-dicom"),
        ("sr.dcm", "missing-pixel-data"),
        ("jpeg12.dcm", "undecodable-transfer-syntax"),
        ("no-series.dcm", "no-series-identity"),
        ("b-altered.dcm", "conflicting-duplicate"),
    ];
    for (name, code) in expected {
        assert_eq!(
            reasons.get(name).map(String::as_str),
            Some(code),
            "{name}: {reasons:?}"
        );
    }
    // Quarantined files are kept, in a folder per reason.
    assert!(
        d.data
            .join("quarantine/truncated")
            .read_dir()
            .unwrap()
            .count()
            == 1
    );
    // Still alive and still ingesting.
    drop_file(
        &data.join("covid-ct-md/cap-cap002/IM0003.dcm"),
        &d.incoming,
        "good.dcm",
    );
    d.wait_for(30, "a good file after the garbage", |c| c.instances == 4);
    assert!(d.incoming_files().is_empty());
    assert!(d.stop_with(2), "SIGINT should stop cleanly");
}

#[test]
fn sigterm_and_sigint_stop_cleanly_mid_ingest() {
    let Some(data) = common::shared_data("clean shutdown") else {
        return;
    };
    for signal in [15, 2] {
        let mut d = Daemon::new("");
        let files = covid_series(&data);
        for (i, (folder, path)) in files.iter().enumerate() {
            drop_file(path, &d.incoming, &format!("{folder}-{i:04}.dcm"));
        }
        d.start();
        d.wait_for(60, "ingest under way", |c| c.instances >= 20);
        assert!(
            d.stop_with(signal),
            "exit status after signal {signal}\n{}",
            d.log()
        );
        let indexed = d.counts().unwrap().instances;
        // Every file is either still waiting in the drop folder or stored and indexed.
        assert_eq!(
            d.incoming_files().len() as i64 + indexed,
            TOTAL_SLICES,
            "signal {signal}"
        );
        assert_store_consistent(&d);
        assert!(d.log().contains("shutdown requested"), "{}", d.log());
    }
}

/// A certificate replaced on disk under unchanged `web.tls_*` keys is served after SIGHUP
/// (`systemctl reload lungwatch`), checked with curl against each certificate in turn.
#[test]
fn sighup_reloads_a_replaced_certificate() {
    let tls = tempfile::tempdir().unwrap();
    let make = |name: &str| -> Option<(std::path::PathBuf, std::path::PathBuf)> {
        let (cert, key) = (
            tls.path().join(format!("{name}.crt")),
            tls.path().join(format!("{name}.key")),
        );
        let ok = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some((cert, key))
    };
    let curl_ok = std::process::Command::new("curl")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let (Some((cert_a, key_a)), Some((cert_b, key_b)), true) = (make("a"), make("b"), curl_ok)
    else {
        eprintln!("SKIPPED sighup_reloads_a_replaced_certificate: needs openssl and curl");
        return;
    };
    let (cert, key) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
    std::fs::copy(&cert_a, &cert).unwrap();
    std::fs::copy(&key_a, &key).unwrap();
    let mut d = common::Daemon::new(&format!("tls_cert = {cert:?}\ntls_key = {key:?}\n"));
    d.start();
    let port = |d: &common::Daemon, nth: usize| -> u16 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let log = d.log();
            let found = log
                .lines()
                .filter(|l| {
                    l.contains("web page on https://") || l.contains("restarted on https://")
                })
                .nth(nth)
                .map(|l| {
                    l.rsplit(':')
                        .next()
                        .unwrap()
                        .trim()
                        .trim_end_matches('/')
                        .parse()
                        .unwrap()
                });
            if let Some(p) = found {
                return p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no HTTPS line {nth}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let fetch = |cacert: &std::path::Path, port: u16| {
        std::process::Command::new("curl")
            .args(["-sf", "--max-time", "10", "--cacert"])
            .arg(cacert)
            .arg(format!("https://127.0.0.1:{port}/healthz"))
            .output()
            .unwrap()
            .status
            .success()
    };
    let p = port(&d, 0);
    assert!(fetch(&cert_a, p), "certificate a served at start");
    assert!(!fetch(&cert_b, p));
    std::fs::copy(&cert_b, &cert).unwrap();
    std::fs::copy(&key_b, &key).unwrap();
    d.hup();
    let p = port(&d, 1);
    assert!(
        fetch(&cert_b, p),
        "certificate b served after SIGHUP:\n{}",
        d.log()
    );
    assert!(!fetch(&cert_a, p));
    assert!(d.stop_with(15));
}

/// A copy of the shipped models whose classifier entry carries `version` (the version is
/// not part of any checksum, so the copy loads as the shipped one does).
fn models_copy(dir: &std::path::Path, version: &str) {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    std::fs::create_dir_all(dir).unwrap();
    for name in ["lung_seg.onnx", "lesion_seg.onnx", "classifier.onnx"] {
        std::fs::copy(shipped.join(name), dir.join(name)).unwrap();
    }
    let manifest = std::fs::read_to_string(shipped.join("manifest.toml")).unwrap();
    let at = manifest.find("[models.classifier]").unwrap();
    let (head, tail) = manifest.split_at(at);
    let tail = tail.replacen("version = \"", &format!("version = \"{version}-"), 1);
    std::fs::write(dir.join("manifest.toml"), format!("{head}{tail}")).unwrap();
}

#[test]
fn sighup_puts_new_models_in_service_and_keeps_them_when_a_folder_is_bad() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, bad) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("bad"),
    );
    models_copy(&a, "site-a");
    models_copy(&b, "site-b");
    models_copy(&bad, "site-bad");
    std::fs::remove_file(bad.join("lesion_seg.onnx")).unwrap();
    // The phantom below has 16 slices; [models] stays last, hup() rewrites it.
    let mut d = common::Daemon::new(&format!(
        "[selection]\nmin_slices = 4\n[models]\ndir = {a:?}\n"
    ));
    d.start();
    let classifier_version = |d: &common::Daemon| -> String {
        let (code, body) = d.http_get("/api/status");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "classifier")
            .unwrap()["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(classifier_version(&d).contains("site-a-"));
    let hup = |d: &common::Daemon, models: &std::path::Path| {
        let text = std::fs::read_to_string(&d.config).unwrap();
        let start = text.find("[models]").unwrap();
        std::fs::write(
            &d.config,
            format!("{}[models]\ndir = {models:?}\n", &text[..start]),
        )
        .unwrap();
        d.hup();
    };
    let wait_log = |d: &common::Daemon, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    hup(&d, &b);
    wait_log(&d, "SIGHUP: models reloaded from");
    assert!(classifier_version(&d).contains("site-b-"), "{}", d.log());
    // A folder that does not load: reported, and B stays in service.
    hup(&d, &bad);
    wait_log(&d, "not loaded, keeping those in service");
    assert!(classifier_version(&d).contains("site-b-"));
    // The next job runs on B: its stored report names B's classifier.
    let spec = PhantomSpec::small(7);
    d.drop_phantom(&spec);
    let deadline = Instant::now() + Duration::from_secs(120);
    let report = loop {
        let (_, body) = d.http_get(&format!("/api/studies/{}", spec.study_uid));
        let study: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(series) = study["series"].as_array().and_then(|s| s.first()) {
            break series["report"].clone();
        }
        assert!(Instant::now() < deadline, "no result:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let used: Vec<&str> = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert!(used.iter().any(|v| v.contains("site-b-")), "{report}");
    assert!(d.stop_with(15));
}
