//! install.sh into a temporary root (no root privileges, no systemctl): files, unit
//! hardening, idempotence, config preservation, uninstall keeping data, purge.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use lungwatch::config::Config;

fn run(root: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--root")
        .arg(root)
        .args(["--binary", env!("CARGO_BIN_EXE_lungwatch")])
        .args(args)
        .env_remove("DESTDIR")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install.sh {args:?} failed:\n{text}");
    text
}

#[test]
fn script_is_valid_bash_and_shellcheck_clean() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    assert!(
        Command::new("bash")
            .arg("-n")
            .arg(&script)
            .status()
            .unwrap()
            .success()
    );
    match Command::new("shellcheck").arg(&script).output() {
        Ok(out) => assert!(
            out.status.success(),
            "shellcheck:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => eprintln!("SKIPPED shellcheck: not installed (apt-get install shellcheck)"),
    }
}

#[test]
fn installs_into_a_root_idempotently_and_uninstalls() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    run(root, &[]);

    let bin = root.join("usr/local/bin/lungwatch");
    assert!(bin.metadata().unwrap().permissions().mode() & 0o111 != 0);
    let models = root.join("usr/share/lungwatch/models");
    for f in [
        "manifest.toml",
        "lung_seg.onnx",
        "lesion_seg.onnx",
        "classifier.onnx",
        "MODEL_CARD.md",
    ] {
        assert_eq!(
            std::fs::read(models.join(f)).unwrap(),
            std::fs::read(repo.join("models").join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(
        !models.join("train").exists(),
        "training scripts are not installed"
    );
    let conf = root.join("etc/lungwatch/lungwatch.toml");
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        std::fs::read_to_string(repo.join("config/lungwatch.toml")).unwrap()
    );
    Config::load(&conf).expect("the installed config is valid");
    for d in ["var/lib/lungwatch/incoming", "var/lib/lungwatch/data"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/lungwatch.service")).unwrap();
    for line in [
        "ExecStart=/usr/local/bin/lungwatch serve --config /etc/lungwatch/lungwatch.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=lungwatch",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/lungwatch",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "MemoryDenyWriteExecute=yes",
        "CapabilityBoundingSet=",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "unit lacks {line:?}:\n{unit}"
        );
    }

    // A site's config and data survive a re-install.
    std::fs::write(&conf, "[web]\nmask_patient_ids = true\n").unwrap();
    std::fs::write(root.join("var/lib/lungwatch/data/lungwatch.sqlite"), b"db").unwrap();
    std::fs::write(models.join("stale.onnx"), b"old").unwrap();
    let out = run(root, &[]);
    assert!(out.contains("kept the existing"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "[web]\nmask_patient_ids = true\n"
    );
    assert!(root.join("etc/lungwatch/lungwatch.toml.dist").is_file());
    assert!(
        !models.join("stale.onnx").exists(),
        "the models folder is replaced whole"
    );
    assert!(
        root.join("var/lib/lungwatch/data/lungwatch.sqlite")
            .is_file()
    );

    // Uninstall keeps config and data.
    run(root, &["--uninstall"]);
    assert!(!bin.exists());
    assert!(!models.exists());
    assert!(!root.join("etc/systemd/system/lungwatch.service").exists());
    assert!(conf.is_file());
    assert!(
        root.join("var/lib/lungwatch/data/lungwatch.sqlite")
            .is_file()
    );
    // Purge removes them too.
    run(root, &["--uninstall", "--purge"]);
    assert!(!root.join("etc/lungwatch").exists());
    assert!(!root.join("var/lib/lungwatch").exists());
}

fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A self-signed certificate is made when none is there, its fingerprint printed, and a
/// second install (or a site's own certificate) keeps the files byte for byte.
#[test]
fn makes_a_self_signed_certificate_once_and_keeps_it() {
    if !have_openssl() {
        eprintln!(
            "SKIPPED makes_a_self_signed_certificate_once_and_keeps_it: no openssl (apt-get install openssl)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let out = run(root, &[]);
    let tls = root.join("etc/lungwatch/tls");
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    assert!(out.contains("created a self-signed certificate"), "{out}");
    let key_mode = key.metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o640, "the private key is not world-readable");
    // The fingerprint printed is the certificate's.
    let fp = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let fp = String::from_utf8(fp.stdout).unwrap();
    let fp = fp.trim().rsplit('=').next().unwrap();
    assert_eq!(fp.len(), 95, "{fp}");
    assert!(out.contains(fp), "fingerprint {fp} not printed:\n{out}");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    // The pair works for lungwatch: the web page starts on it over HTTPS.
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    drop(lungwatch::db::Database::open(&data.join("db.sqlite")).unwrap());
    let mut web = Config::default().web;
    web.tls_cert = Some(cert.clone());
    web.tls_key = Some(key.clone());
    web.listen = "127.0.0.1:0".into();
    let state = std::sync::Arc::new(lungwatch::web::WebState::new(data.clone(), Vec::new()));
    let handle = lungwatch::web::start(
        &web,
        &Config::default().audit,
        &data.join("db.sqlite"),
        &data,
        state,
    )
    .expect("the installed certificate and key are usable");
    assert!(handle.is_https());
    drop(handle);
    // A second install keeps it.
    let before = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let out = run(root, &[]);
    assert!(out.contains("kept the existing certificate"), "{out}");
    assert!(out.contains(fp), "{out}");
    assert_eq!(
        before,
        (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap())
    );
    // A site's own certificate (here: only the key is there yet) is never replaced.
    std::fs::remove_file(&cert).unwrap();
    std::fs::write(&key, b"site key").unwrap();
    let out = run(root, &[]);
    assert!(out.contains("kept the existing certificate"), "{out}");
    assert!(!cert.exists());
    assert_eq!(std::fs::read(&key).unwrap(), b"site key");
    // Image builds make none: each box makes its own at first boot.
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path(), &["--no-tls-cert"]);
    assert!(!tmp.path().join("etc/lungwatch/tls/cert.pem").exists());
}

#[test]
fn refuses_bad_options() {
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    for args in [
        &["--purge"][..],
        &["--frobnicate"],
        &["--prefix", "relative"],
    ] {
        let out = Command::new("bash")
            .arg(&script)
            .arg("--root")
            .arg(tmp.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("install.sh:"));
    }
}
