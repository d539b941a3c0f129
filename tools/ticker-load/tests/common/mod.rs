//! What the load tool's integration tests share.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with a hard deadline: the tool must stop by itself.
pub fn ticker_load(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticker-load"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("ticker-load did not stop by itself");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
