//! Real DICOM peers and ports for the network tests (`dicom_scp`, `dicom_tls`, `outbox`):
//! a free loopback port, waiting for a peer to listen, the receiver's address from the
//! daemon's log, and DCMTK's `storescp` as a destination that counts what it receives.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Daemon;

/// True when every one of `tools` answers `--version`; otherwise says the test is skipped
/// and which package has them.
pub fn installed(test: &str, tools: &[&str], package: &str) -> bool {
    let found = tools.iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !found {
        eprintln!(
            "SKIPPED {test}: {} not installed: apt-get install {package}",
            tools.join(", ")
        );
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The receiver's address, from the daemon's start-up log line.
pub fn dicom_address(d: &Daemon) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(line) = d
            .log()
            .lines()
            .find(|l| l.contains("DICOM node LUNGWATCH listening on"))
        {
            let addr = line.rsplit(' ').next().unwrap().trim();
            return addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        }
        assert!(
            Instant::now() < deadline,
            "no DICOM address in the log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// DCMTK's storescp (AE title PEER) as a destination: every object it receives is a line
/// of its verbose log, so a second copy of an object would be counted.
pub struct StoreScp {
    child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl StoreScp {
    pub fn start(root: &Path, port: u16) -> StoreScp {
        Self::start_with(root, port, [""; 0])
    }

    /// With `extra` options (TLS, delays) before the output folder and the port.
    pub fn start_with<S: AsRef<OsStr>>(
        root: &Path,
        port: u16,
        extra: impl IntoIterator<Item = S>,
    ) -> StoreScp {
        let dir = root.join("storescp");
        std::fs::create_dir_all(&dir).unwrap();
        let log = root.join(format!("storescp-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("storescp")
            // -uf: files named by SOP Instance UID. DCMTK logs to stderr.
            .args(["-v", "-aet", "PEER", "-uf"])
            .args(extra)
            .arg("-od")
            .arg(&dir)
            .arg(port.to_string())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        wait_for_port(port, "storescp");
        StoreScp { child, dir, log }
    }

    pub fn received(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("Received Store Request")
            .count()
    }

    /// Stops it; what it received in all.
    pub fn stop(mut self) -> usize {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.received()
    }
}

impl Drop for StoreScp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
