//! Placeholder until the Redis bench lands.
fn main() {}
