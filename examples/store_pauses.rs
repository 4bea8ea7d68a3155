//! store_pauses: the longest single write into a `MemoryStore` as it grows to millions of
//! entries, then as every key is overwritten.
//!
//! A write holds locks of the store's map while it runs; a write that takes long (a map shard
//! growing, stale queue records dropped all at once) stalls every task that touches the same
//! shard, and on a runtime with two workers that is soon all of them. This writes `KEYS`
//! storm-sized entries (a 48-byte key, a 300–499-byte value) `PASSES` times over, one at a time
//! on one thread, and prints every write that took over 5 ms and the longest. Each pass gives a
//! key a value of another size: an entry replaced by one of the same weight is updated in place,
//! but one of another weight is queued again and leaves a stale record, the worst case.
//!
//! ```text
//! cargo run --release --example store_pauses -- 4000000 3
//! ```

use bytes::Bytes;
use scoped_cache::MemoryStore;
use scoped_cache::store::RemoteStore;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: usize = args.next().map_or(Ok(4_000_000), |n| n.parse())?;
    let passes: usize = args.next().map_or(Ok(3), |n| n.parse())?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        let store = MemoryStore::new(4 << 30);
        let started = Instant::now();
        let mut longest_ms = 0f64;
        for pass in 0..passes {
            for i in 0..keys {
                let key = format!("scoped-cache/thumbnails/v1/tenant/{i:016}/dev");
                let value = Bytes::from(vec![(i % 251) as u8; 300 + (i + pass) % 200]);
                let write = Instant::now();
                store.set(key.as_bytes(), value, None).await?;
                let took_ms = write.elapsed().as_secs_f64() * 1e3;
                longest_ms = longest_ms.max(took_ms);
                if took_ms > 5.0 {
                    println!(
                        "pass {pass}, write {i}: {took_ms:.1} ms ({:.1} s in)",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
        println!(
            "{} writes of {keys} keys in {:.1} s; the longest took {longest_ms:.1} ms",
            keys * passes,
            started.elapsed().as_secs_f64()
        );
        Ok::<_, scoped_cache::store::StoreError>(())
    })?;
    Ok(())
}
