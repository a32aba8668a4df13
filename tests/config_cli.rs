//! `lungwatch config get|set` as `lungwatch-setup` uses it: the one checked change that
//! puts the page on the LAN with an admin user, and the reads that follow it.

mod common;

use common::lungwatch;

const SITE: &str = "# Radiology's config.\n\n[paths]\n# The PACS share.\nincoming = \"/mnt/pacs\"\n\n[web]\nlisten = \"127.0.0.1:8080\"\n";

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn setup_web_edit_is_one_checked_change() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("lungwatch.toml");
    let conf_arg = conf.to_str().unwrap();
    std::fs::write(&conf, SITE).unwrap();
    let hash = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
            .arg("passwd")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(b"a long password\n")?;
                child.wait_with_output()
            })
            .unwrap();
        let line = text(&out);
        line.trim_start_matches("password_hash = \"")
            .trim_end_matches('"')
            .to_string()
    };
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    // LAN without TLS: start-up would refuse it, so nothing is written.
    let refused = lungwatch(&[
        "config",
        "set",
        "--config",
        conf_arg,
        "web.listen",
        "0.0.0.0:8443",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not written"));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), SITE);

    // The whole change at once, as lungwatch-setup's web_set makes it.
    let Some((cert, key)) = common::self_signed(
        dir.path(),
        "the TLS half of setup_web_edit_is_one_checked_change",
    ) else {
        return;
    };
    let user = "dr.smith";
    let out = lungwatch(&[
        "config",
        "set",
        "--config",
        conf_arg,
        "web.listen",
        "0.0.0.0:8443",
        "web.tls_cert",
        cert.to_str().unwrap(),
        "web.tls_key",
        key.to_str().unwrap(),
        &format!("web.users.\"{user}\".password_hash"),
        &hash,
        &format!("web.users.\"{user}\".role"),
        "admin",
        "--unset",
        "web.basic_user",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&conf).unwrap();
    assert!(
        written.starts_with(
            "# Radiology's config.\n\n[paths]\n# The PACS share.\nincoming = \"/mnt/pacs\"\n"
        ),
        "{written}"
    );
    let get = |key: &str| lungwatch(&["config", "get", "--config", conf_arg, key]);
    assert_eq!(text(&get("web.listen")), "0.0.0.0:8443");
    assert_eq!(text(&get("web.users")), user);
    assert_eq!(text(&get(&format!("web.users.\"{user}\".role"))), "admin");
    assert_eq!(
        text(&get(&format!("web.users.\"{user}\".password_hash"))),
        hash
    );
    // An unset key: nothing on stdout, exit 1, a message naming it.
    let missing = get("dicom.port");
    assert_eq!(
        (missing.status.code(), text(&missing).as_str()),
        (Some(1), "")
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("dicom.port is not set"));
    // The file now starts lungwatch: `check` loads it as serve does.
    let check = lungwatch(&["check", "--config", conf_arg]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let odd = lungwatch(&["config", "set", "--config", conf_arg, "web.listen"]);
    assert_eq!(odd.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&odd.stderr).contains("KEY VALUE pairs"));
}
