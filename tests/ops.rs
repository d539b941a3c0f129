//! Operations: health, metrics, graceful shutdown, key management while serving, the
//! database's file modes, what the log may contain, and secrets kept out of messages.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

#[test]
fn healthz_and_metrics_answer() {
    let s = TestServer::start();
    let r = s.get("/healthz");
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    let mut ws = s.ws(&s.token());
    for _ in 0..5 {
        next_of_type(&mut ws, "ticker");
    }
    let r = s.get("/metrics");
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(s.metric("ticker_ticks_total") >= 5.0);
    assert!(s.metric("ticker_frames_sent_total") >= 4.0);
    assert_eq!(s.metric("ticker_ws_sessions_open"), 1.0);
    assert!(r.text().contains("ticker_auth_requests_total{outcome=\"issued\"} 1"));
    assert!(r.text().contains("# TYPE ticker_fanout_duration_seconds histogram"));
}

#[test]
fn sigterm_sends_1001_to_every_session_and_exits_0_within_5_s() {
    let s = TestServer::start();
    let token = s.token();
    let mut sessions: Vec<Ws> = (0..3).map(|_| s.ws(&token)).collect();
    for ws in &mut sessions {
        next_of_type(ws, "ticker");
    }
    // One subscriber that never reads cannot take its close frame; it must not hold up
    // the exit beyond the grace period.
    let _stalled = s.raw_subscriber(&token);
    let pid = s.pid();
    let readers: Vec<_> = sessions
        .into_iter()
        .map(|mut ws| std::thread::spawn(move || read_until_close(&mut ws)))
        .collect();
    let (status, took) = s.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "exit status {status:?} (pid {pid})");
    // The documented bound (3 s grace by default), not a speed target.
    eprintln!("exit {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    for r in readers {
        assert_eq!(r.join().unwrap(), Some(1001));
    }
}

#[test]
fn a_key_revoked_from_the_cli_closes_its_live_sessions_with_1008() {
    let s = TestServer::start();
    let db = s.db_path();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
            .arg("keys")
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let key = cli(&["create", "--user", "alice"]).trim().to_owned();
    let r = s.post("/auth/token", &format!(r#"{{"api_key":"{key}"}}"#));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["user_id"], "alice");
    let alice_token = r.json()["token"].as_str().unwrap().to_owned();
    let mut ws = s.ws(&alice_token);
    assert_eq!(next_of_type(&mut ws, "welcome")["user_id"], "user:alice");
    let list = cli(&["list"]);
    assert!(list.contains("alice") && !list.contains(&key), "list never shows keys:\n{list}");
    let id = list
        .lines()
        .find(|l| l.contains("alice"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    cli(&["revoke", &id]);
    assert_eq!(read_until_close(&mut ws), Some(1008));
    // Its tokens ended with it, and the key itself is refused.
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(s.ws_url()).unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {alice_token}").parse().unwrap());
    match s.ws_request(req) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => panic!("old token still accepted: {:?}", other.map(|_| ())),
    }
    let r = s.post("/auth/token", &format!(r#"{{"api_key":"{key}"}}"#));
    assert_eq!(r.status, 401);
    // The demo user is unaffected.
    s.token();
}

#[test]
fn logs_of_a_session_contain_no_token_and_no_key_but_the_demo_line() {
    let s = TestServer::start();
    let token = s.token();
    let mut ws = s.ws(&token);
    next_of_type(&mut ws, "ticker");
    s.post("/auth/token", r#"{"api_key":"wrong-key-value"}"#);
    drop(ws);
    s.wait_for_log("token issued");
    let logs = s.logs();
    assert!(!logs.contains(&token), "token in logs");
    assert!(!logs.contains("wrong-key-value"));
    assert_eq!(logs.matches(&s.demo_key).count(), 1, "only the demo key line");
}

#[test]
fn a_client_can_revoke_its_own_token_and_its_sessions_close() {
    let s = TestServer::start();
    let token = s.token();
    let mut ws = s.ws(&token);
    next_of_type(&mut ws, "welcome");
    let revoke = |t: &str| {
        s.raw(format!("POST /auth/revoke HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {t}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
    };
    let r = revoke(&token);
    assert_eq!((r.status, r.json()["revoked"].as_bool()), (200, Some(true)));
    assert_eq!(read_until_close(&mut ws), Some(1008));
    assert_eq!(revoke(&token).status, 401, "a revoked token is no longer valid");
    let other = s.token();
    s.ws(&other); // other tokens are unaffected
}

#[test]
fn json_logs_are_one_object_per_line() {
    let s = TestServer::start_with(Opts::default().arg("--log-format", "json"));
    s.token();
    // The log is read by another thread: wait for the line rather than race it.
    s.wait_for_log(r#""msg":"token issued""#);
    for line in s.logs().lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["ts"].is_string() && v["level"].is_string() && v["msg"].is_string(), "{line}");
    }
}

/// Validates /metrics with Prometheus's own parser. `.ci/run` installs promtool and
/// sets `TICKER_REQUIRE_PROMTOOL`; a machine without it says SKIPPED instead of passing
/// silently.
#[test]
fn metrics_pass_promtool_check() {
    let Ok(out) = Command::new("promtool").arg("--version").output() else {
        return missing_tool(
            "TICKER_REQUIRE_PROMTOOL",
            "promtool is not installed (apt-get install prometheus)",
        );
    };
    assert!(out.status.success());
    let s = TestServer::start();
    let mut ws = s.ws(&s.token());
    next_of_type(&mut ws, "ticker");
    let body = s.get("/metrics").body;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_data_folder_is_0700_and_the_database_files_0600_whatever_the_umask() {
    let s = TestServer::start_with(Opts::default().umask(0o022));
    // A lookup keeps a connection open: SQLite's WAL and shared-memory files exist.
    s.token();
    let data = s.dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    for name in ["auth.db", "auth.db-wal", "auth.db-shm", "demo-api-key"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }

    // The keys CLI creating a database of its own.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli").join("auth.db");
    let out = with_umask(Command::new(env!("CARGO_BIN_EXE_crypto-ticker")).arg("keys"), 0o022)
        .args(["create", "--user", "alice", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    assert_eq!(mode(&db), 0o600);
    assert!(!db.with_file_name("demo-api-key").exists(), "the demo key is the server's to make");
}

#[test]
fn loose_modes_left_by_an_earlier_version_are_tightened_at_start_and_logged() {
    let dir = TestServer::start().stop();
    let data = dir.path().join("data");
    let loose =
        [(data.clone(), 0o755), (data.join("auth.db"), 0o644), (data.join("demo-api-key"), 0o644)];
    for (path, mode) in &loose {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let s = TestServer::start_with(Opts { dir: Some(dir.clone()), ..Opts::default() });
    assert_eq!(mode(&data), 0o700);
    assert_eq!((mode(&data.join("auth.db")), mode(&data.join("demo-api-key"))), (0o600, 0o600));
    let logs = s.logs();
    let tightened: Vec<&str> =
        logs.lines().filter(|l| l.contains("permissions tightened")).collect();
    assert_eq!(tightened.len(), 3, "{logs}");
    assert!(tightened.iter().any(|l| l.contains("was=0644") && l.contains("now=0600")), "{logs}");
}

/// A key for a user id with a terminal escape in it, as another tool could have written.
const EVIL_USER: &str = "mallory\u{1b}[2J\u{1b}]0;pwned\u{7}";

#[test]
fn a_user_id_with_control_characters_is_logged_escaped() {
    let s = TestServer::start();
    let key = keys_cli(&s.db_path(), &["create", "--user", EVIL_USER]).trim().to_owned();
    assert_eq!(s.post("/auth/token", &key_body(&key)).status, 200);
    let line = s.wait_for_log("token issued");
    assert!(line.contains(r#"user_id="mallory\u{1b}[2J\u{1b}]0;pwned\u{7}""#), "{line}");
    let logs = s.logs();
    assert!(!logs.contains(|c: char| c.is_control() && c != '\n'), "a raw control character");
}

#[test]
fn a_user_id_with_control_characters_leaves_json_logs_valid() {
    let s = TestServer::start_with(Opts::default().arg("--log-format", "json"));
    let key = keys_cli(&s.db_path(), &["create", "--user", EVIL_USER]).trim().to_owned();
    assert_eq!(s.post("/auth/token", &key_body(&key)).status, 200);
    let line = s.wait_for_log(r#""msg":"token issued""#);
    let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
    assert_eq!(v["user_id"], EVIL_USER);
    assert!(!s.logs().contains(|c: char| c.is_control() && c != '\n'), "a raw control character");
}

#[test]
fn a_refused_redis_url_never_shows_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crypto-ticker"));
        cmd.args(args).arg("--db").arg(&db).env_remove("TICKER_REDIS");
        if let Some(url) = env {
            cmd.env("TICKER_REDIS", url);
        }
        let out = cmd.output().expect("run crypto-ticker");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let cases = [
        (vec!["--redis", "http://:hunter2@127.0.0.1:6379/0"], None),
        (vec!["--redis", "redis://app:hunter2@127.0.0.1:notaport/0"], None),
        (vec!["--addr", "127.0.0.1:0"], Some("app:hunter2@cache.local:6379")),
        (vec!["keys", "list", "--redis", "http://app:hunter2@127.0.0.1/0"], None),
        (vec!["keys", "list", "--redis", "redis://:hunter2@127.0.0.1:6379/zero"], None),
    ];
    for (args, env) in cases {
        let (code, err) = run(&args, env);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.to_lowercase().contains("redis"), "{args:?}: {err}");
        assert!(!err.contains("hunter2"), "{args:?}: {err}");
    }
}
