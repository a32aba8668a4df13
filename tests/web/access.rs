//! Who may see what: authentication, roles, masking, the refusal to start open to the network, login throttling, passwords.

use super::*;

#[test]
fn authentication_and_masking() {
    let f = fixture();
    let (web, _state) = start(&f, &config(true, true));
    let addr = web.local_addr();
    for (i, path) in [
        "/",
        "/studies",
        "/api/status",
        "/metrics",
        &format!("/studies/{STUDY_A}"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = get(addr, path);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.headers.contains("WWW-Authenticate: Basic"), "{path}");
        assert!(!r.text().contains("P001"));
        // Four wrong tokens: a fifth within the minute would lock this address out
        // (repeated_failed_logins_get_429 tests that).
        if i < 4 {
            assert_eq!(
                get_with(addr, path, Some("Bearer wrong-token-wrong-token")).status,
                401
            );
        }
        assert_eq!(
            get_with(addr, path, Some(&format!("Bearer {TOKEN}"))).status,
            200,
            "{path}"
        );
    }
    // The browser's login prompt: any user, the token as password ("it:" + TOKEN).
    let basic = format!("Basic {}", base64(&format!("it:{TOKEN}")));
    assert_eq!(get_with(addr, "/", Some(&basic)).status, 200);
    // Health stays open for monitors.
    assert_eq!(get(addr, "/healthz").status, 200);

    // Masked list pages: no patient IDs or names, in HTML or JSON.
    let auth = Some(format!("Bearer {TOKEN}"));
    let html = get_with(addr, "/studies", auth.as_deref()).text();
    assert!(html.contains("P00***"));
    assert!(
        !html.contains("P001") && !html.contains("DOE"),
        "masked list leaks identity"
    );
    let json = get_with(addr, "/api/studies", auth.as_deref()).text();
    assert!(json.contains("P00***") && !json.contains("P001") && !json.contains("DOE"));
    // Searching by the real ID still works.
    let found = get_with(addr, "/api/studies?patient_id=P001", auth.as_deref()).json();
    assert_eq!(found["studies"].as_array().unwrap().len(), 4);
    drop(web);

    // Basic auth with a named user and an Argon2id hash.
    let cfg = WebConfig {
        users: vec![WebUser {
            name: "radiology".into(),
            password_hash: web::hash_password("s3cret pass").unwrap(),
            role: Role::Viewer,
        }],
        ..config(false, false)
    };
    let (web, _state) = start(&f, &cfg);
    let addr = web.local_addr();
    assert_eq!(get(addr, "/").status, 401);
    let ok = format!("Basic {}", base64("radiology:s3cret pass"));
    let wrong = format!("Basic {}", base64("radiology:s3cret pasS"));
    assert_eq!(get_with(addr, "/", Some(&ok)).status, 200);
    assert_eq!(get_with(addr, "/", Some(&wrong)).status, 401);
}

#[test]
fn start_refuses_an_open_non_loopback_address() {
    let f = fixture();
    let state = Arc::new(WebState::new(f.incoming.clone(), models()));
    let cfg = WebConfig {
        listen: "0.0.0.0:0".into(),
        ..config(false, false)
    };
    let err = web::start(&cfg, &audit_config(true), &f.db_path, &f.data, state)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(
        err.contains("web.listen") && err.contains("no authentication"),
        "{err}"
    );
}

/// `lungwatch serve` itself refuses a non-loopback `web.listen` without authentication,
/// before touching any folder.
#[test]
fn serve_refuses_to_start_open_to_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lungwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\nincoming = {:?}\ndata = {:?}\n[web]\nlisten = \"0.0.0.0:8080\"\n",
            dir.path().join("incoming"),
            dir.path().join("data")
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve kept running with an open, unauthenticated web.listen");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(
        err.contains("web.listen") && err.contains("no authentication"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing created before refusing"
    );
}

/// A non-loopback address needs TLS as well as authentication (or allow_plain_http).
#[test]
fn start_refuses_a_non_loopback_address_without_tls() {
    let f = fixture();
    let state = Arc::new(WebState::new(f.incoming.clone(), models()));
    let cfg = WebConfig {
        listen: "0.0.0.0:0".into(),
        ..config(true, false)
    };
    let err = web::start(
        &cfg,
        &audit_config(true),
        &f.db_path,
        &f.data,
        Arc::clone(&state),
    )
    .err()
    .expect("must refuse")
    .to_string();
    assert!(err.contains("web.listen") && err.contains("TLS"), "{err}");
    // With allow_plain_http it starts, and the status page says why that is risky.
    let cfg = WebConfig {
        allow_plain_http: true,
        ..cfg
    };
    let web = start_with(&f, &cfg, state);
    let addr = SocketAddr::from(([127, 0, 0, 1], web.local_addr().port()));
    let page = get_with(addr, "/", Some(&format!("Bearer {TOKEN}"))).text();
    assert!(
        page.contains("Security: the web page listens on 0.0.0.0"),
        "{page}"
    );
    assert!(page.contains("plain HTTP"));
    let status = get_with(addr, "/api/status", Some(&format!("Bearer {TOKEN}"))).json();
    assert_eq!(status["https"], false);
    assert!(
        status["security_warnings"][0]
            .as_str()
            .unwrap()
            .contains("unencrypted")
    );
}

/// Every route, on a network-facing config (0.0.0.0, users, token, TLS): none answers
/// patient data without valid credentials, and only admins read the audit trail.
#[test]
fn no_route_returns_patient_data_without_authentication() {
    const TEST: &str = "no_route_returns_patient_data_without_authentication";
    if !have_curl(TEST) {
        return;
    }
    let f = fixture();
    let tls_dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(tls_dir.path(), TEST) else {
        return;
    };
    let cfg = WebConfig {
        listen: "0.0.0.0:0".into(),
        token: Some(TOKEN.into()),
        users: vec![
            user("ann", "viewer pass", Role::Viewer),
            user("boss", "admin pass", Role::Admin),
        ],
        ..tls_config(&cert, &key)
    };
    let (web, _state) = start(&f, &cfg);
    let base = format!("https://127.0.0.1:{}", web.local_addr().port());
    let admin = ["-u", "boss:admin pass"];
    let api = curl(&cert, &format!("{base}/api/studies/{STUDY_A}"), &admin)
        .unwrap()
        .json();
    let id = api["series"][0]["result_id"].as_i64().unwrap();
    // Every route of server.rs's router, each with real identifiers.
    let routes = [
        "/".to_string(),
        "/api/status".to_string(),
        "/studies".to_string(),
        "/studies?patient_id=P001".to_string(),
        "/api/studies".to_string(),
        "/api/studies?patient_id=P001".to_string(),
        format!("/studies/{STUDY_A}"),
        format!("/api/studies/{STUDY_A}"),
        "/patients/P001".to_string(),
        "/api/patients/P001".to_string(),
        format!("/artifacts/{id}/axial-0.png"),
        format!("/artifacts/{id}/labels.nii.gz"),
        "/metrics".to_string(),
        "/audit".to_string(),
        "/no/such/page".to_string(),
    ];
    let leaks = |r: &Response| {
        let t = r.text();
        t.contains("P001")
            || t.contains("DOE")
            || r.body.starts_with(b"\x89PNG")
            || t.contains(STUDY_A)
    };
    // No credentials, and wrong credentials of each kind. Wrong ones count towards the
    // lock-out of their address, so they come from ever new loopback source addresses
    // (127.0.0.10, .11, ...), four each: the throttle is tested on its own below.
    let wrong: [&[&str]; 4] = [
        &[],
        &["-u", "boss:wrong"],
        &["-u", "nobody:admin pass"],
        &["-H", "Authorization: Bearer not-the-token-at-all"],
    ];
    let mut failures = 0;
    for route in &routes {
        for creds in wrong {
            for head in [false, true] {
                let mut args = creds.to_vec();
                let source = format!("127.0.0.{}", 10 + failures / 4);
                if !creds.is_empty() {
                    args.extend(["--interface", &source]);
                    failures += 1;
                }
                if head {
                    args.push("-I");
                }
                let r = curl(&cert, &format!("{base}{route}"), &args).unwrap();
                assert_eq!(r.status, 401, "{route} (HEAD: {head}) with {creds:?}");
                assert!(!leaks(&r), "{route} leaks patient data: {}", r.text());
            }
        }
        // The same route with valid credentials does answer (so the walk means something).
        let r = curl(&cert, &format!("{base}{route}"), &admin).unwrap();
        let expected = if route == "/no/such/page" { 404 } else { 200 };
        assert_eq!(r.status, expected, "{route} as admin: {}", r.text());
    }
    // Health stays open and says nothing clinical.
    let h = curl(&cert, &format!("{base}/healthz"), &[]).unwrap();
    assert_eq!(h.status, 200);
    assert!(!leaks(&h));
    // Roles: viewers and the token read patient pages but not the audit trail.
    for creds in [["-u", "ann:viewer pass"], ["-u", &format!("x:{TOKEN}")]] {
        assert_eq!(
            curl(&cert, &format!("{base}/patients/P001"), &creds)
                .unwrap()
                .status,
            200
        );
        let r = curl(&cert, &format!("{base}/audit"), &creds).unwrap();
        assert_eq!(r.status, 403, "{creds:?}");
    }
    // Other methods are refused before anything else.
    let r = curl(&cert, &format!("{base}/api/patients/P001"), &["-X", "POST"]).unwrap();
    assert_eq!(r.status, 405);
}

/// Five failed logins from one address within a minute: 429 with Retry-After, even for
/// the right password; counted on the status page and in /metrics.
#[test]
fn repeated_failed_logins_get_429() {
    let f = fixture();
    let cfg = WebConfig {
        users: vec![user("ann", "viewer pass", Role::Viewer)],
        ..config(false, false)
    };
    let (web, state) = start(&f, &cfg);
    let addr = web.local_addr();
    let good = basic("ann", "viewer pass");
    // A browser's first request carries no credentials: not a failed login.
    assert_eq!(get(addr, "/").status, 401);
    for _ in 0..4 {
        assert_eq!(
            get_with(addr, "/", Some(&basic("ann", "guess"))).status,
            401
        );
    }
    let metrics = get_with(addr, "/metrics", Some(&good)).text();
    let values = parse_prometheus(&metrics);
    let value = |name: &str| values.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    assert_eq!(
        value("lungwatch_failed_logins_total"),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(value("lungwatch_locked_out_addresses"), Some(0.0));
    let status = get_with(addr, "/api/status", Some(&good)).json();
    assert_eq!(status["logins"]["failed_logins"], 4);
    let page = get_with(addr, "/", Some(&good)).text();
    assert!(
        page.contains("<dt>Failed logins</dt><dd>4</dd>"),
        "status page shows the count"
    );
    // The fifth failure within the minute locks the address out.
    assert_eq!(
        get_with(addr, "/", Some(&basic("ann", "guess5"))).status,
        401
    );
    for creds in [Some(good.as_str()), Some("Basic YW5uOnd4"), None] {
        let r = get_with(addr, "/studies", creds);
        assert_eq!(r.status, 429, "{creds:?}");
        let retry: u64 = r
            .headers
            .lines()
            .find_map(|l| l.strip_prefix("Retry-After: "))
            .expect("Retry-After")
            .trim()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert!(!r.text().contains("P001"));
    }
    // Health is not throttled: monitors must see the box.
    assert_eq!(get(addr, "/healthz").status, 200);
    let counts = state.login_counts();
    assert_eq!(counts.failed_logins, 5);
    assert_eq!(counts.throttled_requests, 3);
    assert_eq!(counts.locked_addresses, 1);
    // The lock-out survives a restart of the page (SIGHUP), as it lives in WebState.
    drop(web);
    let web = start_with(&f, &cfg, state);
    assert_eq!(get_with(web.local_addr(), "/", Some(&good)).status, 429);
}

/// `lungwatch passwd` hashes stdin; `serve` takes the hash and refuses the old keys.
#[test]
fn passwd_hashes_are_accepted_and_sha256_keys_refused() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let hash = line
        .trim()
        .strip_prefix("password_hash = \"")
        .and_then(|h| h.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // That line, pasted into a config, lets the user in (and only with that password).
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[paths]\nincoming = \"/a\"\ndata = \"/b\"\n[web]\nlisten = \"0.0.0.0:8443\"\n\
         tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n[[web.users]]\nname = \"ann\"\n{}\n",
        line.trim()
    );
    let parsed = lungwatch::config::Config::from_toml(&toml, Path::new("t.toml")).unwrap();
    let f = fixture();
    let cfg = WebConfig {
        users: parsed.web.users.clone(),
        ..config(false, false)
    };
    let (web, _state) = start(&f, &cfg);
    assert_eq!(
        get_with(web.local_addr(), "/", Some(&basic("ann", "correct horse"))).status,
        200
    );
    assert_eq!(
        get_with(web.local_addr(), "/", Some(&basic("ann", "correct horsE"))).status,
        401
    );
    drop(web);
    // Too short a password is refused.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    assert!(!child.wait_with_output().unwrap().status.success());
    // The retired SHA-256 keys stop `serve` with instructions, before any folder is made.
    let sha = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    let conf = dir.path().join("old.toml");
    std::fs::write(
        &conf,
        format!(
            "[paths]\nincoming = {:?}\ndata = {:?}\n[web]\nbasic_user = \"it\"\n\
             basic_password_sha256 = {sha:?}\n",
            dir.path().join("incoming"),
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["serve", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("web.basic_") && err.contains("lungwatch passwd"),
        "{err}"
    );
    assert!(!dir.path().join("data").exists());
}

/// `serve` on 0.0.0.0 with authentication but without TLS refuses to start.
#[test]
fn serve_refuses_0_0_0_0_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("lungwatch.toml");
    std::fs::write(
        &conf,
        format!(
            "[paths]\nincoming = {:?}\ndata = {:?}\n[web]\nlisten = \"0.0.0.0:8080\"\n\
             token = \"{TOKEN}\"\n",
            dir.path().join("incoming"),
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lungwatch"))
        .args(["serve", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("web.listen") && err.contains("TLS is not configured"),
        "{err}"
    );
    assert!(!dir.path().join("data").exists());
}

/// `lungwatch passwd` on a terminal (a pseudo-terminal made by Python's `pty`): asks twice,
/// never echoes the password, prints the hash line.
#[test]
fn passwd_on_a_terminal_does_not_echo() {
    const SCRIPT: &str = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "passwd"])
out = b""
def read(secs):
    global out
    end = time.time() + secs
    while time.time() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                return
read(1); os.write(fd, b"terminal secret 1\n"); read(1); os.write(fd, b"terminal secret 1\n"); read(5)
sys.stdout.write(out.decode())
"#;
    let out = match std::process::Command::new("python3")
        .args(["-c", SCRIPT, env!("CARGO_BIN_EXE_lungwatch")])
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            eprintln!("SKIPPED passwd_on_a_terminal_does_not_echo: no python3 with pty");
            return;
        }
    };
    assert!(
        out.contains("Password: ") && out.contains("Repeat it: "),
        "{out:?}"
    );
    assert!(out.contains("password_hash = \"$argon2id$"), "{out:?}");
    assert!(
        !out.contains("terminal secret"),
        "the password was echoed: {out:?}"
    );
}
