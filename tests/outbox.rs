//! The outbox with the real binary and real DICOM peers: results sent as SEG, SR and
//! Secondary Capture to DCMTK's `storescp` and to Orthanc, and copied to the folder
//! outbox; a destination that is down is retried and nothing is lost when lungwatch is
//! killed; what a destination confirmed is not sent again after a restart; `lungwatch
//! send` sends a study again by hand.
//!
//! The series are phantoms written as DICOM (`common::phantom`), so no shared data is
//! needed. Skipped with a message when DCMTK or Orthanc is not installed
//! (`apt-get install dcmtk orthanc`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use common::peers::{StoreScp, free_port, installed, wait_for_port};
use common::phantom::{self, PhantomSpec};
use lungwatch::db::{Delivery, DeliveryState, ReadQueries};

/// Writes phantom series `n` and drops its files into the daemon's folder; returns its
/// Study Instance UID.
fn drop_phantom(d: &Daemon, n: u32) -> String {
    let spec = PhantomSpec::small(n);
    let staging = d.root.path().join(format!("phantom-{n}"));
    for (i, path) in phantom::write(&staging, &phantom::slices(&spec))
        .iter()
        .enumerate()
    {
        common::drop_file(path, &d.incoming, &format!("p{n}-{i}.dcm"));
    }
    spec.study_uid
}

fn deliveries(d: &Daemon, study: &str) -> Vec<Delivery> {
    d.db().study_deliveries(study).unwrap()
}

/// Polls the study's outbox rows until `check` holds.
fn wait_rows(
    d: &Daemon,
    study: &str,
    secs: u64,
    what: &str,
    check: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if d.data.join("lungwatch.sqlite").exists() {
            let rows = deliveries(d, study);
            if check(&rows) {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; rows {rows:#?}\n--- daemon log ---\n{}",
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn all_sent(rows: &[Delivery]) -> bool {
    !rows.is_empty() && rows.iter().all(|r| r.state == DeliveryState::Sent)
}

/// Retries after 1 and 2 s, and phantom-sized series accepted; `outbox` goes in `[outbox]`.
fn fast_retry(outbox: &str) -> String {
    format!(
        "[outbox]\nretry_min_secs = 1\nretry_max_secs = 2\n{outbox}[selection]\nmin_slices = 4\n"
    )
}

fn destination(name: &str, ae: &str, port: u16) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nae_title = \"{ae}\"\nhost = \"127.0.0.1\"\nport = {port}\n"
    )
}

#[test]
fn results_reach_a_dcmtk_peer_and_the_folder_once_and_again_by_hand() {
    if !installed("outbox to storescp", &["storescp"], "dcmtk") {
        return;
    }
    let port = free_port();
    let outbox_folder = tempfile::tempdir().unwrap();
    let folder = outbox_folder.path().join("outbox");
    let mut d = Daemon::new(&format!(
        "{}{}",
        destination("peer", "PEER", port),
        fast_retry(&format!("folder = {:?}\n", folder))
    ));
    let peer = StoreScp::start(d.root.path(), port);
    d.start();
    let study = drop_phantom(&d, 1);
    let rows = wait_rows(&d, &study, 120, "every object sent", all_sent);
    let to_peer: Vec<&Delivery> = rows.iter().filter(|r| r.destination == "peer").collect();
    let to_folder: Vec<&Delivery> = rows.iter().filter(|r| r.destination == "folder").collect();
    let mut kinds: Vec<&str> = to_peer.iter().map(|r| r.kind.as_str()).collect();
    kinds.dedup();
    assert_eq!(kinds, ["sc", "seg", "sr"], "{rows:#?}");
    assert_eq!(to_peer.len(), to_folder.len());
    assert!(to_peer.iter().all(|r| r.attempts == 1));
    assert_eq!(peer.received(), to_peer.len(), "each object received once");
    // storescp wrote each object under its SOP Instance UID; the folder outbox under the study.
    for r in &to_peer {
        let stored = common::files_under(&peer.dir);
        assert!(
            stored
                .iter()
                .any(|p| p.to_string_lossy().contains(&r.sop_instance_uid)),
            "{} not at the peer",
            r.sop_instance_uid
        );
        let copy = folder
            .join(&study)
            .join(format!("{}.dcm", r.sop_instance_uid));
        assert_eq!(
            std::fs::read(&copy).unwrap(),
            std::fs::read(d.data.join(&r.path)).unwrap(),
            "the folder copy is the object"
        );
    }
    // The status page, its JSON and /metrics show the outbox.
    let (_, json) = d.http_get("/api/status");
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    let peer_counts = status["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["destination"] == "peer")
        .unwrap()
        .clone();
    assert_eq!(peer_counts["sent"], to_peer.len() as i64);
    let (_, page) = d.http_get("/");
    assert!(page.contains("Outbox"));
    let (_, metrics) = d.http_get("/metrics");
    assert!(
        metrics.contains(&format!(
            "lungwatch_outbox_objects{{destination=\"peer\",state=\"sent\"}} {}",
            to_peer.len()
        )),
        "{metrics}"
    );
    // The study page says where its objects went.
    let (code, study_page) = d.http_get(&format!("/studies/{study}"));
    assert_eq!(code, 200);
    assert!(study_page.contains("Sent to PACS"), "{study_page}");
    let n = to_peer.len();
    assert!(study_page.contains(&format!("{n} of {n}")), "{study_page}");
    // A restart sends nothing again.
    assert!(d.stop_with(SIGTERM));
    d.start();
    d.web_address();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        peer.received(),
        to_peer.len(),
        "nothing is sent twice after a restart"
    );
    // By hand: the study's objects again, to the peer only.
    let out = Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["send", &study, "peer", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("{n} of {n} objects sent", n = to_peer.len())),
        "{stdout}"
    );
    assert_eq!(peer.stop(), 2 * to_peer.len());
    // An unknown destination is named, with the ones there are.
    let out = Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["send", &study, "nosuch", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("configured: peer, folder"),
        "{out:?}"
    );
}

/// A daemon whose one destination is "peer" (AE PEER) on a free port, nothing listening
/// there yet; with fast retries.
fn daemon_with_peer() -> (Daemon, u16) {
    let port = free_port();
    let d = Daemon::new(&format!(
        "{}{}",
        destination("peer", "PEER", port),
        fast_retry("")
    ));
    (d, port)
}

const SIGTERM: i32 = 15;

#[test]
fn a_destination_down_is_retried_and_a_kill_loses_nothing() {
    if !installed("outbox retries", &["storescp"], "dcmtk") {
        return;
    }
    let (mut d, port) = daemon_with_peer();
    d.start();
    let study = drop_phantom(&d, 2);
    // Nothing listens: each object waits for its next attempt, with the reason.
    let rows = wait_rows(&d, &study, 120, "failed attempts", |rows| {
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r.state == DeliveryState::Pending && r.attempts >= 2)
    });
    assert!(
        rows.iter().all(|r| r
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("no association with peer")),
        "{rows:#?}"
    );
    let (_, page) = d.http_get("/");
    assert!(page.contains("waiting to be retried") && page.contains("no association with peer"));
    // Killed while retrying; the peer comes up; the restarted daemon delivers everything once.
    d.kill9();
    let peer = StoreScp::start(d.root.path(), port);
    d.start();
    let rows = wait_rows(
        &d,
        &study,
        60,
        "every object sent after the restart",
        all_sent,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(peer.stop(), rows.len(), "each object received exactly once");
}

#[test]
fn a_kill_in_the_middle_of_a_send_loses_nothing() {
    if !installed("outbox killed mid-send", &["storescp"], "dcmtk") {
        return;
    }
    let (mut d, port) = daemon_with_peer();
    // Each C-STORE takes the peer 2 s: the association is open when lungwatch is killed.
    let slow = StoreScp::start_with(d.root.path(), port, ["--sleep-during", "2"]);
    d.start();
    let study = drop_phantom(&d, 4);
    wait_rows(&d, &study, 120, "a send in progress", |rows| {
        rows.iter().any(|r| r.state == DeliveryState::Sending)
    });
    d.kill9();
    let first = slow.stop();
    // Interrupted: what was being sent is due again at start-up, and arrives.
    let peer = StoreScp::start(d.root.path(), port);
    d.start();
    let rows = wait_rows(
        &d,
        &study,
        60,
        "every object sent after the restart",
        all_sent,
    );
    std::thread::sleep(Duration::from_secs(2));
    let second = peer.stop();
    assert!(
        first < rows.len(),
        "the kill came before the batch was through ({first})"
    );
    // Only an object the first peer received but lungwatch had not yet recorded arrives
    // twice; none is lost.
    assert!(
        first + second >= rows.len() && second <= rows.len(),
        "{first} + {second} receptions for {} objects",
        rows.len()
    );
    assert!(second >= rows.len() - first);
}

// ---- Orthanc ------------------------------------------------------------------------

struct Orthanc {
    child: Option<Child>,
    config: PathBuf,
    http: u16,
    dicom_port: u16,
    log: PathBuf,
}

impl Orthanc {
    /// An Orthanc on loopback ports that knows lungwatch as the modality "lungwatch".
    fn new(root: &Path, lungwatch_port: u16) -> Orthanc {
        let dir = root.join("orthanc");
        std::fs::create_dir_all(&dir).unwrap();
        let (http, dicom) = (free_port(), free_port());
        let config = dir.join("orthanc.json");
        let json = serde_json::json!({
            "Name": "lungwatch-test",
            "StorageDirectory": dir.join("storage"),
            "IndexDirectory": dir.join("index"),
            "HttpPort": http,
            "DicomPort": dicom,
            "DicomAet": "ORTHANC",
            "DicomCheckCalledAet": false,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": [],
            "DicomModalities": { "lungwatch": ["LUNGWATCH", "127.0.0.1", lungwatch_port] },
        });
        std::fs::write(&config, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        let mut o = Orthanc {
            child: None,
            config,
            http,
            dicom_port: dicom,
            log: dir.join("orthanc.log"),
        };
        o.start();
        o
    }

    fn start(&mut self) {
        let child = Command::new("Orthanc")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&self.log).unwrap()))
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_port(self.http, "Orthanc's HTTP port");
        wait_for_port(self.dicom_port, "Orthanc's DICOM port");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// `curl` against the REST API: the response body as JSON.
    fn rest(&self, method: &str, path: &str, body: Option<&[u8]>) -> serde_json::Value {
        let mut c = Command::new("curl");
        c.args(["-s", "-f", "-X", method])
            .arg(format!("http://127.0.0.1:{}{path}", self.http));
        if body.is_some() {
            c.args(["--data-binary", "@-"]);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            if let Some(b) = body {
                stdin.write_all(b).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "curl {method} {path}: {out:?}\n--- Orthanc log ---\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Orthanc's id of the resource with this DICOM UID, if it has it.
    fn lookup(&self, uid: &str) -> Option<String> {
        let found = self.rest("POST", "/tools/lookup", Some(uid.as_bytes()));
        found
            .as_array()?
            .first()
            .map(|r| r["ID"].as_str().unwrap().to_string())
    }

    /// The modalities of a study's series.
    fn study_modalities(&self, study_id: &str) -> Vec<String> {
        let series = self.rest("GET", &format!("/studies/{study_id}/series"), None);
        let mut m: Vec<String> = series
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["MainDicomTags"]["Modality"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        m.sort();
        m
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Uploads phantom series `n` to Orthanc; returns (Study UID, Orthanc's series id).
fn upload_phantom(o: &Orthanc, root: &Path, n: u32) -> (String, String) {
    let spec = PhantomSpec::small(n);
    let dir = root.join(format!("orthanc-phantom-{n}"));
    let mut series = String::new();
    for path in phantom::write(&dir, &phantom::slices(&spec)) {
        let answer = o.rest("POST", "/instances", Some(&std::fs::read(path).unwrap()));
        series = answer["ParentSeries"].as_str().unwrap().to_string();
    }
    (spec.study_uid, series)
}

#[test]
fn orthanc_sends_a_series_and_gets_seg_sr_and_sc_back_once() {
    if !installed("Orthanc round trip", &["Orthanc", "curl"], "orthanc curl") {
        return;
    }
    let lungwatch_port = free_port();
    let mut d = Daemon::new(&format!(
        "[dicom]\nlisten = \"127.0.0.1:{lungwatch_port}\"\nae_title = \"LUNGWATCH\"\n{}",
        fast_retry("")
    ));
    let mut orthanc = Orthanc::new(d.root.path(), lungwatch_port);
    let config = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        format!(
            "{config}{}",
            destination("orthanc", "ORTHANC", orthanc.dicom_port)
        ),
    )
    .unwrap();
    d.start();
    wait_for_port(lungwatch_port, "lungwatch's DICOM receiver");

    // 1. Orthanc sends a series; the results are in its study within the quiet period
    //    plus the analysis plus the send.
    let (study, series) = upload_phantom(&orthanc, d.root.path(), 11);
    let sent_at = Instant::now();
    orthanc.rest(
        "POST",
        "/modalities/lungwatch/store",
        Some(series.as_bytes()),
    );
    let rows = wait_rows(&d, &study, 120, "the results sent to Orthanc", all_sent);
    let took = sent_at.elapsed();
    eprintln!(
        "Orthanc → lungwatch → Orthanc: {} objects back {:.1} s after Orthanc's C-STORE returned (quiet period 3 s)",
        rows.len(),
        took.as_secs_f64()
    );
    let study_id = orthanc.lookup(&study).expect("the study in Orthanc");
    assert_eq!(
        orthanc.study_modalities(&study_id),
        ["CT", "OT", "SEG", "SR"]
    );
    for r in &rows {
        assert!(
            orthanc.lookup(&r.sop_instance_uid).is_some(),
            "{} not in Orthanc",
            r.sop_instance_uid
        );
    }

    // 2. Orthanc stops after sending and before lungwatch sends back: the objects arrive
    //    once it is up again, once each.
    let (study2, series2) = upload_phantom(&orthanc, d.root.path(), 12);
    orthanc.rest(
        "POST",
        "/modalities/lungwatch/store",
        Some(series2.as_bytes()),
    );
    orthanc.stop();
    let waiting = wait_rows(&d, &study2, 120, "attempts while Orthanc is down", |rows| {
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r.state == DeliveryState::Pending && r.attempts >= 1)
    });
    orthanc.start();
    let rows2 = wait_rows(
        &d,
        &study2,
        60,
        "the results sent after Orthanc's restart",
        all_sent,
    );
    assert_eq!(rows2.len(), waiting.len());
    let study2_id = orthanc
        .lookup(&study2)
        .expect("the second study in Orthanc");
    assert_eq!(
        orthanc.study_modalities(&study2_id),
        ["CT", "OT", "SEG", "SR"]
    );
    let instances = orthanc.rest("GET", &format!("/studies/{study2_id}/instances"), None);
    assert_eq!(
        instances.as_array().unwrap().len(),
        16 + rows2.len(),
        "the source slices and each object once"
    );
}

#[test]
fn objects_routed_back_are_stored_and_never_analysed_or_sent_again() {
    // lungwatch is its own destination: the PACS that routes everything it receives back.
    let port = free_port();
    let mut d = Daemon::new(&format!(
        "[dicom]\nlisten = \"127.0.0.1:{port}\"\nae_title = \"LUNGWATCH\"\n{}{}",
        fast_retry(""),
        destination("self", "LUNGWATCH", port)
    ));
    d.start();
    let study = drop_phantom(&d, 3);
    let rows = wait_rows(
        &d,
        &study,
        120,
        "the objects sent back to lungwatch",
        all_sent,
    );
    let mut kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    kinds.dedup();
    assert_eq!(kinds, ["sc", "seg", "sr"], "{rows:#?}");
    // Every object came back and was stored: the phantom's 16 slices and each object.
    let counts = d.wait_for(30, "the objects stored and their series judged", |c| {
        c.instances == 16 + rows.len() as i64 && c.series_receiving == 0
    });
    assert_eq!(
        counts.quarantined, 0,
        "nothing of lungwatch's own is quarantined"
    );
    assert_eq!(
        counts.jobs_done + counts.jobs_pending + counts.jobs_running,
        1,
        "only the source is analysed"
    );
    let skipped = d.db().recent_skipped(10).unwrap();
    assert_eq!(skipped.len(), 3, "the SC, SR and SEG series: {skipped:#?}");
    assert!(
        skipped
            .iter()
            .all(|s| s.reason.contains("lungwatch's own result objects"))
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        deliveries(&d, &study).len(),
        rows.len(),
        "nothing more is sent"
    );
}
