//! Test support shared by the test binaries (`mod support;` in each), one concern per file:
//!
//! - [`cluster`]: the RAII guards around a private Redis Cluster and a private Sentinel group;
//! - [`fixture`]: the shared namespaces, keys, key ring, client and [`fixture::Fixture`];
//! - [`harness`]: the libtest-mimic harness of the binaries that need a server, which reports a
//!   test as ignored when its server binary is missing (`harness = false` in `Cargo.toml`);
//! - [`redis_server`]: the RAII guard around a private `redis-server`;
//! - [`rng`]: the seeded generator of the storms.

#![allow(dead_code)] // each test binary uses a different part of it

pub mod cluster;
pub mod fixture;
pub mod harness;
pub mod redis_server;
pub mod rng;

#[allow(unused_imports)] // each test binary uses a different part of it
pub use {redis_server::RedisServer, rng::Rng};
