//! Placeholder until the hot-path benchmarks land (benches/hot_path.rs).
fn main() {}
