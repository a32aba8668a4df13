//! DICOM TLS with real peers: DCMTK's `echoscu` against lungwatch's TLS receiver (with and
//! without a client certificate the site CA signed, and over plain TCP), lungwatch's own
//! `echo` as a TLS client, and `lungwatch echo` and the outbox's C-STORE to a TLS
//! `storescp`. The CA, the server and client certificates are made by `openssl` in the
//! test; the series is a phantom.
//!
//! Skipped with a message when DCMTK or openssl is not installed
//! (`apt-get install dcmtk openssl`).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use common::peers::{StoreScp, dicom_address, free_port};
use common::phantom::{self, PhantomSpec};
use lungwatch::db::{AssociationRecord, Delivery, ReadQueries};

fn installed(test: &str) -> bool {
    let found = ["echoscu", "storescp", "openssl"].iter().all(|tool| {
        Command::new(tool)
            .arg(if *tool == "openssl" {
                "version"
            } else {
                "--version"
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        eprintln!(
            "SKIPPED {test}: DCMTK (echoscu, storescp) or openssl is not installed: \
             apt-get install dcmtk openssl"
        );
    }
    found
}

/// The extensions of the test certificates: a CA; a node certificate for 127.0.0.1 and
/// localhost, good for both ends of a connection (lungwatch's is its receiver's and its
/// client certificate); a stranger's, self-signed.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = lungwatch test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[node]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[stranger]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
";

/// Certificates and keys (PEM) made in a temporary folder.
struct Pki {
    _dir: tempfile::TempDir,
    /// The site CA.
    ca: PathBuf,
    /// lungwatch's certificate and key, signed by the CA.
    node: (PathBuf, PathBuf),
    /// The DCMTK peer's, signed by the CA.
    peer: (PathBuf, PathBuf),
    /// A self-signed certificate no one trusts.
    stranger: (PathBuf, PathBuf),
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

impl Pki {
    fn make() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("openssl.cnf"), OPENSSL_CNF).unwrap();
        let rsa = ["-newkey", "rsa:2048", "-nodes", "-days", "2"];
        let cnf = ["-config", "openssl.cnf"];
        let self_signed = |name: &str, ext: &str| {
            let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
            let subj = format!("/CN=lungwatch test {name}");
            let mut args = vec!["req", "-x509"];
            args.extend(rsa);
            args.extend(cnf);
            args.extend([
                "-extensions",
                ext,
                "-subj",
                &subj,
                "-keyout",
                &key,
                "-out",
                &pem,
            ]);
            openssl(d, &args);
        };
        self_signed("ca", "ca");
        self_signed("stranger", "stranger");
        for name in ["node", "peer"] {
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let subj = format!("/CN=lungwatch test {name}");
            let mut args = vec!["req", "-new"];
            args.extend(rsa);
            args.extend(cnf);
            args.extend(["-subj", &subj, "-keyout", &key, "-out", &csr]);
            openssl(d, &args);
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "openssl.cnf",
                    "-extensions",
                    "node",
                    "-out",
                    &pem,
                ],
            );
        }
        let pair = |name: &str| (d.join(format!("{name}.pem")), d.join(format!("{name}.key")));
        Pki {
            ca: d.join("ca.pem"),
            node: pair("node"),
            peer: pair("peer"),
            stranger: pair("stranger"),
            _dir: dir,
        }
    }
}

/// `echoscu` to `addr`, over TLS with `identity` (certificate, key) and trusting `ca`
/// when given.
fn echoscu(addr: SocketAddr, identity: Option<&(PathBuf, PathBuf)>, ca: &Path) -> Output {
    let mut c = Command::new("echoscu");
    c.args([
        "-aet",
        "PEER",
        "-aec",
        "LUNGWATCH",
        "-to",
        "10",
        "-ta",
        "10",
    ]);
    if let Some((cert, key)) = identity {
        c.arg("+tls").arg(key).arg(cert).arg("+cf").arg(ca);
    }
    c.arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .output()
        .unwrap()
}

/// `lungwatch echo NAME --config CONFIG`.
fn lungwatch_echo(config: &Path, name: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["echo", name, "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// `[dicom]` keys giving lungwatch `identity` as its certificate.
fn identity_keys(identity: &(PathBuf, PathBuf)) -> String {
    format!("tls_cert = {:?}\ntls_key = {:?}\n", identity.0, identity.1)
}

/// A TLS destination on 127.0.0.1 that trusts `ca`.
fn tls_destination(name: &str, ae: &str, port: u16, ca: &Path) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nae_title = \"{ae}\"\nhost = \"127.0.0.1\"\n\
         port = {port}\ntls = true\ntls_ca = {ca:?}\n"
    )
}

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

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_tls_receiver_wants_tls_and_a_certificate_the_site_ca_signed() {
    if !installed("DICOM TLS receiver") {
        return;
    }
    let pki = Pki::make();
    let mut d = Daemon::new(&format!(
        "[dicom]\nlisten = \"127.0.0.1:0\"\nae_title = \"LUNGWATCH\"\n{}tls_ca = {:?}\n",
        identity_keys(&pki.node),
        pki.ca
    ));
    d.start();
    let addr = dicom_address(&d);
    assert!(d.log().contains("DICOM TLS only"), "{}", d.log());

    // A connection closed before its ClientHello (a port probe) is let go at once.
    drop(std::net::TcpStream::connect(addr).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    // DCMTK with a certificate the site CA signed, checking lungwatch's against the CA.
    let ok = echoscu(addr, Some(&pki.peer), &pki.ca);
    assert!(ok.status.success(), "echoscu over TLS: {}", text(&ok));
    // Plain TCP to the TLS port.
    let plain = echoscu(addr, None, &pki.ca);
    assert!(!plain.status.success(), "plain echoscu: {}", text(&plain));
    // TLS with a certificate no one signed.
    let stranger = echoscu(addr, Some(&pki.stranger), &pki.ca);
    assert!(
        !stranger.status.success(),
        "echoscu with an untrusted certificate: {}",
        text(&stranger)
    );

    // lungwatch as the client: no client certificate (no dicom.tls_cert) is refused; with
    // its node certificate it gets through; trusting another CA, it refuses the receiver.
    let port = addr.port();
    let anonymous = Daemon::new(&tls_destination("lw", "LUNGWATCH", port, &pki.ca));
    let refused = lungwatch_echo(&anonymous.config, "lw");
    assert!(
        !refused.status.success(),
        "echo without a client certificate: {}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("no association with lw (LUNGWATCH at 127.0.0.1"),
        "{}",
        text(&refused)
    );
    let with_cert = Daemon::new(&format!(
        "[dicom]\n{}{}",
        identity_keys(&pki.node),
        tls_destination("lw", "LUNGWATCH", port, &pki.ca)
    ));
    let echoed = lungwatch_echo(&with_cert.config, "lw");
    assert!(
        echoed.status.success() && text(&echoed).contains("success"),
        "echo with the node certificate: {}",
        text(&echoed)
    );
    let wrong_ca = Daemon::new(&format!(
        "[dicom]\n{}{}",
        identity_keys(&pki.node),
        tls_destination("lw", "LUNGWATCH", port, &pki.stranger.0)
    ));
    let untrusted = lungwatch_echo(&wrong_ca.config, "lw");
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    assert!(
        text(&untrusted).to_lowercase().contains("certificate"),
        "the reason names the certificate: {}",
        text(&untrusted)
    );

    // The association log: two echoes released, the others not established (the probe and
    // the receiver's TLS refusals), none of them with AE titles it could not have read.
    let rows = associations(&d, 7);
    let released = rows.iter().filter(|r| r.outcome == "released").count();
    assert_eq!(released, 2, "{rows:#?}");
    let refused: Vec<&AssociationRecord> = rows
        .iter()
        .filter(|r| r.outcome.starts_with("not established"))
        .collect();
    assert!(refused.len() >= 4, "{rows:#?}");
    assert!(
        refused
            .iter()
            .any(|r| r.outcome.contains("plain DICOM (no TLS)")),
        "{rows:#?}"
    );
    assert!(refused.iter().all(|r| r.calling_ae.is_empty()), "{rows:#?}");
}

#[test]
fn a_probe_that_closes_before_its_client_hello_frees_its_slot() {
    if !installed("DICOM TLS probe") {
        return;
    }
    let pki = Pki::make();
    let mut d = Daemon::new(&format!(
        "[dicom]\nlisten = \"127.0.0.1:0\"\nae_title = \"LUNGWATCH\"\nmax_associations = 1\n{}",
        identity_keys(&pki.node)
    ));
    d.start();
    let addr = dicom_address(&d);
    drop(std::net::TcpStream::connect(addr).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = echoscu(addr, Some(&pki.peer), &pki.ca);
        if ok.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never freed: {}\n{}",
            text(&ok),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let rows = associations(&d, 2);
    assert!(
        rows.iter()
            .any(|r| r.outcome == "not established: connection closed before a PDU"),
        "{rows:#?}"
    );
}

#[test]
fn echo_and_the_outbox_reach_a_tls_storescp() {
    if !installed("DICOM TLS client") {
        return;
    }
    let pki = Pki::make();
    let port = free_port();
    let mut d = Daemon::new(&format!(
        "[dicom]\n{}{}[outbox]\nretry_min_secs = 1\nretry_max_secs = 2\n[selection]\nmin_slices = 4\n",
        identity_keys(&pki.node),
        tls_destination("peer", "PEER", port, &pki.ca)
    ));
    // Over TLS, requiring a client certificate the CA signed.
    let tls = [
        "+tls".as_ref(),
        pki.peer.1.as_os_str(),
        pki.peer.0.as_os_str(),
        "+cf".as_ref(),
        pki.ca.as_os_str(),
    ];
    let peer = StoreScp::start_with(d.root.path(), port, tls);

    let echoed = lungwatch_echo(&d.config, "peer");
    assert!(
        echoed.status.success() && text(&echoed).contains("success"),
        "echo to storescp over TLS: {}\n--- storescp ---\n{}",
        text(&echoed),
        std::fs::read_to_string(&peer.log).unwrap_or_default()
    );
    // storescp requires a client certificate: without dicom.tls_cert there is none.
    let anonymous = Daemon::new(&tls_destination("peer", "PEER", port, &pki.ca));
    let refused = lungwatch_echo(&anonymous.config, "peer");
    assert!(!refused.status.success(), "{}", text(&refused));
    // The destination's certificate must name its host: it names 127.0.0.1, not 127.0.0.2.
    let other_name = Daemon::new(&format!(
        "[dicom]\n{}{}",
        identity_keys(&pki.node),
        tls_destination("peer", "PEER", port, &pki.ca).replace("127.0.0.1", "127.0.0.2")
    ));
    let mismatch = lungwatch_echo(&other_name.config, "peer");
    assert!(!mismatch.status.success(), "{}", text(&mismatch));
    assert!(
        text(&mismatch).contains("not valid for name \"127.0.0.2\""),
        "{}",
        text(&mismatch)
    );

    // The outbox: a phantom series' SEG, SR and SC, sent over TLS once each.
    d.start();
    let spec = PhantomSpec::small(1);
    let staging = d.root.path().join("phantom");
    for (i, path) in phantom::write(&staging, &phantom::slices(&spec))
        .iter()
        .enumerate()
    {
        common::drop_file(path, &d.incoming, &format!("p-{i}.dcm"));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let rows: Vec<Delivery> = loop {
        if d.data.join("lungwatch.sqlite").exists() {
            let rows = d.db().study_deliveries(&spec.study_uid).unwrap();
            if !rows.is_empty() && rows.iter().all(|r| r.state == "sent") {
                break rows;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the outbox; rows {rows:#?}\n--- daemon log ---\n{}\n\
                 --- storescp ---\n{}",
                d.log(),
                std::fs::read_to_string(&peer.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    kinds.dedup();
    assert_eq!(kinds, ["sc", "seg", "sr"], "{rows:#?}");
    assert!(rows.iter().all(|r| r.attempts == 1), "{rows:#?}");
    assert_eq!(peer.received(), rows.len(), "each object received once");
    let stored = common::files_under(&peer.dir);
    for r in &rows {
        assert!(
            stored
                .iter()
                .any(|p| p.to_string_lossy().contains(&r.sop_instance_uid)),
            "{} not at the peer",
            r.sop_instance_uid
        );
    }
}
