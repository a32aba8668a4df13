//! HTTPS with a self-signed certificate, as curl and Chromium see it.

use super::*;

/// curl over HTTPS against the self-signed certificate: pages, HSTS, the XSS checks, TLS
/// 1.0/1.1 refused (with a control server proving this curl can speak TLS 1.1), and a
/// certificate replaced on disk noticed for the SIGHUP reload.
#[test]
fn https_with_curl_and_the_self_signed_certificate() {
    const TEST: &str = "https_with_curl_and_the_self_signed_certificate";
    if !have_curl(TEST) {
        return;
    }
    let f = fixture();
    let tls_dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(tls_dir.path(), TEST) else {
        return;
    };
    let (web, _state) = start(&f, &tls_config(&cert, &key));
    assert!(web.is_https());
    let base = format!("https://127.0.0.1:{}", web.local_addr().port());
    let r = curl(&cert, &format!("{base}/"), &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains(DISCLAIMER));
    assert!(
        r.headers
            .contains("Strict-Transport-Security: max-age=31536000"),
        "{}",
        r.headers
    );
    assert!(r.text().contains("HTTPS"), "the status page says HTTPS");
    for page in [
        "/".to_string(),
        "/studies".to_string(),
        format!("/studies/{STUDY_EVIL}"),
        "/patients/EVIL%20%3C1%3E".to_string(),
        "/studies?patient_id=%3Cscript%3E".to_string(),
        "/patients/%3Cscript%3Ealert(3)%3C%2Fscript%3E".to_string(),
    ] {
        let r = curl(&cert, &format!("{base}{page}"), &[]).unwrap();
        assert_escaped(&page, &r.text());
    }
    // TLS 1.2 and 1.3 are accepted, each alone.
    for v in [
        ["--tlsv1.2", "--tls-max", "1.2"],
        ["--tlsv1.3", "--tls-max", "1.3"],
    ] {
        assert_eq!(
            curl(&cert, &format!("{base}/healthz"), &v).unwrap().status,
            200,
            "{v:?}"
        );
    }
    // TLS 1.0/1.1: refused by lungwatch, though this curl speaks them (shown against
    // openssl s_server allowing TLS 1.1, when it can be started).
    let old = [
        "--tlsv1.0",
        "--tls-max",
        "1.1",
        "--ciphers",
        "DEFAULT@SECLEVEL=0",
    ];
    let err = curl(&cert, &format!("{base}/healthz"), &old).err();
    assert!(err.is_some(), "TLS 1.1 was accepted");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut control = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-www",
            "-tls1_1",
        ])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut spoke_tls11 = false;
    for _ in 0..50 {
        if curl(&cert, &format!("https://127.0.0.1:{port}/"), &old).is_ok() {
            spoke_tls11 = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    control.kill().unwrap();
    let _ = control.wait();
    if spoke_tls11 {
        eprintln!("control: this curl completed a TLS 1.1 exchange with openssl s_server");
    } else {
        eprintln!(
            "note: the TLS 1.1 control server did not answer; the refusal above stands alone"
        );
    }
    // Plain HTTP to the HTTPS port gets no page.
    let plain = curl(
        &cert,
        &format!("http://127.0.0.1:{}/", web.local_addr().port()),
        &[],
    );
    assert!(plain.map_or(true, |r| !r.text().contains(DISCLAIMER)));
    // A replaced certificate under the same keys is noticed (the daemon restarts the page).
    assert!(!web.tls_files_changed());
    let again = tempfile::tempdir().unwrap();
    let (cert2, key2) = self_signed(again.path(), TEST).unwrap();
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    assert!(web.tls_files_changed());
    drop(web);
    let (web, _state) = start(&f, &tls_config(&cert, &key));
    let base = format!("https://127.0.0.1:{}", web.local_addr().port());
    assert_eq!(
        curl(&cert2, &format!("{base}/healthz"), &[])
            .unwrap()
            .status,
        200
    );
}

/// The status page over HTTPS in headless Chromium, trusting only this certificate (by
/// its public-key hash), saved as `target/screenshots/status-https.png`.
#[test]
fn screenshot_of_the_status_page_over_https() {
    const TEST: &str = "screenshot_of_the_status_page_over_https";
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIPPED {TEST}: no /usr/bin/chromium (apt-get install chromium)");
        return;
    };
    let f = fixture();
    let tls_dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(tls_dir.path(), TEST) else {
        return;
    };
    let spki = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | \
             openssl dgst -sha256 -binary | base64",
            cert.display()
        ))
        .output()
        .unwrap();
    let spki = String::from_utf8(spki.stdout).unwrap().trim().to_string();
    let (web, _state) = start(&f, &tls_config(&cert, &key));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out_dir = target.join("screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = out_dir.join("status-https.png");
    let _ = std::fs::remove_file(&file);
    let profile = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--ignore-certificate-errors-spki-list={spki}"),
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", file.display()),
            "--window-size=1280,900",
            &format!("https://127.0.0.1:{}/", web.local_addr().port()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "chromium failed");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // An interstitial ("Your connection is not private") is a small page; the status page
    // with its cards is not. A person checks the image itself.
    assert!(bytes.len() > 10_000, "looks blank ({} bytes)", bytes.len());
    eprintln!("screenshot: {}", file.display());
}

/// `lungwatch check` reads the certificate like `serve` does and prints its fingerprint,
/// the one openssl computes; a missing key file fails the check.
#[test]
fn check_reports_the_certificate_fingerprint() {
    const TEST: &str = "check_reports_the_certificate_fingerprint";
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(dir.path(), TEST) else {
        return;
    };
    let conf = dir.path().join("lungwatch.toml");
    let write = |key: &Path| {
        std::fs::write(
            &conf,
            format!("[web]\ntls_cert = {cert:?}\ntls_key = {key:?}\n"),
        )
        .unwrap()
    };
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
            .args(["check", "--models"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
            .arg("--config")
            .arg(&conf)
            .output()
            .unwrap()
    };
    write(&key);
    let out = check();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fp = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let fp = String::from_utf8(fp.stdout).unwrap();
    let fp = fp.trim().rsplit('=').next().unwrap().to_string();
    assert!(
        text.contains(&format!(
            "web TLS certificate: ok, SHA-256 fingerprint {fp}"
        )),
        "{text}"
    );
    write(&dir.path().join("missing.pem"));
    let out = check();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("web.tls_key"));
}
