//! Unit tests only: a throwaway `redis-server` on a free port, killed on drop. A minimal
//! copy of `tests/redis_server.rs` (the integration binary's fixture, which can also
//! kill and restart), because unit tests cannot reach `tests/`.
//!
//! Without `redis-server` the tests that need it print `SKIPPED: redis-server not found`
//! on the terminal and pass; with `TICKER_REQUIRE_REDIS=1` they fail instead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BINARY: &str = "/usr/bin/redis-server";

pub(crate) struct TestRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TestRedis {
    pub(crate) fn start() -> Option<TestRedis> {
        if !Path::new(BINARY).is_file() {
            assert!(
                std::env::var("TICKER_REQUIRE_REDIS").as_deref() != Ok("1"),
                "TICKER_REQUIRE_REDIS=1 but there is no {BINARY}"
            );
            say_skipped();
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // The port is free when we look; another process may take it before redis binds
        // it, in which case redis exits and we try another.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).ok()?.port();
            let mut child = Command::new(BINARY)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            for _ in 0..500 {
                if answers_ping(port) {
                    return Some(TestRedis { child, port, _dir: dir });
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub(crate) fn conn(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("url");
        let conn = client.get_connection_with_timeout(Duration::from_secs(2)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        conn
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Straight to the terminal: the test harness captures `eprintln!` of a passing test,
/// but not writes to `/dev/tty` or to the `io::stderr()` handle (the fallback when there
/// is no terminal, as in CI).
fn say_skipped() {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("SKIPPED: redis-server not found ({test}; apt-get install redis-server)");
    match std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        Ok(mut tty) => {
            let _ = writeln!(tty, "{line}");
        }
        Err(_) => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}
