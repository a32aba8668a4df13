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
