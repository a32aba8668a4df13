//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod peers;
pub mod phantom;

use std::path::PathBuf;

/// Runs the real `lungwatch` binary with `args` (warnings only in its log) and waits.
pub fn lungwatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// `../shared/data`, or None (with a message saying the test is skipped) when absent:
/// a user's fresh clone does not have the shared data.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.join("README.md").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED {test}: ../shared/data is not present (it holds the real DICOM test data)"
        );
        None
    }
}

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use lungwatch::db::{Database, ReadQueries, StatusCounts};
use lungwatch::dicom::read::{Extent, parse};

/// A daemon under test with its own folders and config.
pub struct Daemon {
    pub root: tempfile::TempDir,
    pub incoming: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub child: Option<Child>,
}

impl Daemon {
    /// Writes a config with short timings so tests run in seconds.
    pub fn new(extra_toml: &str) -> Daemon {
        let root = tempfile::tempdir().unwrap();
        let incoming = root.path().join("incoming");
        let data = root.path().join("data");
        std::fs::create_dir_all(&incoming).unwrap();
        let config = root.path().join("lungwatch.toml");
        std::fs::write(
            &config,
            format!(
                "[paths]\nincoming = {:?}\ndata = {:?}\n[watch]\nrescan_secs = 1\nstable_secs = 1\ntruncated_grace_secs = 3\n[series]\nquiet_secs = 3\n[web]\nlisten = \"127.0.0.1:0\"\n{extra_toml}",
                incoming, data
            ),
        )
        .unwrap();
        Daemon {
            root,
            incoming,
            data,
            config,
            child: None,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(env!("CARGO_BIN_EXE_lungwatch"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.root.path().join("daemon.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The web page's address, from the daemon's start-up log line.
    pub fn web_address(&self) -> std::net::SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self
                .log()
                .lines()
                .find(|l| l.contains("web page on http://"))
            {
                let addr = line
                    .rsplit("http://")
                    .next()
                    .unwrap()
                    .trim()
                    .trim_end_matches('/');
                return addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
            }
            assert!(
                Instant::now() < deadline,
                "no web address in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET over HTTP/1.0: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.web_address()).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        (
            head.split(' ').nth(1).unwrap().parse().unwrap(),
            body.to_string(),
        )
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// SIGHUP: the running daemon reloads its config.
    pub fn hup(&self) {
        unsafe_kill(self.child.as_ref().expect("started").id() as i32, 1);
    }

    /// Writes the phantom series `spec` into the drop folder, slice by slice, each file
    /// appearing whole (`drop_file`).
    pub fn drop_phantom(&self, spec: &phantom::PhantomSpec) {
        let staging = self
            .root
            .path()
            .join(format!("phantom-{}", spec.series_uid));
        for (i, path) in phantom::write(&staging, &phantom::slices(spec))
            .iter()
            .enumerate()
        {
            drop_file(path, &self.incoming, &format!("p-{i}.dcm"));
        }
    }

    /// Sends `signal` and waits for a clean exit; returns the exit status success.
    pub fn stop_with(&mut self, signal: i32) -> bool {
        let mut child = self.child.take().unwrap();
        unsafe_kill(child.id() as i32, signal);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop after signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn counts(&self) -> Option<StatusCounts> {
        let path = self.data.join("lungwatch.sqlite");
        if !path.exists() {
            return None;
        }
        Database::open(&path).ok()?.status_counts().ok()
    }

    pub fn db(&self) -> Database {
        Database::open(&self.data.join("lungwatch.sqlite")).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("daemon.log")).unwrap_or_default()
    }

    /// Polls `check` until it holds or `secs` pass; panics with the daemon's log otherwise.
    pub fn wait_for(
        &self,
        secs: u64,
        what: &str,
        mut check: impl FnMut(&StatusCounts) -> bool,
    ) -> StatusCounts {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(c) = self.counts() {
                if check(&c) {
                    return c;
                }
                if Instant::now() > deadline {
                    panic!(
                        "timed out waiting for {what}; last counts {c:?}\n--- daemon log ---\n{}",
                        self.log()
                    );
                }
            } else if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; no database\n--- daemon log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn incoming_files(&self) -> Vec<PathBuf> {
        files_under(&self.incoming)
    }

    pub fn store_files(&self) -> Vec<PathBuf> {
        files_under(&self.data.join("store"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_kill(pid: i32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The files of the three covid-ct-md series, as (series folder, file path).
pub fn covid_series(data: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for s in ["covid19-P002", "cap-cap002", "normal-normal002"] {
        for f in files_under(&data.join("covid-ct-md").join(s)) {
            out.push((s.to_string(), f));
        }
    }
    out
}

/// splitmix64: a fixed seed gives the same cases on every machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A small deterministic shuffle (xorshift), so failures reproduce.
pub fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// Copies a file into the drop folder the way an export should: under a temporary name,
/// then renamed, so the daemon never sees a half-written final name.
pub fn drop_file(src: &Path, incoming: &Path, name: &str) {
    let tmp = incoming.join(format!("{name}.part"));
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, incoming.join(name)).unwrap();
}

/// A self-signed EC certificate for localhost and 127.0.0.1 in `dir` (cert.pem, key.pem),
/// or None with a message that `test` is skipped when there is no openssl command.
pub fn self_signed(dir: &Path, test: &str) -> Option<(PathBuf, PathBuf)> {
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

/// Who a re-identified copy of a series claims to be.
pub struct Identity {
    pub patient_id: String,
    pub study_date: &'static str,
    pub study_uid: String,
    pub series_uid: String,
    pub accession: String,
}

/// Writes `files` (slices of one real series) re-identified as `who` into `out`, as
/// `0000.dcm`, `0001.dcm`, …: new patient, study, series and SOP Instance UIDs, date and
/// accession, pixels untouched. Returns the file count.
pub fn reidentify(files: &[PathBuf], who: &Identity, out: &Path) -> usize {
    std::fs::create_dir_all(out).unwrap();
    for (k, file) in files.iter().enumerate() {
        let mut obj = parse(&std::fs::read(file).unwrap(), Extent::Full).unwrap();
        let sop_uid = format!("{}.{}", who.series_uid, k + 1);
        let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
        obj.put(text(tags::PATIENT_ID, VR::LO, &who.patient_id));
        obj.put(text(tags::STUDY_DATE, VR::DA, who.study_date));
        obj.put(text(tags::STUDY_INSTANCE_UID, VR::UI, &who.study_uid));
        obj.put(text(tags::SERIES_INSTANCE_UID, VR::UI, &who.series_uid));
        obj.put(text(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid));
        obj.put(text(tags::ACCESSION_NUMBER, VR::SH, &who.accession));
        obj.update_meta(|m| m.media_storage_sop_instance_uid = sop_uid.clone());
        obj.write_to_file(out.join(format!("{k:04}.dcm"))).unwrap();
    }
    files.len()
}
