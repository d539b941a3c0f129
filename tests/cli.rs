//! The command line as a user meets it: commands that only read create nothing (a
//! mistyped `--db` is an error, not a new database), refused values are named in the
//! user's units with exit status 2, and every help text fits 100 columns.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// What a run of the binary left: exit code, stdout, stderr.
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

/// Runs `crypto-ticker ARGS` in `cwd`, without the test's environment (no `TICKER_*`
/// variable of the caller's may change what it does).
fn run_in(cwd: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .output()
        .expect("run crypto-ticker");
    Run {
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The names in `dir`, sorted (what a command left behind).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list the folder")
        .map(|e| e.expect("a folder entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn empty_folder() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}

#[test]
fn keys_list_of_a_missing_database_exits_2_names_it_and_creates_nothing() {
    let dir = empty_folder();
    let db = dir.path().join("mistyped").join("path").join("x.db");
    let db_arg = db.to_str().expect("a UTF-8 temporary path");
    let r = run_in(dir.path(), &["keys", "list", "--db", db_arg]);
    assert_eq!(r.code, Some(2), "{}", r.err);
    assert!(r.err.starts_with(&format!("crypto-ticker keys: no key database at {db_arg} (")));
    assert!(r.err.contains("check --db"), "{}", r.err);
    assert_eq!(r.out, "", "no listing");
    assert!(!dir.path().join("mistyped").exists(), "no folder made");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[test]
fn keys_list_and_revoke_with_the_default_database_create_no_data_folder() {
    let dir = empty_folder();
    for args in
        [&["keys", "list"][..], &["keys", "revoke", "1"], &["keys", "revoke", "--user", "x"]]
    {
        let r = run_in(dir.path(), args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.err);
        assert!(r.err.contains("no key database at ./data/auth.db"), "{args:?}: {}", r.err);
    }
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "no ./data");
}

#[test]
fn a_database_made_by_keys_create_gets_its_demo_key_at_the_servers_first_start() {
    let dir = std::sync::Arc::new(empty_folder());
    let db = dir.path().join("data").join("auth.db");
    let db_arg = db.to_str().expect("a UTF-8 temporary path");
    let r = run_in(dir.path(), &["keys", "create", "--user", "alice", "--db", db_arg]);
    assert_eq!(r.code, Some(0), "{}", r.err);
    assert_eq!(r.out.trim().len(), 32, "the key: {}", r.out);
    assert_eq!(entries(&dir.path().join("data")), ["auth.db"], "the database, no demo key");
    let list = keys_cli(&db, &["list"]);
    assert_eq!(list.lines().count(), 2, "header and alice: {list}");

    let s = TestServer::start_with(Opts { dir: Some(dir.clone()), ..Opts::default() });
    let line = s.wait_for_log("demo API key");
    assert!(line.contains("demo API key created"), "the first start makes it: {line}");
    assert_eq!(s.post("/auth/token", &key_body(r.out.trim())).status, 200, "alice's key works");
}

#[test]
fn read_only_commands_create_nothing_in_the_working_folder() {
    let dir = empty_folder();
    // A build without exchanges refuses source-check with 2; with them, a check where no
    // price arrives exits 1.
    let check = |code| if cfg!(feature = "exchanges") { Some(code) } else { Some(2) };
    let commands: [(&[&str], Option<i32>); 5] = [
        (&["--help"], Some(0)),
        (&["--version"], Some(0)),
        (&["keys", "--help"], Some(0)),
        (&["source-check", "--help"], check(0)),
        // Nothing to connect to: port 1 refuses at once.
        (
            &[
                "source-check",
                "--source",
                "coinbase",
                "--source-url",
                "ws://127.0.0.1:1/",
                "--for",
                "200ms",
            ],
            check(1),
        ),
    ];
    for (args, code) in commands {
        let r = run_in(dir.path(), args);
        assert_eq!(r.code, code, "{args:?}: {}", r.err);
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "{args:?} created something");
    }
}

#[test]
fn a_zero_tick_exits_2_with_the_range_in_the_users_units() {
    let dir = empty_folder();
    let r = run_in(dir.path(), &["--tick", "0ms"]);
    assert_eq!(r.code, Some(2), "{}", r.err);
    assert_eq!(r.err, "crypto-ticker: --tick must be between 1ms and 1h, got 0ms\n");
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "refused before the database");
}

#[test]
fn a_host_name_or_a_bare_port_as_addr_exits_2_with_the_two_usual_addresses() {
    let dir = empty_folder();
    let r = run_in(dir.path(), &["--addr", "localhost:8085"]);
    assert_eq!(r.code, Some(2), "{}", r.err);
    assert_eq!(
        r.err,
        "crypto-ticker: --addr expects IP:PORT, e.g. 127.0.0.1:8085 (this machine only) or \
         0.0.0.0:8085 (every interface); host names are not resolved (got \"localhost:8085\")\n"
    );
    let r = run_in(dir.path(), &["--addr", ":8085"]);
    assert_eq!(r.code, Some(2), "{}", r.err);
    assert_eq!(
        r.err,
        "crypto-ticker: --addr expects IP:PORT, e.g. 127.0.0.1:8085 (this machine only) or \
         0.0.0.0:8085 (every interface) (got \":8085\")\n"
    );
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "refused before the database");
}

/// The lines of `text` wider than 100 columns.
#[test]
fn redis_and_redis_sentinels_together_exit_2_for_the_server_and_for_keys() {
    let dir = empty_folder();
    let both = ["--redis", "redis://127.0.0.1:1/", "--redis-sentinels", "127.0.0.1:1"];
    let server = [&["--addr", "127.0.0.1:0"][..], &both].concat();
    let keys = [&["keys", "list"][..], &both].concat();
    for args in [server, keys] {
        let r = run_in(dir.path(), &args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.err);
        assert!(r.err.contains("--redis and --redis-sentinels"), "{args:?}: {}", r.err);
    }
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "nothing opened");
}

fn too_wide(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.chars().count() > 100).collect()
}

#[test]
fn help_fits_100_columns_and_shows_the_group_headings() {
    let dir = empty_folder();
    let r = run_in(dir.path(), &["--help"]);
    assert_eq!(r.code, Some(0), "{}", r.err);
    assert_eq!(too_wide(&r.out), Vec::<&str>::new());
    let headings = [
        "SERVER:",
        "API KEYS AND TOKENS:",
        "PRICES AND SYMBOLS:",
        "SUBSCRIPTIONS:",
        "LIMITS AND TIMEOUTS:",
        "TLS:",
        "CLUSTER:",
        "LOGGING:",
    ];
    let found: Vec<&str> = r.out.lines().filter(|l| headings.contains(l)).collect();
    assert_eq!(found, headings, "each heading once, in this order");
    for flag in ["--addr <value>", "--tick <value>", "--tls-cert <value>", "--redis <value>"] {
        assert_eq!(r.out.matches(flag).count(), 1, "{flag}");
    }

    for args in [&["keys", "--help"][..], &["source-check", "--help"]] {
        let r = run_in(dir.path(), args);
        if args[0] == "source-check" && !cfg!(feature = "exchanges") {
            assert_eq!(r.code, Some(2), "{}", r.err);
            continue;
        }
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.err);
        assert_eq!(too_wide(&r.out), Vec::<&str>::new(), "{args:?}");
        assert!(r.out.contains("OPTIONS (the server's"), "{args:?}: {}", r.out);
    }
}
