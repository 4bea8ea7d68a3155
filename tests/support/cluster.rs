//! Test support: RAII guards around a private Redis Cluster (six `redis-server`s: three
//! primaries, three replicas) and a private Sentinel group (a primary, a replica, three
//! sentinels).
//!
//! Each guard owns its processes and a temporary directory (configs, logs, `redis-cli` output),
//! waits for readiness until a deadline, kills every process on drop, and prints every log when
//! the test is panicking. It never retries to hide flakiness: a topology that does not become
//! healthy in time fails the test with its logs.
//!
//! **No port race.** Each guard binds its servers to a loopback address of its own,
//! `127.a.b.c` derived from the process id and a counter (Linux routes all of `127.0.0.0/8` to
//! the loopback interface), on fixed ports below the ephemeral range. Two guards, in one test
//! binary or in two, never pick the same address, so no port is probed and then lost to
//! someone else. A port found taken anyway fails the test at once, saying so.
//!
//! The binaries are `SCOPED_CACHE_REDIS_SERVER` and `SCOPED_CACHE_REDIS_CLI` if set (paths;
//! `/nonexistent` simulates a machine without one), else `redis-server` and `redis-cli` on
//! `PATH`. When either is missing, `start` says which with a [`Missing`], and
//! [`harness::cluster_test`](super::harness::cluster_test) and
//! [`harness::sentinel_test`](super::harness::sentinel_test) report the test as ignored (or
//! failed, with `SCOPED_CACHE_REQUIRE_SERVERS=1`).
//!
//! Servers are driven with `redis-cli` (as an operator would), so this module needs no Redis
//! client library and compiles into every test binary.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::harness::Missing;

/// How long a topology may take to become healthy after a start or a change.
pub const HEALTHY_DEADLINE: Duration = Duration::from_secs(20);
/// How long a server may take to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// The first node's port; node `i` listens on `BASE_PORT + i`, its cluster bus on 10000 more.
const BASE_PORT: u16 = 21000;
/// Milliseconds without an answer before a node (or a primary, for sentinels) is suspected.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// The binaries the guards run.
#[derive(Clone)]
struct Tools {
    server: PathBuf,
    cli: PathBuf,
}

impl Tools {
    /// Both binaries, or which of them this machine does not have.
    fn find() -> Result<Self, Missing> {
        const INSTALL: &str = "apt-get install -y redis-server redis-tools";
        match (super::redis_server::find_binary(), find_cli()) {
            (Some(server), Some(cli)) => Ok(Self { server, cli }),
            (None, Some(_)) => Err(Missing {
                binary: "redis-server",
                override_var: "SCOPED_CACHE_REDIS_SERVER",
                install: INSTALL,
            }),
            (Some(_), None) => Err(Missing {
                binary: "redis-cli",
                override_var: "SCOPED_CACHE_REDIS_CLI",
                install: INSTALL,
            }),
            (None, None) => Err(Missing {
                binary: "redis-server and redis-cli",
                override_var: "SCOPED_CACHE_REDIS_SERVER, SCOPED_CACHE_REDIS_CLI",
                install: INSTALL,
            }),
        }
    }
}

/// `SCOPED_CACHE_REDIS_CLI`, else `redis-cli` on `PATH`.
pub fn find_cli() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SCOPED_CACHE_REDIS_CLI") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("redis-cli"))
        .find(|candidate| candidate.is_file())
}

/// A loopback address no other guard (in this process or another) uses: `127.a.b.c` from the
/// process id and a per-process counter, never `127.0.0.x`.
fn unique_loopback_host() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = (u64::from(std::process::id()) << 8)
        | u64::from(NEXT.fetch_add(1, Ordering::Relaxed) & 0xff);
    let (a, b, c) = (n / 254 / 254 % 254 + 1, n / 254 % 254 + 1, n % 254 + 1);
    format!("127.{a}.{b}.{c}")
}

/// Fails at once, with a clear message, when `host:port` is taken (it should never be).
fn assert_free(host: &str, port: u16) {
    if let Err(err) = TcpListener::bind((host, port)) {
        panic!("{host}:{port} is taken ({err}); another test run on this address?");
    }
}

/// One `redis-server` process: its port, the child while it runs, how often it was started.
struct Server {
    name: String,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    fn new(name: String, port: u16) -> Self {
        Self {
            name,
            port,
            child: None,
            starts: 0,
        }
    }

    fn log_path(&self, dir: &Path, run: u32) -> PathBuf {
        dir.join(format!("{}-{run}.log", self.name))
    }

    /// Spawns `redis-server` with `args` (a config file path and/or `--option value`s) and
    /// waits until it answers `PING`.
    fn spawn(&mut self, tools: &Tools, dir: &Path, host: &str, args: &[String]) {
        self.starts += 1;
        let log = self.log_path(dir, self.starts);
        let child = Command::new(&tools.server)
            .args(args)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", tools.server.display()));
        self.child = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{} exited with {status} at start", self.name);
            }
            if cli(tools, host, self.port, &["PING"]).is_ok_and(|reply| reply.trim() == "PONG") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} gave no PONG within {READY_DEADLINE:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self, dir: &Path) -> String {
        let mut log = String::new();
        for run in 1..=self.starts {
            let path = self.log_path(dir, run);
            log.push_str(&format!("--- {} ---\n", path.display()));
            log.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
        log
    }
}

/// Runs `redis-cli -h host -p port args…`; its stdout, or why it failed.
fn cli(tools: &Tools, host: &str, port: u16, args: &[&str]) -> Result<String, String> {
    let output = Command::new(&tools.cli)
        .args(["-h", host, "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("run redis-cli: {err}"))?;
    output_text(&output)
}

fn output_text(output: &Output) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    // redis-cli exits 0 on a server error reply, printing it as "ERR …" (or "(error) …").
    let error_reply = stdout.starts_with("ERR ") || stdout.starts_with("(error)");
    if output.status.success() && !error_reply && !stdout.starts_with("Could not connect") {
        Ok(stdout)
    } else {
        Err(format!(
            "{}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    /// Flagged `fail` or `fail?` by the node that was asked.
    pub failing: bool,
    /// The primary a replica follows.
    pub primary_id: Option<String>,
    /// How many slots it serves.
    pub slots: u32,
}

/// A Redis Cluster of three primaries and three replicas on a loopback address of its own,
/// killed on drop.
pub struct RedisCluster {
    tools: Tools,
    dir: tempfile::TempDir,
    host: String,
    nodes: Vec<Server>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster with `redis-cli --cluster create … --cluster-replicas
    /// 1`, and waits until every node reports `cluster_state:ok` and every replica is in sync;
    /// or says which binary there is none of. A cluster that does not come up within
    /// `HEALTHY_DEADLINE` panics with the reason.
    pub fn start() -> Result<Self, Missing> {
        let tools = Tools::find()?;
        let dir = tempfile::Builder::new()
            .prefix("sc-cluster-")
            .tempdir()
            .expect("create a temp dir for the cluster");
        let host = unique_loopback_host();
        let mut cluster = Self {
            tools,
            dir,
            host,
            nodes: (0..6)
                .map(|i| Server::new(format!("node-{}", BASE_PORT + i), BASE_PORT + i))
                .collect(),
        };
        for i in 0..cluster.nodes.len() {
            assert_free(&cluster.host, cluster.nodes[i].port);
            assert_free(&cluster.host, cluster.nodes[i].port + 10_000);
            cluster.spawn(i);
        }
        let mut create = vec!["--cluster", "create"];
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("{}:{}", cluster.host, node.port))
            .collect();
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let created = cluster.redis_cli_to_file("create", &create);
        if let Err(err) = created {
            panic!("redis-cli --cluster create failed: {err}");
        }
        if let Err(err) = cluster.wait_healthy(HEALTHY_DEADLINE) {
            panic!("the new cluster did not become healthy: {err}");
        }
        Ok(cluster)
    }

    /// Seed node URLs (`redis://host:port`), every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://{}:{}", self.host, node.port))
            .collect()
    }

    /// `redis-cluster://host:port,…`, every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("{}:{}", self.host, node.port))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// Runs `redis-cli args…` against the node on `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        cli(&self.tools, &self.host, port, args)
    }

    /// The nodes as the first running node that answers sees them (`CLUSTER NODES`).
    pub fn topology(&self) -> Vec<ClusterNode> {
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            if let Ok(text) = self.cli(node.port, &["CLUSTER", "NODES"]) {
                return parse_cluster_nodes(&text);
            }
        }
        panic!("no running node answers CLUSTER NODES");
    }

    /// The ports of the nodes currently serving slots as primaries (not failing).
    pub fn primaries(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .topology()
            .into_iter()
            .filter(|node| node.primary && !node.failing && node.slots > 0)
            .map(|node| node.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The port of a replica of the primary on `primary_port`, once the node asked has heard of
    /// one (gossip can lag the replica's own sync by a moment; bounded at 10 s).
    pub fn replica_of(&self, primary_port: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let topology = self.topology();
            let primary = topology
                .iter()
                .find(|node| node.port == primary_port)
                .expect("no such node");
            let replica = topology
                .iter()
                .find(|node| node.primary_id.as_deref() == Some(primary.id.as_str()));
            match replica {
                Some(replica) => return replica.port,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                None => panic!("the primary on {primary_port} has no replica"),
            }
        }
    }

    /// The node id of the node on `port`.
    pub fn id_of(&self, port: u16) -> String {
        self.cli(port, &["CLUSTER", "MYID"])
            .unwrap_or_else(|err| panic!("CLUSTER MYID on {port}: {err}"))
            .trim()
            .to_owned()
    }

    /// SIGKILLs the node on `port` (its data is lost; its `nodes.conf` stays).
    pub fn kill(&mut self, port: u16) {
        self.node_mut(port).kill();
    }

    /// Starts the node on `port` again, after [`kill`](Self::kill): same node id and cluster
    /// configuration, no data.
    pub fn restart(&mut self, port: u16) {
        let index = self
            .nodes
            .iter()
            .position(|node| node.port == port)
            .expect("no such node");
        self.nodes[index].kill();
        self.spawn(index);
    }

    /// Freezes (SIGSTOP) the node on `port`: it keeps its sockets open and answers nothing
    /// until [`resume`](Self::resume). Past `NODE_TIMEOUT_MS` the cluster fails it over.
    pub fn pause(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    /// Lets a [`pause`](Self::pause)d node run again (SIGCONT).
    pub fn resume(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    fn signal(&self, port: u16, signal: &str) {
        let node = self
            .nodes
            .iter()
            .find(|node| node.port == port)
            .expect("no such node");
        let pid = node.child.as_ref().expect("the node is not running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts `redis-cli --cluster reshard` moving `slots` slots from the primary on `from` to
    /// the primary on `to`, in the background (its output goes to the guard's directory, shown
    /// on failure). The caller waits for it with [`Child::try_wait`].
    pub fn start_reshard(&self, from: u16, to: u16, slots: u32) -> Child {
        let (from_id, to_id) = (self.id_of(from), self.id_of(to));
        let address = format!("{}:{}", self.host, from);
        let slots = slots.to_string();
        let log =
            std::fs::File::create(self.dir.path().join("reshard.log")).expect("create reshard.log");
        Command::new(&self.tools.cli)
            .args(["--cluster", "reshard", &address])
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &slots, "--cluster-pipeline", "100"])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-cli --cluster reshard")
    }

    /// Waits until every running node reports `cluster_state:ok` with all 16384 slots served
    /// and none suspected, and every running replica is in sync with its primary; returns how
    /// long that took, or the last thing that was not yet so.
    pub fn wait_healthy(&self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            match self.health() {
                Ok(()) => return Ok(started.elapsed()),
                Err(why) if started.elapsed() > limit => {
                    return Err(format!("not healthy within {limit:?}: {why}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn health(&self) -> Result<(), String> {
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            let info = self.cli(node.port, &["CLUSTER", "INFO"])?;
            for wanted in [
                "cluster_state:ok",
                "cluster_slots_ok:16384",
                "cluster_slots_pfail:0",
                "cluster_slots_fail:0",
            ] {
                if !info.lines().any(|line| line.trim() == wanted) {
                    return Err(format!("node {}: no {wanted}", node.port));
                }
            }
            let replication = self.cli(node.port, &["INFO", "replication"])?;
            if replication.contains("role:slave")
                && !replication
                    .lines()
                    .any(|line| line.trim() == "master_link_status:up")
            {
                return Err(format!("replica {}: not in sync", node.port));
            }
        }
        Ok(())
    }

    /// Every node's log, the `redis-cli` outputs, and the topology if a node answers.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for node in &self.nodes {
            logs.push_str(&node.log(self.dir.path()));
        }
        for name in ["create.log", "reshard.log"] {
            let path = self.dir.path().join(name);
            if let Ok(text) = std::fs::read_to_string(&path) {
                logs.push_str(&format!("--- {} ---\n{text}", path.display()));
            }
        }
        logs
    }

    fn node_mut(&mut self, port: u16) -> &mut Server {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("no such node")
    }

    fn spawn(&mut self, index: usize) {
        let port = self.nodes[index].port;
        let node_dir = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&node_dir).expect("create a node directory");
        let args: Vec<String> = [
            ("port", port.to_string()),
            ("bind", self.host.clone()),
            ("bind-source-addr", self.host.clone()),
            // Only 127.0.0.1 counts as local for protected mode; these bind a loopback address
            // of their own and accept nothing from outside the machine anyway.
            ("protected-mode", "no".into()),
            ("cluster-enabled", "yes".into()),
            ("cluster-config-file", "nodes.conf".into()),
            ("cluster-node-timeout", NODE_TIMEOUT_MS.to_string()),
            ("cluster-announce-ip", self.host.clone()),
            // A young replica may take over: the failover tests kill primaries early.
            ("cluster-replica-validity-factor", "0".into()),
            // Replicas stay with their primary: the tests name who follows whom.
            ("cluster-allow-replica-migration", "no".into()),
            // No persistence: a restarted node comes back empty.
            ("save", String::new()),
            ("appendonly", "no".into()),
            ("repl-diskless-sync-delay", "0".into()),
            ("dir", node_dir.display().to_string()),
        ]
        .into_iter()
        .flat_map(|(name, value)| [format!("--{name}"), value])
        .collect();
        let (tools, dir, host) = (
            self.tools.clone(),
            self.dir.path().to_owned(),
            self.host.clone(),
        );
        self.nodes[index].spawn(&tools, &dir, &host, &args);
    }

    /// Runs `redis-cli args…` (no host: the arguments name the nodes), its output kept in the
    /// guard's directory as `name.log`.
    fn redis_cli_to_file(&self, name: &str, args: &[&str]) -> Result<(), String> {
        let output = Command::new(&self.tools.cli)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("run redis-cli: {err}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let _ = std::fs::write(self.dir.path().join(format!("{name}.log")), &text);
        if output.status.success() {
            Ok(())
        } else {
            Err(text)
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if std::thread::panicking() {
            eprintln!("redis cluster logs (test failed):\n{}", self.logs());
        }
    }
}

/// Parses `CLUSTER NODES`: `id ip:port@bus flags primary-id ping pong epoch link slot…`.
fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let address = fields.get(1)?;
            let port = address
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let flags = fields.get(2)?;
            let primary_id = fields
                .get(3)
                .filter(|id| **id != "-")
                .map(|id| id.to_string());
            let slots = fields
                .iter()
                .skip(8)
                .filter(|range| !range.starts_with('['))
                .map(|range| match range.split_once('-') {
                    Some((first, last)) => {
                        last.parse::<u32>().unwrap_or(0) + 1 - first.parse::<u32>().unwrap_or(0)
                    }
                    None => 1,
                })
                .sum();
            Some(ClusterNode {
                id: fields[0].to_owned(),
                port,
                primary: flags.contains("master"),
                failing: flags.contains("fail"),
                primary_id,
                slots,
            })
        })
        .collect()
}

/// The name the Sentinel group monitors its primary under.
pub const SENTINEL_SERVICE: &str = "scoped-cache";

/// A primary, its replica and three sentinels (quorum 2) on a loopback address of their own,
/// killed on drop.
pub struct RedisSentinel {
    tools: Tools,
    dir: tempfile::TempDir,
    host: String,
    /// The two data nodes (the primary first, at start), then the sentinels.
    servers: Vec<Server>,
}

impl RedisSentinel {
    const DATA_PORTS: [u16; 2] = [BASE_PORT + 100, BASE_PORT + 101];
    const SENTINEL_PORTS: [u16; 3] = [BASE_PORT + 110, BASE_PORT + 111, BASE_PORT + 112];

    /// Starts the group and waits until every sentinel knows the primary, the replica and the
    /// other sentinels; or says which binary there is none of. A group that does not come up
    /// within `HEALTHY_DEADLINE` panics with the reason.
    pub fn start() -> Result<Self, Missing> {
        let tools = Tools::find()?;
        let dir = tempfile::Builder::new()
            .prefix("sc-sentinel-")
            .tempdir()
            .expect("create a temp dir for the sentinel group");
        let host = unique_loopback_host();
        let mut group = Self {
            tools,
            dir,
            host,
            servers: Self::DATA_PORTS
                .iter()
                .map(|port| Server::new(format!("data-{port}"), *port))
                .chain(
                    Self::SENTINEL_PORTS
                        .iter()
                        .map(|port| Server::new(format!("sentinel-{port}"), *port)),
                )
                .collect(),
        };
        for server in &group.servers {
            assert_free(&group.host, server.port);
        }
        group.spawn_data(0, None);
        group.spawn_data(1, Some(Self::DATA_PORTS[0]));
        for index in 2..group.servers.len() {
            group.spawn_sentinel(index);
        }
        if let Err(err) = group.wait_until(HEALTHY_DEADLINE, |group| group.health()) {
            panic!("the sentinel group did not become healthy: {err}");
        }
        Ok(group)
    }

    /// `redis+sentinel://host:port,…/service`, every sentinel.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = Self::SENTINEL_PORTS
            .iter()
            .map(|port| format!("{}:{port}", self.host))
            .collect();
        format!(
            "redis+sentinel://{}/{SENTINEL_SERVICE}",
            sentinels.join(",")
        )
    }

    /// Sentinel URLs (`redis://host:port`).
    pub fn sentinels(&self) -> Vec<String> {
        Self::SENTINEL_PORTS
            .iter()
            .map(|port| format!("redis://{}:{port}", self.host))
            .collect()
    }

    /// Runs `redis-cli args…` against the server on `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        cli(&self.tools, &self.host, port, args)
    }

    /// The port of the primary, as the first answering sentinel names it.
    pub fn primary(&self) -> Result<u16, String> {
        let mut last = String::from("no sentinel answered");
        for port in Self::SENTINEL_PORTS {
            match self.cli(
                port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE],
            ) {
                Ok(reply) => {
                    let mut lines = reply.lines();
                    let (Some(host), Some(found)) = (lines.next(), lines.next()) else {
                        last = format!("sentinel {port}: {reply}");
                        continue;
                    };
                    if host.trim() != self.host {
                        return Err(format!("sentinel {port} names host {host}"));
                    }
                    return found
                        .trim()
                        .parse()
                        .map_err(|_| format!("sentinel {port}: {reply}"));
                }
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    /// The data node that is not the primary.
    pub fn replica(&self) -> Result<u16, String> {
        let primary = self.primary()?;
        Ok(Self::DATA_PORTS
            .into_iter()
            .find(|port| *port != primary)
            .unwrap_or(primary))
    }

    /// SIGKILLs the server on `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(server) = self.servers.iter_mut().find(|server| server.port == port) {
            server.kill();
        }
    }

    /// Waits until the sentinels name a primary other than `old` and it accepts writes;
    /// returns how long that took.
    pub fn wait_failover(&self, old: u16, limit: Duration) -> Result<Duration, String> {
        self.wait_until(limit, |group| {
            let primary = group.primary()?;
            if primary == old {
                return Err(format!("the sentinels still name {old}"));
            }
            let role = group.cli(primary, &["ROLE"])?;
            if role.lines().next().map(str::trim) != Some("master") {
                return Err(format!("{primary} is not a primary yet"));
            }
            Ok(())
        })
    }

    fn wait_until(
        &self,
        limit: Duration,
        check: impl Fn(&Self) -> Result<(), String>,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            match check(self) {
                Ok(()) => return Ok(started.elapsed()),
                Err(why) if started.elapsed() > limit => {
                    return Err(format!("not so within {limit:?}: {why}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn health(&self) -> Result<(), String> {
        let replication = self.cli(Self::DATA_PORTS[1], &["INFO", "replication"])?;
        if !replication.contains("master_link_status:up") {
            return Err("the replica is not in sync".into());
        }
        for port in Self::SENTINEL_PORTS {
            let info = self.cli(port, &["SENTINEL", "MASTER", SENTINEL_SERVICE])?;
            let field = |name: &str| {
                let mut lines = info.lines();
                while let Some(line) = lines.next() {
                    if line.trim() == name {
                        return lines.next().map(|value| value.trim().to_owned());
                    }
                }
                None
            };
            if field("num-slaves").as_deref() != Some("1")
                || field("num-other-sentinels").as_deref() != Some("2")
            {
                return Err(format!("sentinel {port} does not know the whole group yet"));
            }
        }
        Ok(())
    }

    fn spawn_data(&mut self, index: usize, replica_of: Option<u16>) {
        let port = self.servers[index].port;
        let mut args: Vec<String> = [
            ("port", port.to_string()),
            ("bind", self.host.clone()),
            ("bind-source-addr", self.host.clone()),
            ("replica-announce-ip", self.host.clone()),
            ("protected-mode", "no".into()),
            ("save", String::new()),
            ("appendonly", "no".into()),
            ("repl-diskless-sync-delay", "0".into()),
            ("dir", self.dir.path().display().to_string()),
            ("dbfilename", format!("dump-{port}.rdb")),
        ]
        .into_iter()
        .flat_map(|(name, value)| [format!("--{name}"), value])
        .collect();
        if let Some(primary) = replica_of {
            args.extend(["--replicaof".into(), self.host.clone(), primary.to_string()]);
        }
        let (tools, dir, host) = (
            self.tools.clone(),
            self.dir.path().to_owned(),
            self.host.clone(),
        );
        self.servers[index].spawn(&tools, &dir, &host, &args);
    }

    fn spawn_sentinel(&mut self, index: usize) {
        let port = self.servers[index].port;
        // Sentinels rewrite their configuration file: each gets its own.
        let config = self.dir.path().join(format!("sentinel-{port}.conf"));
        let text = format!(
            "port {port}\n\
             bind {host}\n\
             bind-source-addr {host}\n\
             protected-mode no\n\
             sentinel announce-ip {host}\n\
             dir {dir}\n\
             sentinel monitor {SENTINEL_SERVICE} {host} {primary} 2\n\
             sentinel down-after-milliseconds {SENTINEL_SERVICE} {NODE_TIMEOUT_MS}\n\
             sentinel failover-timeout {SENTINEL_SERVICE} 10000\n\
             sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
            host = self.host,
            dir = self.dir.path().display(),
            primary = Self::DATA_PORTS[0],
        );
        std::fs::write(&config, text).expect("write a sentinel config");
        let args = vec![config.display().to_string(), "--sentinel".into()];
        let (tools, dir, host) = (
            self.tools.clone(),
            self.dir.path().to_owned(),
            self.host.clone(),
        );
        self.servers[index].spawn(&tools, &dir, &host, &args);
    }

    /// Every server's log.
    pub fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|server| server.log(self.dir.path()))
            .collect()
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.kill();
        }
        if std::thread::panicking() {
            eprintln!("sentinel group logs (test failed):\n{}", self.logs());
        }
    }
}
