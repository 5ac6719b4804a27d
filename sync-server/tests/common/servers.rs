//! A real PostgreSQL and a real `nats-server` (Debian's packages), each started by the test as
//! an unprivileged process on 127.0.0.1 in a temporary directory, and stopped on drop. A missing
//! binary fails the test with what to install; nothing is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections.
const READY: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("its address").port()
}

fn is_root() -> bool {
    // `id -u` rather than libc: the tests take no unsafe code.
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A command run as `nobody` when the tests run as root (PostgreSQL refuses to run as root,
/// and neither server needs privileges), as the current user otherwise; killed if the test
/// process dies without dropping it (`--pdeathsig`).
fn unprivileged(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg("--pdeathsig=KILL");
    if is_root() {
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    }
    c.arg("--").arg(program);
    c
}

/// A temporary directory the unprivileged user owns.
fn owned_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("a temporary directory");
    if is_root() {
        let ok = Command::new("chown").args(["-R", "nobody:nogroup"]).arg(dir.path()).status();
        assert!(ok.is_ok_and(|s| s.success()), "cannot chown {} to nobody", dir.path().display());
    }
    dir
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status();
}

/// Stops `child`: `sig` first, then SIGKILL if it has not exited within ten seconds.
fn stop(child: &mut Child, sig: &str) {
    signal(child, sig);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + READY;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} exited ({status}) before accepting connections:\n{log}");
        }
        assert!(Instant::now() < deadline, "{what} did not accept connections on 127.0.0.1:{port} within {READY:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The newest PostgreSQL server binaries Debian installed.
fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/<version>/bin: \
             install Debian's postgresql package (`apt-get install -y postgresql`; .ci/run does)"
        ),
    }
}

/// A PostgreSQL server of the test's own.
pub struct Postgres {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// initdb in a temporary directory, then the server on a free loopback port (fsync off: a
    /// test's database need not survive a power loss).
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = owned_dir("cairn-pg-");
        let data = dir.path().join("data");
        let out = unprivileged(&bin.join("initdb"))
            .args(["-U", "cairn", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = dir.path().join("postgres.log");
        let log_file = std::fs::File::create(&log).expect("create the server log");
        let mut child = unprivileged(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=16MB"])
            .args(["-c", "max_connections=100"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start postgres");
        wait_for_port(port, &mut child, "postgres", &log);
        // Listening is not yet accepting queries: ask until it answers.
        let deadline = Instant::now() + READY;
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "cairn", "-d", "postgres"])
                .stdout(Stdio::null())
                .status();
            if ready.is_ok_and(|s| s.success()) {
                break;
            }
            assert!(Instant::now() < deadline, "postgres did not become ready within {READY:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Postgres { child, port, dir }
    }

    /// The URL relay nodes connect with.
    pub fn url(&self) -> String {
        format!("postgres://cairn@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the postmaster taking its backends with it.
        stop(&mut self.child, "QUIT");
    }
}

/// A `nats-server` of the test's own, which the test may restart on the same port.
pub struct Nats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn nats_bin() -> PathBuf {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"].iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
        panic!("nats-server not found: install Debian's nats-server package (`apt-get install -y nats-server`; .ci/run does)")
    })
}

impl Nats {
    /// The server on a free loopback port.
    pub fn start() -> Nats {
        let mut nats = Nats { child: None, port: free_port(), dir: owned_dir("cairn-nats-") };
        nats.spawn();
        nats
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("nats.log");
        let log_file = std::fs::File::create(&log).expect("create the server log");
        let mut child = unprivileged(&nats_bin())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start nats-server");
        wait_for_port(self.port, &mut child, "nats-server", &log);
        self.child = Some(child);
    }

    /// The URL relay nodes connect with.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (everything in flight on it is lost).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "KILL");
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}
