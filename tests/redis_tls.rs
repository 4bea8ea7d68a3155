//! `RedisStore` over TLS (`rediss://`, feature `redis-tls`) against a `redis-server` listening
//! on `--tls-port` with a certificate of a throwaway CA this test makes (rcgen): values round
//! trip and verify; a server whose certificate no trusted CA signed is refused.
//!
//! The store trusts the system's roots, which rustls-native-certs reads from `SSL_CERT_FILE`
//! when it is set; so `main` makes the CA, then runs this binary again with `SSL_CERT_FILE`
//! naming it (the process's environment is never changed in place).

mod support;

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use scoped_cache::store::StoreError;
use scoped_cache::{Client, RedisStore};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use support::fixture::{Thumbs, key, ring};
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
    harness::run(vec![harness::server_test(
        "values_round_trip_over_tls_and_an_untrusted_server_is_refused",
        TlsServers::start,
        values_round_trip_over_tls_and_an_untrusted_server_is_refused,
    )])
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
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_params = || {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
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

/// Two TLS-only `redis-server`s: one with the trusted certificate, one with the rogue one;
/// killed on drop, their logs printed when the test panics.
struct TlsServers {
    dir: PathBuf,
    children: Vec<Child>,
}

impl TlsServers {
    fn start() -> Result<Self, Missing> {
        let binary = support::redis_server::find_binary().ok_or(Missing {
            binary: "redis-server",
            override_var: "SCOPED_CACHE_REDIS_SERVER",
            install: "apt-get install -y redis-server redis-tools",
        })?;
        let dir = PathBuf::from(std::env::var_os(CERT_DIR).expect("set by main"));
        let mut servers = Self {
            dir,
            children: Vec::new(),
        };
        for (i, name) in ["server", "rogue"].into_iter().enumerate() {
            let port = PORT + i as u16;
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
                .arg(servers.dir.join(format!("{name}.pem")))
                .arg("--tls-key-file")
                .arg(servers.dir.join(format!("{name}.key")))
                .arg("--tls-ca-cert-file")
                .arg(servers.dir.join("ca.pem"))
                .args(["--tls-auth-clients", "no"])
                .arg("--logfile")
                .arg(servers.dir.join(format!("{name}.log")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            servers.children.push(child);
            servers.wait_listening(port, name);
        }
        Ok(servers)
    }

    fn wait_listening(&mut self, port: u16, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((host(), port)).is_err() {
            if let Some(Ok(Some(status))) = self.children.last_mut().map(Child::try_wait) {
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
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for name in ["server", "rogue"] {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")));
                eprintln!("--- {name}.log ---\n{}", log.unwrap_or_default());
            }
        }
    }
}

async fn values_round_trip_over_tls_and_an_untrusted_server_is_refused(servers: TlsServers) {
    let store = RedisStore::builder(servers.url(0))
        .connect()
        .await
        .expect("a server with a certificate of the trusted CA");
    let client = Client::builder()
        .key_ring(ring())
        .remote(store)
        .build()
        .unwrap();
    let thumbs = client.cache::<Thumbs>().local_capacity(0).build().unwrap();
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
