//! The harness: starts the real `crypto-ticker` binary on an ephemeral port with a
//! temporary data folder, and talks to it over real sockets (raw HTTP/1.1 and
//! tungstenite as an independent WebSocket client).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::Role;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// How long the harness waits for something that should happen promptly before it
/// calls the test failed (a hang guard, not a performance assertion).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub struct TestServer {
    child: Child,
    pub addr: SocketAddr,
    pub demo_key: String,
    pub dir: Arc<tempfile::TempDir>,
    log: Arc<Mutex<Vec<String>>>,
}

/// Options for starting a server beyond the defaults.
#[derive(Default, Clone)]
pub struct Opts {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Reuse this data folder (to test restarts).
    pub dir: Option<Arc<tempfile::TempDir>>,
    /// Bind this address instead of an ephemeral port.
    pub addr: Option<String>,
    /// Start the server with this file-descriptor limit, soft and hard, so it cannot
    /// raise it (to make it run out of descriptors).
    pub fd_limit: Option<u64>,
    /// Do not wait for the demo key's log line (a cluster node started before its
    /// Redis logs it only once it joins); `demo_key` is then empty.
    pub no_demo_key: bool,
    /// Start the server with this umask.
    pub umask: Option<u32>,
}

impl Opts {
    pub fn arg(mut self, flag: &str, value: &str) -> Opts {
        self.args.push(flag.into());
        self.args.push(value.into());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Opts {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn fd_limit(mut self, n: u64) -> Opts {
        self.fd_limit = Some(n);
        self
    }
    pub fn umask(mut self, mask: u32) -> Opts {
        self.umask = Some(mask);
        self
    }
}

/// Runs `cmd` with this umask (set in the child between fork and exec).
pub fn with_umask(cmd: &mut Command, mask: u32) -> &mut Command {
    // SAFETY: only umask(2), which is async-signal-safe and cannot fail, runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask as libc::mode_t);
            Ok(())
        })
    }
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(Opts::default())
    }

    pub fn start_with(opts: Opts) -> TestServer {
        let dir =
            opts.dir.clone().unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("tempdir")));
        let db = dir.path().join("data").join("auth.db");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crypto-ticker"));
        cmd.arg("--addr")
            .arg(opts.addr.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--db")
            .arg(&db)
            .arg("--public")
            .arg(repo_path("public"))
            .arg("--seed")
            .arg("42")
            .arg("--workers")
            .arg("2")
            .args(&opts.args)
            .env("TICKER_TOKEN_KEY", "test-key-0123456789abcdef")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if let Some(n) = opts.fd_limit {
            let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
            // SAFETY: only setrlimit(2), which is async-signal-safe, runs in the child.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(mask) = opts.umask {
            with_umask(&mut cmd, mask);
        }
        let mut child = cmd.spawn().expect("spawn crypto-ticker");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os("TICKER_TEST_ECHO").is_some() {
                        eprintln!("[server] {line}");
                    }
                    let _ = tx.send(line.clone());
                    log.lock().unwrap().push(line);
                }
            });
        }
        let (mut addr, mut demo_key) = (None, None);
        let deadline = Instant::now() + PATIENCE;
        while addr.is_none() || (demo_key.is_none() && !opts.no_demo_key) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("server did not start; log:\n{}", log.lock().unwrap().join("\n"))
            });
            if line.contains(" listening ") || line.contains(r#""msg":"listening""#) {
                addr = field(&line, "addr").and_then(|a| a.parse().ok());
            }
            if line.contains("demo API key") {
                demo_key = field(&line, "api_key");
            }
        }
        let demo_key = demo_key.unwrap_or_default();
        TestServer { child, addr: addr.unwrap(), demo_key, dir, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("auth.db")
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line with {needle:?}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal and waits for the exit status.
    pub fn signal_and_wait(mut self, signal: i32) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        // SAFETY: kill(2) with our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(Instant::now() < deadline, "server did not exit after signal {signal}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(mut self) -> Arc<tempfile::TempDir> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.clone()
    }

    /// Sends raw bytes as one request and reads one response.
    pub fn raw(&self, request: &[u8]) -> HttpResponse {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        read_response(&mut s).expect("a response")
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        self.raw(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
    }

    pub fn post(&self, path: &str, body: &str) -> HttpResponse {
        post_to(self.addr, path, body)
    }

    /// A fresh token for the demo key.
    pub fn token(&self) -> String {
        let r = self.post("/auth/token", &format!(r#"{{"api_key":"{}"}}"#, self.demo_key));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_owned()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/ticker", self.addr)
    }

    /// Opens a WebSocket with tungstenite, with the token as a Bearer header.
    pub fn ws(&self, token: &str) -> Ws {
        let mut req = self.ws_url().into_client_request().unwrap();
        req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
        self.ws_request(req).expect("upgrade")
    }

    pub fn ws_request(
        &self,
        req: tungstenite::handshake::client::Request,
    ) -> Result<Ws, tungstenite::Error> {
        let (ws, _) = tungstenite::connect(req)?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(PATIENCE)).unwrap();
        }
        Ok(ws)
    }

    /// Upgrades by hand with a Bearer token and reads nothing: the 101 answer and every
    /// frame stay in the socket. Left alone, it is a subscriber that stalls.
    pub fn raw_subscriber(&self, token: &str) -> TcpStream {
        let mut c = self.connect();
        write!(
            c,
            "GET /ws/ticker HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        c
    }

    /// Scrapes one metric's value from /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=value` in a text log line, or of `key` in a JSON log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        return v[key].as_str().map(str::to_owned);
    }
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    Some(line[start..].split_whitespace().next()?.trim_matches('"').to_owned())
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The `error` of an error body, checking its content type.
    pub fn error(&self) -> String {
        assert_eq!(self.header("Content-Type"), Some("application/json"), "{self:?}");
        self.json()["error"].as_str().expect("error field").to_owned()
    }
}

/// POSTs a JSON body on a fresh connection (usable from another thread).
pub fn post_to(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
    post_with(addr, path, body, &[])
}

/// POSTs a JSON body with extra header lines (`("X-Forwarded-For", "192.0.2.1")`).
pub fn post_with(
    addr: SocketAddr,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    read_response(&mut s).expect("a response")
}

/// The `/auth/token` body for `key`.
pub fn key_body(key: &str) -> String {
    format!(r#"{{"api_key":"{key}"}}"#)
}

/// Runs `crypto-ticker keys ARGS --db DB` and returns its stdout; panics if it fails.
pub fn keys_cli(db: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .arg("keys")
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .expect("run the keys CLI");
    assert!(out.status.success(), "keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Reads one response (head, then `Content-Length` body) from `s`. `None` on EOF first.
pub fn read_response(s: &mut impl Read) -> Option<HttpResponse> {
    read_response_to(s, false)
}

pub fn read_response_to(s: &mut impl Read, head_request: bool) -> Option<HttpResponse> {
    // Byte by byte up to the end of the head, then exactly the body, so a pipelined
    // response behind this one stays in the socket for the next call.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(&head).ok()?;
    let status = resp.code?;
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let len: usize = if head_request || matches!(status, 101 | 204 | 304) {
        0
    } else {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap())
    };
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some(HttpResponse { status, headers, body })
}

/// Reads text messages until one parses as JSON with `"type" == kind`.
pub fn next_of_type(ws: &mut Ws, kind: &str) -> serde_json::Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => {
                let v: serde_json::Value =
                    serde_json::from_str(t.as_str()).expect("server sends JSON");
                if v["type"] == kind {
                    return v;
                }
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads the unread 101 answer from a socket upgraded by hand, then hands the socket to
/// tungstenite as a client.
pub fn into_ws(mut socket: TcpStream) -> Ws {
    let r = read_response(&mut socket).expect("the upgrade answer");
    assert_eq!(r.status, 101);
    WebSocket::from_raw_socket(MaybeTlsStream::Plain(socket), Role::Client, None)
}

/// Reads one server frame (unmasked) by hand: opcode and payload. For tests that must
/// not answer pings, which tungstenite does by itself.
pub fn read_raw_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let (first, payload) = read_raw_frame_whole(s);
    (first & 0x0F, payload)
}

/// [`read_raw_frame`] with the whole first byte (FIN, RSV1 for a compressed message,
/// opcode).
pub fn read_raw_frame_whole(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).expect("frame header");
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    s.read_exact(&mut payload).expect("frame payload");
    (head[0], payload)
}

/// Polls `check` every 20 ms until it holds; returns how long that took, or panics
/// after `guard` (a hang guard, not a performance assertion). The cluster's tests use it.
#[cfg(feature = "cluster")]
pub fn wait_for(what: &str, guard: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < guard, "{what}: not within {guard:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Raises this test process's descriptor limit towards `want`; returns the new soft limit.
pub fn raise_own_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        // Never lower it: the other tests of this process share the limit.
        limit.rlim_cur = limit.rlim_cur.max(want.min(limit.rlim_max));
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Reads until the server closes; returns the close code (None if none was sent).
pub fn read_until_close(ws: &mut Ws) -> Option<u16> {
    // Ticks keep arriving, so a missing close would never hit the read timeout.
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no close frame within {PATIENCE:?}");
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return None;
            }
            Err(tungstenite::Error::Io(e)) => panic!("io error before close: {e}"),
            Err(e) => panic!("error before close: {e}"),
        }
    }
}

/// A test whose tool is not installed: fails when `require_env` is set (CI sets it after
/// installing the tool), else says SKIPPED straight to the terminal (the harness
/// captures a passing test's `eprintln!`, but not `/dev/tty` or the raw stderr handle),
/// so a missing tool never passes silently.
pub fn missing_tool(require_env: &str, message: &str) {
    assert!(std::env::var_os(require_env).is_none(), "{require_env} is set but {message}");
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("SKIPPED {test}: {message}");
    match std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        Ok(mut tty) => {
            let _ = writeln!(tty, "{line}");
        }
        Err(_) => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}
