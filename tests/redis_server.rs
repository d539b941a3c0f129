//! A real `redis-server` for tests: its own process on a free port of 127.0.0.1, its own
//! temporary folder, no persistence (`--save ""`, `--appendonly no`), killed on drop.
//! `kill()` and `restart()` (same port, empty again) let tests take Redis away.
//!
//! Without `redis-server` (Debian package `redis-server`), [`RedisServer::start`] says
//! SKIPPED on the terminal and returns `None` so the test can return early; with
//! `TICKER_REQUIRE_REDIS` set (CI) it fails instead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::missing_tool;

/// How long a starting `redis-server` gets to answer PING (it takes milliseconds).
const START_PATIENCE: Duration = Duration::from_secs(10);

pub struct RedisServer {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Arguments beyond the defaults, kept for restarts (`--replicaof HOST PORT`).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server, or returns `None` (after saying SKIPPED) if there is no
    /// `redis-server`. Panics if one is installed but does not start.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(Vec::new())
    }

    /// A replica of the server on `master_port` (on 127.0.0.1).
    pub fn start_replica_of(master_port: u16) -> Option<RedisServer> {
        RedisServer::start_with(replica_args(master_port))
    }

    fn start_with(extra: Vec<String>) -> Option<RedisServer> {
        let Some(binary) = find_binary("redis-server") else {
            missing_tool(
                "TICKER_REQUIRE_REDIS",
                "redis-server is not installed (apt-get install redis-server)",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = RedisServer { binary, child: None, port: 0, dir, extra };
        // A port free when we look may be taken before redis binds it; redis then exits
        // and we try another.
        let mut errors = Vec::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(child) => {
                    server.child = Some(child);
                    return Some(server);
                }
                Err(e) => errors.push(e),
            }
        }
        panic!("redis-server did not start:\n{}", errors.join("\n"));
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A plain connection with generous timeouts, for a test to look at or poke Redis.
    pub fn conn(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("redis url");
        let conn = client.get_connection_with_timeout(Duration::from_secs(5)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
        conn.set_write_timeout(Some(Duration::from_secs(5))).expect("write timeout");
        conn
    }

    /// SIGKILLs the server (no goodbye to clients) and waits for it to be gone.
    /// Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // std's kill is SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs, then starts a new one on the same port. Without
    /// persistence it starts empty, like a Redis that lost its data.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            match self.spawn() {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                // Someone else may hold the port for a moment; wait for it rather than
                // move, since clients under test know only this port.
                Err(e) if Instant::now() > deadline => panic!("redis-server did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Kills the server if it runs, then starts it again on the same port, empty, as a
    /// replica of the server on `master_port` (a failed master coming back).
    pub fn restart_as_replica_of(&mut self, master_port: u16) {
        self.extra = replica_args(master_port);
        self.restart();
    }

    /// Runs redis-server on `self.port` until it answers PING, or says why not.
    fn spawn(&self) -> Result<Child, String> {
        let log = self.dir.path().join("redis.log");
        let mut child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            // DEBUG SLEEP makes a slow Redis for the tests (from loopback only).
            .args(["--enable-debug-command", "local"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        let deadline = Instant::now() + START_PATIENCE;
        while Instant::now() < deadline {
            if answers_ping(self.port) {
                return Ok(child);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status} on port {}: {}", self.port, tail(&log)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("no PONG on port {} within {START_PATIENCE:?}: {}", self.port, tail(&log)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn replica_args(master_port: u16) -> Vec<String> {
    vec!["--replicaof".into(), "127.0.0.1".into(), master_port.to_string()]
}

/// `name` (`redis-server`, `redis-sentinel`) on the PATH or in Debian's folders.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

pub fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
