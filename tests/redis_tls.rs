//! `RedisStore` over TLS (`rediss://`, feature `redis-tls`) against a `redis-server` listening
//! on `--tls-port` with a certificate of a throwaway CA this test makes (rcgen): values round
//! trip and verify; a server whose certificate no trusted CA signed is refused. With
//! `redis-cluster` too, the same for `RedisClusterStore` (`rediss-cluster://`) on a three-node
//! cluster whose nodes speak only TLS, to clients and to each other.
//!
//! The store trusts the system's roots, which rustls-native-certs reads from `SSL_CERT_FILE`
//! when it is set; so `main` makes the CA, then runs this binary again with `SSL_CERT_FILE`
//! naming it (the process's environment is never changed in place).

mod support;

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use scoped_cache::store::StoreError;
use scoped_cache::{Cache, RedisStore};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fixture::{Thumbs, key, remote_only_cache};
use support::harness::{self, Missing};

/// Set in the child run: the directory with the CA and the servers' certificates.
const CERT_DIR: &str = "SCOPED_CACHE_TEST_TLS_DIR";
const PORT: u16 = 22_000;

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os(CERT_DIR) else {
        let dir = tempfile::Builder::new()
            .prefix("sc-tls-")
            .tempdir()
            .expect("a temp dir for the certificates");
        make_certificates(dir.path());
        let status = Command::new(std::env::current_exe().expect("this test binary"))
            .args(std::env::args_os().skip(1))
            .env(CERT_DIR, dir.path())
            .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
            .status()
            .expect("run this test binary with the throwaway CA trusted");
        return if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    };
    let _ = dir;
    harness::run(vec![
        harness::server_test(
            "values_round_trip_over_tls_and_an_untrusted_server_is_refused",
            TlsServers::start,
            values_round_trip_over_tls_and_an_untrusted_server_is_refused,
        ),
        #[cfg(feature = "redis-cluster")]
        harness::server_test(
            "a_cluster_over_tls_serves_every_node_and_an_untrusted_seed_is_refused",
            TlsServers::start_cluster,
            a_cluster_over_tls_serves_every_node_and_an_untrusted_seed_is_refused,
        ),
    ])
}

/// The host every server of this run listens on: `127.a.b.1` from the id of the process that
/// made the certificates (the parent, in the child run), so that two runs never share a port.
fn host() -> Ipv4Addr {
    let pid = match std::env::var_os(CERT_DIR) {
        Some(_) => std::os::unix::process::parent_id(),
        None => std::process::id(),
    };
    Ipv4Addr::new(127, (pid >> 8 & 0xff) as u8 | 1, (pid & 0xff) as u8, 1)
}

/// `ca.pem` (trusted), `server.pem`/`server.key` signed by it, and `rogue.pem`/`rogue.key`,
/// self-signed, for the same names.
fn make_certificates(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Names of their own: OpenSSL (redis-cli) takes a certificate whose issuer name equals its
    // subject name for self-signed, and rcgen gives every certificate the same default name.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "scoped-cache test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_params = || {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "scoped-cache test server");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(host())));
        params
    };
    let server_key = KeyPair::generate().unwrap();
    let server = server_params().signed_by(&server_key, &ca).unwrap();
    let rogue_key = KeyPair::generate().unwrap();
    let rogue = server_params().self_signed(&rogue_key).unwrap();
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
        ("rogue.pem", rogue.pem()),
        ("rogue.key", rogue_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
}

/// TLS-only `redis-server`s: `server` with the trusted certificate, `rogue` with the
/// self-signed one, and (for the cluster test) `node-P` cluster nodes with the trusted one;
/// killed on drop, their logs printed when the test panics.
struct TlsServers {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl TlsServers {
    /// `server` on `PORT` and `rogue` on `PORT + 1`.
    fn start() -> Result<Self, Missing> {
        let mut servers = Self::new();
        servers.spawn("server", "server", PORT, &[])?;
        servers.spawn("rogue", "rogue", PORT + 1, &[])?;
        Ok(servers)
    }

    fn new() -> Self {
        Self {
            dir: PathBuf::from(std::env::var_os(CERT_DIR).expect("set by main")),
            children: Vec::new(),
        }
    }

    /// Starts a TLS-only server on `port` with the certificate `cert` (`server` or `rogue`)
    /// and waits until it listens.
    fn spawn(&mut self, name: &str, cert: &str, port: u16, extra: &[&str]) -> Result<(), Missing> {
        let binary = support::redis_server::find_binary().ok_or(Missing {
            binary: "redis-server",
            override_var: "SCOPED_CACHE_REDIS_SERVER",
            install: "apt-get install -y redis-server redis-tools",
        })?;
        let child = Command::new(&binary)
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args([
                "--bind",
                &host().to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(self.dir.join(format!("{cert}.pem")))
            .arg("--tls-key-file")
            .arg(self.dir.join(format!("{cert}.key")))
            .arg("--tls-ca-cert-file")
            .arg(self.dir.join("ca.pem"))
            .args(["--tls-auth-clients", "no"])
            .args(extra)
            .arg("--logfile")
            .arg(self.dir.join(format!("{name}.log")))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.children.push((name.to_owned(), child));
        self.wait_listening(port, name);
        Ok(())
    }

    fn wait_listening(&mut self, port: u16, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((host(), port)).is_err() {
            if let Some(Ok(Some(status))) = self.children.last_mut().map(|(_, c)| c.try_wait()) {
                panic!("{name} exited with {status} (no TLS support in this redis-server?)");
            }
            assert!(Instant::now() < deadline, "{name} is not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, which: usize) -> String {
        format!("rediss://{}:{}", host(), PORT + which as u16)
    }
}

impl Drop for TlsServers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for (name, _) in &self.children {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")));
                eprintln!("--- {name}.log ---\n{}", log.unwrap_or_default());
            }
        }
    }
}

/// The first of the TLS cluster's three nodes (cluster bus ports 10,000 above), then its rogue.
#[cfg(feature = "redis-cluster")]
const CLUSTER_PORT: u16 = PORT + 10;
#[cfg(feature = "redis-cluster")]
const CLUSTER_NODES: u16 = 3;

#[cfg(feature = "redis-cluster")]
impl TlsServers {
    /// Three TLS-only cluster primaries, the cluster bus over TLS too, created with
    /// `redis-cli --tls --cluster create` and ready when each reports `cluster_state:ok`; and a
    /// rogue server after them. (No replicas: TLS is what this checks; failover is
    /// `tests/redis_failover.rs`'s.)
    fn start_cluster() -> Result<Self, Missing> {
        let mut servers = Self::new();
        for port in (0..CLUSTER_NODES).map(|i| CLUSTER_PORT + i) {
            let config_file = format!("nodes-{port}.conf");
            let host = host().to_string();
            let cluster = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &config_file,
                "--tls-cluster",
                "yes",
                // The nodes bind only `host()`: they must meet and name each other by it.
                "--cluster-announce-ip",
                &host,
                "--bind-source-addr",
                &host,
            ];
            servers.spawn(&format!("node-{port}"), "server", port, &cluster)?;
        }
        servers.spawn("rogue", "rogue", CLUSTER_PORT + CLUSTER_NODES, &[])?;
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(cluster_nodes());
        create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        servers.cli(&create)?;
        let deadline = Instant::now() + support::cluster::HEALTHY_DEADLINE;
        for port in (0..CLUSTER_NODES).map(|i| CLUSTER_PORT + i) {
            let at = [
                "-h".to_owned(),
                host().to_string(),
                "-p".to_owned(),
                port.to_string(),
            ];
            let info = [&at[..], &["CLUSTER".to_owned(), "INFO".to_owned()]].concat();
            while !servers
                .cli(&info)?
                .lines()
                .any(|l| l.trim() == "cluster_state:ok")
            {
                assert!(
                    Instant::now() < deadline,
                    "node {port}: no cluster_state:ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(servers)
    }

    /// `redis-cli --tls --cacert ca.pem args…`, its output; panics when it fails or takes
    /// longer than 20 s (`--cluster create` waits for ever for nodes that cannot meet).
    fn cli(&self, args: &[String]) -> Result<String, Missing> {
        let cli = support::cluster::find_cli().ok_or(Missing {
            binary: "redis-cli",
            override_var: "SCOPED_CACHE_REDIS_CLI",
            install: "apt-get install -y redis-server redis-tools",
        })?;
        let mut child = Command::new(cli)
            .arg("--tls")
            .arg("--cacert")
            .arg(self.dir.join("ca.pem"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run redis-cli");
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("redis-cli's status").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("redis-cli's output");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let errors = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "redis-cli {args:?}: {text}{errors}"
        );
        Ok(text)
    }
}

/// `host:port` of each TLS cluster node.
#[cfg(feature = "redis-cluster")]
fn cluster_nodes() -> Vec<String> {
    (0..CLUSTER_NODES)
        .map(|i| format!("{}:{}", host(), CLUSTER_PORT + i))
        .collect()
}

/// `RedisClusterStore` over TLS: values written across the slots of every node round trip and
/// verify, and a seed whose certificate no trusted CA signed is refused.
#[cfg(feature = "redis-cluster")]
async fn a_cluster_over_tls_serves_every_node_and_an_untrusted_seed_is_refused(
    servers: TlsServers,
) {
    use scoped_cache::store::RedisClusterStore;
    let url = format!("rediss-cluster://{}", cluster_nodes().join(","));
    let store = RedisClusterStore::builder_from_url(&url)
        .connect()
        .await
        .expect("cluster nodes with certificates of the trusted CA");
    let thumbs: Cache<Thumbs> = remote_only_cache(Arc::new(store));
    let keys: Vec<_> = (0..60).map(|device| key(1, device, 0)).collect();
    for (n, key) in keys.iter().enumerate() {
        let value = Bytes::from(format!("over tls, node of slot {n}"));
        thumbs.insert(key, value).await.unwrap();
    }
    for (n, found) in thumbs.get_many(&keys).await.into_iter().enumerate() {
        assert_eq!(
            found,
            Some(Bytes::from(format!("over tls, node of slot {n}")))
        );
    }
    let stats = thumbs.stats();
    assert_eq!((stats.remote_errors, stats.violations.total()), (0, 0));
    // Every node holds some of the values: each was reached over TLS.
    for port in (0..CLUSTER_NODES).map(|i| CLUSTER_PORT + i) {
        let at = ["-h", &host().to_string(), "-p", &port.to_string(), "DBSIZE"].map(String::from);
        let keys: u64 = servers.cli(&at).unwrap().trim().parse().unwrap();
        assert!(keys > 0, "node {port} holds none of the values");
    }

    let rogue = format!("rediss://{}:{}", host(), CLUSTER_PORT + CLUSTER_NODES);
    let refused = RedisClusterStore::builder([rogue])
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    // Refused for its certificate, not for being no cluster node (it is none either).
    assert!(
        matches!(&refused, Err(StoreError::Unavailable(why)) if why.contains("certificate")),
        "a certificate no trusted CA signed: {:?}",
        refused.err()
    );
}

async fn values_round_trip_over_tls_and_an_untrusted_server_is_refused(servers: TlsServers) {
    let store = RedisStore::builder(servers.url(0))
        .connect()
        .await
        .expect("a server with a certificate of the trusted CA");
    let thumbs: Cache<Thumbs> = remote_only_cache(Arc::new(store));
    for item in 0..20 {
        thumbs
            .insert(&key(1, 2, item), Bytes::from(format!("over tls {item}")))
            .await
            .unwrap();
    }
    let keys: Vec<_> = (0..20).map(|item| key(1, 2, item)).collect();
    for (item, found) in thumbs.get_many(&keys).await.into_iter().enumerate() {
        assert_eq!(found, Some(Bytes::from(format!("over tls {item}"))));
    }
    assert_eq!(thumbs.get(&key(2, 1, 0)).await, None);
    let stats = thumbs.stats();
    assert_eq!((stats.remote_errors, stats.violations.total()), (0, 0));

    let refused = RedisStore::builder(servers.url(1))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "a certificate no trusted CA signed: {refused:?}"
    );
}
