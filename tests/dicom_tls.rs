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
use common::phantom::PhantomSpec;
use lungwatch::db::{AssociationRecord, Delivery, DeliveryState, ReadQueries};

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
    d.drop_phantom(&spec);
    let deadline = Instant::now() + Duration::from_secs(120);
    let rows: Vec<Delivery> = loop {
        if d.data.join("lungwatch.sqlite").exists() {
            let rows = d.db().study_deliveries(&spec.study_uid).unwrap();
            if !rows.is_empty() && rows.iter().all(|r| r.state == DeliveryState::Sent) {
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

/// The SHA-256 fingerprint `openssl` gives the certificate in `pem` (`AB:CD:...`).
fn fingerprint(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim().rsplit('=').next().unwrap().to_string()
}

/// Sends SIGHUP and waits until the log holds `needle` `n` times.
fn sighup_and_wait(d: &Daemon, needle: &str, n: usize) {
    d.hup();
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.log().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} (x{n}) after SIGHUP:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn api_status(d: &Daemon) -> serde_json::Value {
    let (code, body) = d.http_get("/api/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `systemctl reload lungwatch` after the site renews its DICOM certificates: the files
/// behind unchanged `dicom.tls_*` keys are replaced (a new node certificate and key from a
/// new CA, and that CA for client certificates) and SIGHUP puts them in service for the
/// next association, on the receiver and as the client certificate offered to a
/// destination. A garbage certificate on a later SIGHUP is logged as an error and changes
/// nothing: the receiver keeps answering with the new certificate, and the outbox still
/// reaches a destination that only trusts the new CA. The status page and `/api/status`
/// show the receiver's TLS and certificate in service and the destination's TLS.
#[test]
fn sighup_reloads_the_dicom_tls_certificates_and_keeps_them_on_a_bad_file() {
    if !installed("DICOM TLS reload") {
        return;
    }
    let (old, new) = (Pki::make(), Pki::make());
    let live = tempfile::tempdir().unwrap();
    let (cert, key, ca) = (
        live.path().join("dicom.pem"),
        live.path().join("dicom.key"),
        live.path().join("site-ca.pem"),
    );
    let install = |pki: &Pki| {
        std::fs::copy(&pki.node.0, &cert).unwrap();
        std::fs::copy(&pki.node.1, &key).unwrap();
        std::fs::copy(&pki.ca, &ca).unwrap();
    };
    install(&old);
    // The destination: its server certificate from the old CA (which its tls_ca names, and
    // which does not change), but client certificates accepted only from the new CA.
    let port = free_port();
    let tls = [
        "+tls".as_ref(),
        old.peer.1.as_os_str(),
        old.peer.0.as_os_str(),
        "+cf".as_ref(),
        new.ca.as_os_str(),
    ];
    let mut d = Daemon::new(&format!(
        "[dicom]\nlisten = \"127.0.0.1:0\"\nae_title = \"LUNGWATCH\"\ntls_cert = {cert:?}\n\
         tls_key = {key:?}\ntls_ca = {ca:?}\n{}[outbox]\nretry_min_secs = 1\nretry_max_secs = 2\n\
         [selection]\nmin_slices = 4\n",
        tls_destination("peer", "PEER", port, &old.ca)
    ));
    let peer = StoreScp::start_with(d.root.path(), port, tls);
    d.start();
    let addr = dicom_address(&d);

    // At start: the old certificate, checked against the old CA both ways.
    let ok = echoscu(addr, Some(&old.peer), &old.ca);
    assert!(ok.status.success(), "old certificates: {}", text(&ok));
    let s = api_status(&d);
    let receiver = &s["dicom"]["receiver"];
    assert_eq!(receiver["tls"], true, "{s:#}");
    assert_eq!(receiver["plain_on_network"], false, "{s:#}");
    assert_eq!(receiver["fingerprint"], fingerprint(&old.node.0), "{s:#}");
    assert_eq!(receiver["client_ca"], ca.display().to_string(), "{s:#}");
    assert_eq!(receiver["listen"], addr.to_string(), "{s:#}");
    let destination = &s["dicom"]["destinations"][0];
    assert_eq!(destination["name"], "peer", "{s:#}");
    assert_eq!(destination["tls"], true, "{s:#}");
    assert_eq!(destination["trust"], old.ca.display().to_string(), "{s:#}");
    let (code, page) = d.http_get("/");
    assert_eq!(code, 200);
    assert!(page.contains("<h2>DICOM</h2>"), "{page}");
    assert!(page.contains("DICOM TLS (TLS 1.2/1.3)"), "{page}");
    assert!(page.contains(&fingerprint(&old.node.0)), "{page}");
    assert!(
        page.contains(&format!(
            "<td class=\"mono\">peer</td><td class=\"mono\">PEER</td>\
             <td class=\"mono\">127.0.0.1:{port}</td><td>DICOM TLS"
        )),
        "{page}"
    );

    // The new pair and CA under the same keys, then SIGHUP.
    install(&new);
    sighup_and_wait(&d, "SIGHUP: DICOM TLS certificate reloaded", 1);
    assert!(
        d.log()
            .contains("SIGHUP: DICOM TLS of destination peer reloaded"),
        "{}",
        d.log()
    );
    let ok = echoscu(addr, Some(&new.peer), &new.ca);
    assert!(ok.status.success(), "new certificates: {}", text(&ok));
    // lungwatch's certificate is the new CA's now, and the old CA's client certificates
    // are no longer accepted.
    let stale_trust = echoscu(addr, Some(&new.peer), &old.ca);
    assert!(!stale_trust.status.success(), "{}", text(&stale_trust));
    let stale_client = echoscu(addr, Some(&old.peer), &new.ca);
    assert!(!stale_client.status.success(), "{}", text(&stale_client));
    let s = api_status(&d);
    assert_eq!(
        s["dicom"]["receiver"]["fingerprint"],
        fingerprint(&new.node.0),
        "{s:#}"
    );

    // A garbage certificate: an error, and the new certificate stays in service.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    sighup_and_wait(&d, "SIGHUP: new DICOM TLS files failed", 1);
    assert!(
        d.log()
            .contains("new DICOM TLS files of destination peer failed"),
        "{}",
        d.log()
    );
    let ok = echoscu(addr, Some(&new.peer), &new.ca);
    assert!(
        ok.status.success(),
        "certificate in service after a bad reload: {}\n{}",
        text(&ok),
        d.log()
    );
    let s = api_status(&d);
    assert_eq!(
        s["dicom"]["receiver"]["fingerprint"],
        fingerprint(&new.node.0),
        "{s:#}"
    );
    let errors = s["recent_errors"].to_string();
    assert!(
        errors.contains("SIGHUP: new DICOM TLS files failed") && errors.contains("dicom.tls_cert"),
        "the error names the key: {errors}"
    );

    // The outbox: the destination takes only the new CA's client certificates, and the
    // file on disk is garbage, so only the configuration kept in service gets through.
    let spec = PhantomSpec::small(1);
    d.drop_phantom(&spec);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = d.db().study_deliveries(&spec.study_uid).unwrap();
        if !rows.is_empty() && rows.iter().all(|r| r.state == DeliveryState::Sent) {
            assert!(rows.iter().all(|r| r.attempts == 1), "{rows:#?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the outbox; rows {rows:#?}\n--- daemon log ---\n{}\n\
             --- storescp ---\n{}",
            d.log(),
            std::fs::read_to_string(&peer.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d.stop_with(15));
}

/// A plain receiver on an address other machines reach reads as such (not as an alarm)
/// on the page, in `/api/status` and in `lungwatch status`; so does a plain destination.
#[test]
fn a_plain_receiver_on_the_network_is_shown_as_plain() {
    let mut d = Daemon::new(
        "[dicom]\nlisten = \"0.0.0.0:0\"\nae_title = \"LUNGWATCH\"\n[[destinations]]\n\
         name = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = 104\n",
    );
    d.start();
    dicom_address(&d);
    let s = api_status(&d);
    let receiver = &s["dicom"]["receiver"];
    assert_eq!(receiver["tls"], false, "{s:#}");
    assert_eq!(receiver["plain_on_network"], true, "{s:#}");
    assert!(receiver.get("fingerprint").is_none(), "{s:#}");
    assert_eq!(s["dicom"]["destinations"][0]["tls"], false, "{s:#}");
    assert!(
        s["security_warnings"].as_array().unwrap().is_empty(),
        "{s:#}"
    );
    let (_, page) = d.http_get("/");
    assert!(
        page.contains("plain TCP <span class=\"badge muted\">unencrypted on the network</span>"),
        "{page}"
    );
    assert!(!page.contains("Certificate SHA-256"), "{page}");
    assert!(page.contains("<td>plain TCP</td>"), "{page}");
    let cli = Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["status", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", text(&cli));
    let out = text(&cli);
    assert!(
        out.contains("receiver    LUNGWATCH on 0.0.0.0:0: plain TCP, reachable from the network"),
        "{out}"
    );
    assert!(
        out.contains("destination pacs: PACS at 127.0.0.1:104, plain TCP"),
        "{out}"
    );
    assert!(d.stop_with(15));
}
