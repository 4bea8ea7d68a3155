//! An RAII guard around a private `redis-server` on a unix socket.
//!
//! The guard owns the child process and its temporary directory (socket, log). It waits for
//! readiness by polling the socket until a deadline, kills the server on drop, and prints the
//! server's log when the test is panicking. It never retries to hide flakiness: a server that
//! does not come up in time fails the test with its log.
//!
//! The binary is `SCOPED_CACHE_REDIS_SERVER` if set (a path; `/nonexistent` simulates a machine
//! without one), else `redis-server` on `PATH`. When there is none, [`RedisServer::start`] says
//! so with a [`Missing`], and [`harness::redis_test`](super::harness::redis_test) reports the
//! test as ignored (or failed, with `SCOPED_CACHE_REQUIRE_SERVERS=1`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::Missing;

/// How long a server may take to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// A `redis-server` on a unix socket in a temporary directory, killed on drop.
pub struct RedisServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl RedisServer {
    /// Starts a server, or says that there is no binary to start. A binary that does not start
    /// or does not answer within the deadline panics with the server's log.
    pub fn start() -> Result<Self, Missing> {
        let binary = find_binary().ok_or(Missing {
            binary: "redis-server",
            override_var: "SCOPED_CACHE_REDIS_SERVER",
            install: "apt-get install -y redis-server redis-tools",
        })?;
        let dir = tempfile::Builder::new()
            .prefix("sc-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        let mut server = Self {
            binary,
            dir,
            child: None,
            starts: 0,
        };
        server.spawn();
        Ok(server)
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// A `redis+unix://` URL for the socket.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// The server log so far (all runs).
    pub fn log(&self) -> String {
        let mut log = String::new();
        for run in 1..=self.starts {
            let path = self.log_path(run);
            log.push_str(&format!("--- {} ---\n", path.display()));
            log.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
        log
    }

    /// Kills the server (SIGKILL) and waits for it to exit. The socket file may stay behind.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same socket (after [`kill`](Self::kill)); data is lost.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn log_path(&self, run: u32) -> PathBuf {
        self.dir.path().join(format!("redis-{run}.log"))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let socket = self.socket();
        let log = self.log_path(self.starts);
        let child = Command::new(&self.binary)
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", self.binary.display()));
        self.child = Some(child);
        if let Err(why) = wait_ready(&socket, self.child.as_mut().expect("just spawned")) {
            panic!("redis-server did not become ready: {why}\n{}", self.log());
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("redis-server log (test failed):\n{}", self.log());
        }
    }
}

/// `SCOPED_CACHE_REDIS_SERVER`, else `redis-server` on `PATH`.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SCOPED_CACHE_REDIS_SERVER") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

/// Polls `socket` with `PING` until it answers `+PONG`, the child exits, or the deadline passes.
fn wait_ready(socket: &Path, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited with {status}"));
        }
        if ping(socket).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no PONG on {} within {READY_DEADLINE:?}",
                socket.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ping(socket: &Path) -> std::io::Result<()> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0; 7];
    stream.read_exact(&mut reply)?;
    if &reply == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(std::io::Error::other("not PONG"))
    }
}
