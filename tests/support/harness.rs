//! The harness of the test binaries that need a server (`harness = false` in `Cargo.toml`).
//!
//! libtest cannot decide at run time that a test is ignored, so a server test on a machine
//! without the server would print `ok` and count as passed, having run nothing. These binaries
//! run their tests with libtest-mimic instead, which can: a test whose server binary is missing
//! is reported as `ignored (redis-server not found; …)` and counted in the summary's `ignored`,
//! never in `passed`. With `SCOPED_CACHE_REQUIRE_SERVERS=1` (CI) it fails instead.
//!
//! Each test stays a plain function, named in the binary's `main` with [`trials!`]; the command
//! line works as with libtest (a name filter, `--exact`, `--skip`, `--list`, `--test-threads`).
//! libtest-mimic does not capture output: what a test prints shows as it runs.
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     harness::run(trials![redis_test(round_trip), tokio_test(no_server_needed), test(sync)])
//! }
//!
//! async fn round_trip(server: RedisServer) { /* … */ }
//! ```

use std::fmt;
use std::future::Future;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Trial};

use super::RedisServer;
use super::cluster::{RedisCluster, RedisSentinel};

/// Set to `1` to make a missing server binary fail its tests instead of ignoring them.
pub const REQUIRE_SERVERS: &str = "SCOPED_CACHE_REQUIRE_SERVERS";

/// A server binary that this machine does not have.
#[derive(Debug, Clone, Copy)]
pub struct Missing {
    /// The binary's name, as looked up on `PATH`.
    pub binary: &'static str,
    /// The variable that names the binary's path instead of `PATH`.
    pub override_var: &'static str,
    /// The command that installs it.
    pub install: &'static str,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            binary,
            override_var,
            install,
        } = self;
        write!(f, "{binary} not found ({override_var} or PATH): {install}")
    }
}

/// Whether a missing server binary is a failure (`SCOPED_CACHE_REQUIRE_SERVERS=1`).
pub fn servers_required() -> bool {
    std::env::var(REQUIRE_SERVERS).as_deref() == Ok("1")
}

/// Runs `trials` as libtest would, with this process's command line; the binary's exit code.
pub fn run(trials: Vec<Trial>) -> ExitCode {
    libtest_mimic::run(&Arguments::from_args(), trials).exit_code()
}

/// A synchronous test, run outside any runtime (like `#[test]`).
pub fn test(name: &str, body: fn()) -> Trial {
    Trial::test(name, move || {
        body();
        Ok(())
    })
}

/// An async test on its own multi-threaded runtime with two workers (like
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`).
pub fn tokio_test<F: Future<Output = ()> + 'static>(name: &str, body: fn() -> F) -> Trial {
    Trial::test(name, move || {
        runtime().block_on(body());
        Ok(())
    })
}

/// An async test given a fresh [`RedisServer`] of its own, which it may kill and restart; ignored
/// when there is no `redis-server` (failed with `SCOPED_CACHE_REQUIRE_SERVERS=1`).
pub fn redis_test<F: Future<Output = ()> + 'static>(
    name: &str,
    body: fn(RedisServer) -> F,
) -> Trial {
    server_test(name, RedisServer::start, body)
}

/// An async test given a fresh six-node [`RedisCluster`] of its own; ignored when there is no
/// `redis-server` or no `redis-cli` (failed with `SCOPED_CACHE_REQUIRE_SERVERS=1`).
pub fn cluster_test<F: Future<Output = ()> + 'static>(
    name: &str,
    body: fn(RedisCluster) -> F,
) -> Trial {
    server_test(name, RedisCluster::start, body)
}

/// An async test given a fresh Sentinel group ([`RedisSentinel`]) of its own; ignored when there
/// is no `redis-server` or no `redis-cli` (failed with `SCOPED_CACHE_REQUIRE_SERVERS=1`).
pub fn sentinel_test<F: Future<Output = ()> + 'static>(
    name: &str,
    body: fn(RedisSentinel) -> F,
) -> Trial {
    server_test(name, RedisSentinel::start, body)
}

/// An async test given what `start` starts (a server guard), on the runtime of [`tokio_test`].
/// When `start` finds no binary, the test is ignored with the reason, or fails when servers are
/// required. The guard is moved into the test's future, so a failing test drops it while
/// panicking (which is when a guard prints its server's log).
pub fn server_test<S, F>(name: &str, start: fn() -> Result<S, Missing>, body: fn(S) -> F) -> Trial
where
    S: 'static,
    F: Future<Output = ()> + 'static,
{
    Trial::ignorable_test(name, move || match start() {
        Ok(server) => {
            runtime().block_on(body(server));
            Ok(Completion::Completed)
        }
        Err(missing) if servers_required() => {
            Err(format!("{missing} ({REQUIRE_SERVERS}=1)").into())
        }
        Err(missing) => Ok(Completion::ignored_with(missing)),
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `trials![redis_test(a), test(b)]`: each test function as a trial of the given kind
/// ([`test`], [`tokio_test`], [`redis_test`], [`cluster_test`], [`sentinel_test`]), named
/// after the function.
#[allow(unused_macros)]
macro_rules! trials {
    ($($kind:ident($test:ident)),* $(,)?) => {
        vec![$($crate::support::harness::$kind(stringify!($test), $test)),*]
    };
}
#[allow(unused_imports)]
pub(crate) use trials;
