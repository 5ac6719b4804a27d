//! One relay per data directory: real `cairn relay` processes on one `--data` directory, on
//! 127.0.0.1 ports the kernel picks.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The bound on every wait: wide, since these run on a loaded machine; nothing is timed.
const WAIT: Duration = Duration::from_secs(30);

/// Starts `cairn relay` on a port the kernel picks, storing in `data`; its stderr lines arrive
/// on the returned channel (the relay logs at `info`, so its "listening" line is there).
fn start_relay(data: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["relay", "--listen", "127.0.0.1:0", "--insecure-no-auth", "--durability", "normal", "--data"])
        .arg(data)
        .env("CAIRN_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The port from the relay's "relay listening (ws://127.0.0.1:PORT, ...)" line.
fn listening_port(lines: &mpsc::Receiver<String>) -> u16 {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
            let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
            return port.parse().unwrap_or_else(|_| panic!("a port in {line:?}"));
        }
        seen.push(line);
    }
    panic!("the relay never said where it listens; its stderr: {seen:#?}");
}

/// Waits (bounded) for `child` to exit on its own.
fn exit_of(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the second relay is still running after {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

fn lock_pid(data: &Path) -> u32 {
    std::fs::read_to_string(data.join("relay.lock")).unwrap().trim().parse().unwrap()
}

#[test]
fn a_second_relay_on_one_data_directory_refuses_and_a_killed_ones_lock_blocks_no_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay-data");

    // Step 1: the first relay starts, serves, and its lock file names it.
    let (mut first, first_log) = start_relay(&data);
    let port = listening_port(&first_log);
    assert!(healthy(port), "the first relay serves");
    assert_eq!(lock_pid(&data), first.id(), "the lock file names the relay holding it");

    // Step 2: a second relay on the same directory (on a port of its own) refuses to start, and
    // says which directory and which process hold it.
    let (mut second, second_log) = start_relay(&data);
    let status = exit_of(&mut second);
    assert!(!status.success(), "the second relay must not run: {status}");
    let said: Vec<String> = second_log.try_iter().collect();
    let said = said.join("\n");
    assert!(said.contains(&data.display().to_string()), "names the directory: {said}");
    assert!(said.contains(&format!("pid {}", first.id())), "names the holder's pid: {said}");
    assert!(!said.contains("listening"), "it never listened: {said}");
    assert!(healthy(port), "the first relay still serves");
    assert_eq!(lock_pid(&data), first.id(), "the refused relay left the lock file alone");

    // Step 3: the first relay is SIGKILLed: its lock file stays behind, with its pid, but the
    // kernel released the lock with the process, so a new relay starts on the directory.
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(lock_pid(&data), first.id(), "a stale lock file is left behind");
    let (mut third, third_log) = start_relay(&data);
    let port = listening_port(&third_log);
    assert!(healthy(port), "the restarted relay serves");
    assert_eq!(lock_pid(&data), third.id(), "the lock file now names the new holder");
    third.kill().unwrap();
    third.wait().unwrap();
}
