//! The DICOM receiver in the real binary, driven by DCMTK's `echoscu` and `storescu`:
//! verification, AE title checks, a series sent by C-STORE against the same series dropped
//! in the folder, two senders at once, and a sender killed mid-association.
//!
//! Skipped with a message when DCMTK is not installed (`apt-get install dcmtk`), and the
//! real-data tests when ../shared/data is absent.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::peers::{dicom_address, installed};
use common::{Daemon, covid_series, drop_file};
use lungwatch::db::{AssociationRecord, Database, ReadQueries};
use lungwatch::dicom::header::{hex, sha256};
use lungwatch::ingest::examine;

const TOTAL_SLICES: i64 = 133 + 131 + 167;

/// True when DCMTK's network tools are installed; otherwise says the test is skipped.
fn dcmtk(test: &str) -> bool {
    installed(
        test,
        &["echoscu", "storescu", "dcmodify", "dsrdump"],
        "dcmtk",
    )
}

/// A daemon with the DICOM receiver on a free loopback port.
fn dicom_daemon(extra: &str) -> (Daemon, SocketAddr) {
    let mut d = Daemon::new(&format!(
        "[dicom]\nlisten = \"127.0.0.1:0\"\nae_title = \"LUNGWATCH\"\n{extra}"
    ));
    d.start();
    let addr = dicom_address(&d);
    (d, addr)
}

fn echoscu(addr: SocketAddr, calling: &str, called: &str) -> Output {
    Command::new("echoscu")
        .args(["-aet", calling, "-aec", called])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .output()
        .unwrap()
}

/// `storescu` proposing JPEG lossless (the files' own transfer syntax) and the uncompressed
/// ones, for the SOP classes of the files only, scanning the given folders.
fn storescu(addr: SocketAddr, folders: &[PathBuf]) -> Command {
    let mut c = Command::new("storescu");
    c.args(["-xs", "-R", "-aet", "STORESCU", "-aec", "LUNGWATCH", "+sd"])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(folders);
    c
}

/// The covid-ct-md series as a PACS would send them. The exports have an empty SOP
/// Instance UID, which a C-STORE cannot carry (storescu refuses: "bad size"), so each copy
/// gets, with DCMTK's dcmodify, the UID lungwatch derives for the original file. Built once
/// per test run under the target's temporary folder.
fn sendable_series(data: &Path) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dicom_scp-sendable");
        let _ = std::fs::remove_dir_all(&root);
        let files = covid_series(data);
        std::thread::scope(|scope| {
            for chunk in files.chunks(files.len().div_ceil(2)) {
                let root = &root;
                scope.spawn(move || {
                    for (folder, path) in chunk {
                        let bytes = std::fs::read(path).unwrap();
                        let identity = examine(&bytes).unwrap().instance_identity(&sha256(&bytes));
                        let dest = root.join(folder).join(path.file_name().unwrap());
                        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                        std::fs::write(&dest, &bytes).unwrap();
                        if identity.derived {
                            let set = format!("(0008,0018)={}", identity.uid);
                            let ok = Command::new("dcmodify")
                                .args(["-nb", "-i", &set])
                                .arg(&dest)
                                .output()
                                .unwrap();
                            assert!(ok.status.success(), "dcmodify {}: {ok:?}", dest.display());
                        }
                    }
                });
            }
        });
        root
    })
    .clone()
}

fn series_folders(data: &Path, names: &[&str]) -> Vec<PathBuf> {
    let root = sendable_series(data);
    names.iter().map(|n| root.join(n)).collect()
}

/// The association log, newest first, once it holds `n` rows: a row is written when its
/// association's thread ends, just after the peer has seen the release.
fn associations(d: &Daemon, n: usize) -> Vec<AssociationRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = d.db().recent_associations(100).unwrap();
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} associations logged, {n} expected:\n{}",
            rows.len(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every indexed instance is in the store once, complete and with the recorded hash;
/// nothing else is there and nothing is left in staging.
fn assert_store_consistent(d: &Daemon) {
    let db = d.db();
    let counts = db.status_counts().unwrap();
    let store = d.data.join("store");
    let files = d.store_files();
    assert_eq!(files.len() as i64, counts.instances, "store files vs index");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let digest = sha256(&bytes);
        let header = examine(&bytes).unwrap_or_else(|r| panic!("{}: {r}", f.display()));
        let uid = header.instance_identity(&digest).uid;
        let indexed = db.find_instance(&uid).unwrap().expect("indexed");
        assert_eq!(store.join(&indexed.store_path), *f);
        assert_eq!(indexed.sha256, hex(&digest), "{} content", f.display());
    }
    assert!(
        common::files_under(&d.data.join("staging")).is_empty(),
        "staging left behind"
    );
}

/// Series UIDs of the analysed series.
fn analysed_series(db: &Database) -> Vec<String> {
    let mut out: Vec<String> = db
        .all_results()
        .unwrap()
        .into_iter()
        .map(|r| r.report.series_instance_uid)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn a_peer_address_not_allowed_is_refused_and_logged() {
    if !dcmtk("allowed peers") {
        return;
    }
    // Only 127.0.0.2 may connect; echoscu connects from 127.0.0.1.
    let (d, addr) = dicom_daemon("allowed_peers = [\"127.0.0.2\"]\n");
    let refused = echoscu(addr, "ECHOSCU", "LUNGWATCH");
    assert!(!refused.status.success(), "a peer not allowed must fail");
    let rows = associations(&d, 1);
    assert!(
        rows[0]
            .outcome
            .contains("peer address 127.0.0.1 is not in dicom.allowed_peers"),
        "{rows:#?}"
    );
}

#[test]
fn echo_succeeds_and_wrong_ae_titles_are_rejected_at_association() {
    if !dcmtk("echo and AE titles") {
        return;
    }
    let (d, addr) = dicom_daemon("allowed_calling_aes = [\"ECHOSCU\", \"<i>EVIL\"]\n");
    let ok = echoscu(addr, "ECHOSCU", "LUNGWATCH");
    assert!(ok.status.success(), "echoscu: {:?}\n{}", ok, d.log());
    let wrong_called = echoscu(addr, "ECHOSCU", "NOTLUNGWATCH");
    assert!(
        !wrong_called.status.success(),
        "a wrong called AE title must fail"
    );
    let stderr = String::from_utf8_lossy(&wrong_called.stderr).to_lowercase();
    assert!(
        stderr.contains("rejected") || stderr.contains("called ae title not recognized"),
        "{stderr}"
    );
    let wrong_calling = echoscu(addr, "INTRUDER", "LUNGWATCH");
    assert!(
        !wrong_calling.status.success(),
        "a calling AE not allowed must fail"
    );
    // A hostile but allowed calling AE title reaches the page escaped.
    assert!(echoscu(addr, "<i>EVIL", "LUNGWATCH").status.success());

    let rows = associations(&d, 4);
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let by_calling = |ae: &str| {
        rows.iter()
            .filter(|r| r.calling_ae == ae)
            .collect::<Vec<_>>()
    };
    let echo = by_calling("ECHOSCU");
    assert!(echo.iter().any(|r| r.outcome == "released"), "{echo:#?}");
    assert!(
        echo.iter().any(|r| r
            .outcome
            .starts_with("rejected: called AE title \"NOTLUNGWATCH\"")),
        "{echo:#?}"
    );
    let intruder = by_calling("INTRUDER");
    assert!(
        intruder[0]
            .outcome
            .contains("not in dicom.allowed_calling_aes"),
        "{intruder:#?}"
    );
    assert!(rows.iter().all(|r| r.peer.starts_with("127.0.0.1:")));

    let (status, page) = d.http_get("/");
    assert_eq!(status, 200);
    assert!(page.contains("DICOM associations"), "{page}");
    assert!(page.contains("&lt;i&gt;EVIL") && !page.contains("<i>EVIL"));
    let (_, api) = d.http_get("/api/status");
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["recent_associations"].as_array().unwrap().len(), 4);
}

#[test]
fn a_series_sent_by_storescu_is_indexed_and_analysed_as_when_dropped() {
    if !dcmtk("storescu vs drop folder") {
        return;
    }
    let Some(data) = common::shared_data("storescu vs drop folder") else {
        return;
    };
    let (sent, addr) = dicom_daemon("");
    let mut dropped = Daemon::new("");
    dropped.start();
    for (i, (folder, path)) in covid_series(&data).iter().enumerate() {
        drop_file(path, &dropped.incoming, &format!("{folder}-{i}.dcm"));
    }
    let folders = series_folders(&data, &["covid19-P002", "cap-cap002", "normal-normal002"]);
    let out = storescu(addr, &folders).output().unwrap();
    assert!(
        out.status.success(),
        "storescu failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sent.log()
    );
    // Every success response came after the instance was indexed: no waiting needed.
    assert_eq!(sent.counts().unwrap().instances, TOTAL_SLICES);
    let log = associations(&sent, 1);
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(
        (
            log[0].outcome.as_str(),
            log[0].stored,
            log[0].calling_ae.as_str()
        ),
        ("released", TOTAL_SLICES, "STORESCU")
    );

    for d in [&sent, &dropped] {
        let c = d.wait_for(240, "three analysed series", |c| {
            c.instances == TOTAL_SLICES && c.jobs_done == 3
        });
        assert_eq!((c.quarantined, c.series_skipped, c.jobs_failed), (0, 0, 0));
        assert_store_consistent(d);
    }
    let (a, b) = (sent.db(), dropped.db());
    let series = analysed_series(&a);
    assert_eq!(series, analysed_series(&b));
    assert_eq!(series.len(), 3);
    for s in &series {
        // The dropped originals have no SOP Instance UID of their own: lungwatch derives
        // the one the sent copies carry.
        let key = |db: &Database| {
            db.series_instances(s)
                .unwrap()
                .into_iter()
                .map(|i| {
                    let mut h = i.header;
                    h.sop_instance_uid = None;
                    (i.sop_instance_uid, h)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b), "instances and headers of {s}");
        assert_eq!(a.jobs_for_series(s).unwrap().len(), 1);
    }
    // The same pixels give the same analysis, figure for figure.
    let reports = |db: &Database| {
        let mut v: Vec<serde_json::Value> = db
            .all_results()
            .unwrap()
            .into_iter()
            .map(|r| {
                let mut j = serde_json::to_value(&r.report).unwrap();
                j.as_object_mut().unwrap().remove("timings_ms");
                j
            })
            .collect();
        v.sort_by_key(|j| j["series_instance_uid"].as_str().unwrap().to_string());
        v
    };
    assert_eq!(reports(&a), reports(&b));

    // Each analysis wrote its key images as Secondary Capture, in the source study,
    // referencing slices of the source series; dciodvfy finds no error in them.
    let mut key_images = Vec::new();
    for r in a.all_results().unwrap() {
        let dir = sent.data.join(&r.artifacts_dir).join("dicom");
        let study = r.report.study_instance_uid.clone().unwrap_or_default();
        // The measurement report: dciodvfy finds no error of ours, and DCMTK's dsrdump
        // reads it, figures included.
        let sr = dir.join("sr.dcm");
        dciodvfy_clean(&sr, &[&study, &r.report.series_instance_uid]);
        let dump = Command::new("dsrdump").arg(&sr).output().unwrap();
        assert!(dump.status.success(), "{dump:?}");
        let dump = String::from_utf8_lossy(&dump.stdout);
        for figure in [
            r.report.lung_volume_ml.right,
            r.report.lung_volume_ml.left,
            r.report.lesion_volume_ml,
            r.report.affected_ratio.total * 100.0,
            r.report.probabilities.covid19 * 100.0,
        ] {
            assert!(
                dump.contains(&format!("\"{figure:.4}\"")),
                "{figure} in\n{dump}"
            );
        }
        check_segmentation(&dir.join("seg.dcm"), &r.report, &a);
        let files: Vec<PathBuf> = common::files_under(&dir)
            .into_iter()
            .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("sc-"))
            .collect();
        assert!(!files.is_empty(), "no key images in {}", dir.display());
        let source_uids: Vec<String> = a
            .series_instances(&r.report.series_instance_uid)
            .unwrap()
            .into_iter()
            .map(|i| i.sop_instance_uid)
            .collect();
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            let h = examine(&bytes).unwrap();
            assert_eq!(h.study_instance_uid, r.report.study_instance_uid);
            assert_eq!(h.manufacturer.as_deref(), Some("lungwatch"));
            assert_ne!(
                h.series_instance_uid.as_deref(),
                Some(&*r.report.series_instance_uid)
            );
            dciodvfy_clean(f, &[&study]);
            if f.ends_with("sc-summary.dcm") {
                // The summary is text: it shows no slice.
                continue;
            }
            let obj = lungwatch::dicom::read::parse(&bytes, lungwatch::dicom::read::Extent::Header)
                .unwrap();
            let referenced = obj
                .element(dicom_dictionary_std::tags::SOURCE_IMAGE_SEQUENCE)
                .unwrap()
                .items()
                .unwrap()[0]
                .element(dicom_dictionary_std::tags::REFERENCED_SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0')
                .to_string();
            assert!(source_uids.contains(&referenced), "{referenced}");
        }
        assert!(files.iter().any(|f| f.ends_with("sc-summary.dcm")));
        key_images.extend(files);
    }
    // Routed back by a PACS, they are stored but never analysed: no loop.
    let dir = tempfile::tempdir().unwrap();
    for (i, f) in key_images.iter().enumerate() {
        std::fs::copy(f, dir.path().join(format!("sc-{i}.dcm"))).unwrap();
    }
    let back = storescu(addr, &[dir.path().to_path_buf()])
        .output()
        .unwrap();
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    let c = sent.wait_for(60, "the key-image series skipped", |c| {
        c.series_skipped == 3
    });
    assert_eq!(c.instances, TOTAL_SLICES + key_images.len() as i64);
    let skipped = a.recent_skipped(10).unwrap();
    assert!(
        skipped.iter().all(|s| s.reason.contains("lungwatch's own")),
        "{skipped:?}"
    );
    assert_eq!(
        c.jobs_pending + c.jobs_running + c.jobs_done + c.jobs_failed,
        3
    );
}

/// The segmentation: dciodvfy finds no error of ours; each frame lies exactly on the
/// source slice it references (position, orientation, spacing); the voxels of each segment
/// add up to the report's volumes.
fn check_segmentation(path: &Path, report: &lungwatch::report::SeriesReport, db: &Database) {
    use dicom_dictionary_std::tags;
    let bytes = std::fs::read(path).unwrap();
    let obj = lungwatch::dicom::read::parse(&bytes, lungwatch::dicom::read::Extent::Full).unwrap();
    let instances = db.series_instances(&report.series_instance_uid).unwrap();
    // covid-ct-md has no Frame of Reference UID: lungwatch derives a valid one.
    let frame_of_reference = obj
        .element(tags::FRAME_OF_REFERENCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    assert!(
        frame_of_reference.starts_with("2.25."),
        "{frame_of_reference}"
    );
    let study = report.study_instance_uid.clone().unwrap_or_default();
    dciodvfy_clean(path, &[&study, &report.series_instance_uid]);
    let by_uid: std::collections::HashMap<&str, &lungwatch::dicom::InstanceHeader> = instances
        .iter()
        .map(|i| (i.sop_instance_uid.as_str(), &i.header))
        .collect();
    let first = &instances[0].header;
    let item0 = |e: &dicom_object::mem::InMemElement| e.items().unwrap()[0].clone();
    let shared = item0(
        obj.element(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
            .unwrap(),
    );
    let orientation = item0(shared.element(tags::PLANE_ORIENTATION_SEQUENCE).unwrap())
        .element(tags::IMAGE_ORIENTATION_PATIENT)
        .unwrap()
        .to_multi_float64()
        .unwrap();
    assert_eq!(orientation, first.image_orientation.unwrap().to_vec());
    let spacing = item0(shared.element(tags::PIXEL_MEASURES_SEQUENCE).unwrap())
        .element(tags::PIXEL_SPACING)
        .unwrap()
        .to_multi_float64()
        .unwrap();
    assert_eq!(spacing, first.pixel_spacing.unwrap().to_vec());
    let frames = obj
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    assert_eq!(frames.len(), 4 * instances.len());
    let mut frame_segment = Vec::new();
    for f in frames {
        let position = item0(f.element(tags::PLANE_POSITION_SEQUENCE).unwrap())
            .element(tags::IMAGE_POSITION_PATIENT)
            .unwrap()
            .to_multi_float64()
            .unwrap();
        let derivation = item0(f.element(tags::DERIVATION_IMAGE_SEQUENCE).unwrap());
        let source = item0(derivation.element(tags::SOURCE_IMAGE_SEQUENCE).unwrap());
        let uid = source
            .element(tags::REFERENCED_SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        let header = by_uid
            .get(uid.as_str())
            .expect("a frame references a source slice");
        assert_eq!(
            position,
            header.image_position.unwrap().to_vec(),
            "frame on {uid}"
        );
        frame_segment.push(
            item0(f.element(tags::SEGMENT_IDENTIFICATION_SEQUENCE).unwrap())
                .element(tags::REFERENCED_SEGMENT_NUMBER)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
        );
    }
    let pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    let per_frame = (first.rows.unwrap() * first.columns.unwrap()) as usize;
    let mut counts = [0u64; 5];
    for (k, segment) in frame_segment.iter().enumerate() {
        for bit in k * per_frame..(k + 1) * per_frame {
            if pixels[bit / 8] & (1 << (bit % 8)) != 0 {
                counts[*segment as usize] += 1;
            }
        }
    }
    let voxel_ml = report.spacing_mm.iter().product::<f64>() / 1000.0;
    for (segment, expected) in [
        (1, report.lung_volume_ml.right),
        (2, report.lung_volume_ml.left),
        (3, report.ggo_volume_ml),
        (4, report.consolidation_volume_ml),
    ] {
        let ml = counts[segment] as f64 * voxel_ml;
        assert!(
            (ml - expected).abs() <= 0.01 * expected.max(1.0),
            "segment {segment}: {ml} ml in the SEG, {expected} ml in the report"
        );
    }
}

/// dciodvfy (dicom3tools) reports no error of ours; skipped with a message without it.
///
/// Errors about a value in `inherited` are the source's, copied on purpose: covid-ct-md's
/// Study and Series Instance UIDs are bare UUIDs (not valid UIDs), and the objects must
/// carry them to land in the same study and to reference the source series. dciodvfy's summary line for invalid values is then theirs too.
fn dciodvfy_clean(path: &Path, inherited: &[&str]) {
    let Ok(out) = Command::new("dciodvfy").arg(path).output() else {
        eprintln!(
            "SKIPPED dciodvfy on {}: dicom3tools is not installed",
            path.display()
        );
        return;
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("Error")).collect();
    let theirs = |l: &&str| inherited.iter().any(|v| !v.is_empty() && l.contains(v));
    let any_theirs = errors.iter().any(theirs);
    let ours: Vec<&&str> = errors
        .iter()
        .filter(|l| !theirs(l))
        .filter(|l| !(any_theirs && l.contains("contains invalid data values")))
        .collect();
    assert!(ours.is_empty(), "dciodvfy {}:\n{report}", path.display());
}

#[test]
fn two_storescu_at_once_lose_nothing() {
    if !dcmtk("two storescu at once") {
        return;
    }
    let Some(data) = common::shared_data("two storescu at once") else {
        return;
    };
    let (d, addr) = dicom_daemon("");
    // cap-cap002 goes through both associations at once: one copy is stored, the other
    // is answered as a duplicate.
    let mut first = storescu(
        addr,
        &series_folders(&data, &["covid19-P002", "cap-cap002"]),
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut second = storescu(
        addr,
        &series_folders(&data, &["cap-cap002", "normal-normal002"]),
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (s1, s2) = (first.wait().unwrap(), second.wait().unwrap());
    assert!(s1.success() && s2.success(), "{s1:?} {s2:?}\n{}", d.log());
    let c = d.counts().unwrap();
    assert_eq!((c.instances, c.quarantined), (TOTAL_SLICES, 0));
    let log = associations(&d, 2);
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log.iter().all(|r| r.outcome == "released"), "{log:#?}");
    let stored: i64 = log.iter().map(|r| r.stored).sum();
    let duplicates: i64 = log.iter().map(|r| r.duplicates).sum();
    assert_eq!((stored, duplicates), (TOTAL_SLICES, 131));
    assert_store_consistent(&d);
    d.wait_for(60, "three selected series", |c| c.series_selected == 3);
}

#[test]
fn storescu_killed_mid_association_leaves_nothing_half_stored() {
    if !dcmtk("storescu killed") {
        return;
    }
    let Some(data) = common::shared_data("storescu killed") else {
        return;
    };
    let (d, addr) = dicom_daemon("");
    let folders = series_folders(&data, &["covid19-P002", "cap-cap002", "normal-normal002"]);
    let mut child = storescu(addr, &folders)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.counts().map_or(0, |c| c.instances) < 20 {
        assert!(Instant::now() < deadline, "nothing arrived:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL, in the middle of some data set
    child.wait().unwrap();
    // The association ends as lost, and what was answered is complete and indexed.
    let record = associations(&d, 1).remove(0);
    assert!(
        record.outcome.starts_with("connection lost") && record.stored < TOTAL_SLICES,
        "{record:#?}"
    );
    let stored_before = d.counts().unwrap().instances;
    assert_eq!(stored_before, record.stored);
    assert_eq!(d.counts().unwrap().quarantined, 0);
    assert_store_consistent(&d);
    // Sent again, everything arrives once: what was stored is answered as duplicate.
    let again = storescu(addr, &folders).output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let c = d.counts().unwrap();
    assert_eq!((c.instances, c.quarantined), (TOTAL_SLICES, 0));
    let last = associations(&d, 2).remove(0);
    assert_eq!(
        (last.stored, last.duplicates),
        (TOTAL_SLICES - stored_before, stored_before)
    );
    assert_store_consistent(&d);
}

#[test]
fn echo_command_reaches_a_dcmtk_peer_and_names_failures() {
    if !dcmtk("lungwatch echo") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Daemon::new(&format!(
        "[[destinations]]\nname = \"peer\"\nae_title = \"PEER\"\nhost = \"127.0.0.1\"\nport = {port}\n"
    ));
    let echo = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_lungwatch"))
            .args(["echo", name, "--config"])
            .arg(&d.config)
            .output()
            .unwrap()
    };
    // DCMTK's storescp answers C-ECHO.
    let out_dir = tempfile::tempdir().unwrap();
    let mut peer = Command::new("storescp")
        .args(["-aet", "PEER", "-od"])
        .arg(out_dir.path())
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "storescp did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ok = echo("peer");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success() && stdout.contains("success"), "{ok:?}");
    let unknown = echo("nosuch");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("configured: peer"));
    peer.kill().unwrap();
    peer.wait().unwrap();
    let down = echo("peer");
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("no association with peer"),
        "{down:?}"
    );
}

#[test]
fn associations_over_the_limit_are_rejected_as_transient() {
    if !dcmtk("max_associations") {
        return;
    }
    let (d, addr) = dicom_daemon("max_associations = 1\n");
    // A peer that connects and says nothing holds the only slot.
    let holder = std::net::TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let busy = echoscu(addr, "ECHOSCU", "LUNGWATCH");
    assert!(!busy.status.success(), "{busy:?}");
    // Transient: the peer may try again later (PS3.8 9.3.4, local limit exceeded).
    let said = String::from_utf8_lossy(&busy.stderr).to_lowercase();
    assert!(
        said.contains("transient") && said.contains("local limit"),
        "{said}"
    );
    let rows = associations(&d, 1);
    assert!(
        rows[0]
            .outcome
            .contains("already open (dicom.max_associations)"),
        "{rows:#?}"
    );
    assert_eq!(rows[0].calling_ae, "ECHOSCU");
    // Once it goes, the slot is free again.
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if echoscu(addr, "ECHOSCU", "LUNGWATCH").status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never freed:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
