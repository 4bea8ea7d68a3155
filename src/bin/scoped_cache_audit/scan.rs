//! Reading the keyspace: which servers hold it, `SCAN` over each at a bounded rate, and one
//! pipeline of `GET`s per batch of keys. The only part of the audit that reads from Redis
//! (deletes go through the library's store, with compare-and-delete).

use crate::flags::Rate;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::time::{Duration, Instant};

/// One server to scan: a standalone server, or one primary of a cluster.
pub struct Target {
    /// `host:port` (or the socket path), never credentials.
    pub name: String,
    client: redis::Client,
    /// One server holds every slot: a batch is read with one `MGET`. A cluster node's batch
    /// spans many slots, which `MGET` refuses (`CROSSSLOT`): a pipeline of `GET`s instead.
    whole: bool,
}

/// The servers whose keys make up the store at `url`: the server itself, or every primary of a
/// `redis-cluster://` cluster.
///
/// # Errors
///
/// A message (without credentials) when the URL is invalid or the cluster cannot be asked.
pub async fn targets(url: &str, timeout: Duration) -> Result<Vec<Target>, String> {
    let Some((tls, userinfo, seeds)) = cluster_url(url)? else {
        let client = redis::Client::open(url).map_err(|error| format!("redis url: {error}"))?;
        return Ok(vec![Target {
            name: address(&client),
            client,
            whole: true,
        }]);
    };
    let scheme = if tls { "rediss" } else { "redis" };
    let node = |host: &str| {
        redis::Client::open(format!("{scheme}://{userinfo}{host}"))
            .map_err(|error| format!("redis cluster url: {error}"))
    };
    let mut last_error = String::from("no seed node");
    for seed in &seeds {
        let client = node(seed)?;
        let nodes = async {
            let mut connection = connect(&client, timeout).await?;
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async::<String>(&mut connection)
                .await
                .map_err(|error| format!("CLUSTER NODES on {seed}: {error}"))
        };
        match nodes.await {
            Ok(nodes) => {
                return primaries(&nodes)
                    .into_iter()
                    .map(|host| {
                        Ok(Target {
                            client: node(&host)?,
                            name: host,
                            whole: false,
                        })
                    })
                    .collect();
            }
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// `(tls, "user:pass@" or "", seed host:port list)` of a `redis-cluster://` URL; `None` for any
/// other URL.
fn cluster_url(url: &str) -> Result<Option<(bool, String, Vec<String>)>, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("redis-cluster://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("rediss-cluster://") {
        (true, rest)
    } else {
        return Ok(None);
    };
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), rest),
    };
    let seeds: Vec<String> = hosts
        .trim_end_matches('/')
        .split(',')
        .map(str::to_owned)
        .collect();
    if seeds
        .iter()
        .any(|seed| seed.is_empty() || seed.contains(['/', '?']))
    {
        return Err(
            "redis cluster url: expected redis-cluster://[user:password@]host:port[,host:port…]"
                .into(),
        );
    }
    Ok(Some((tls, userinfo, seeds)))
}

/// The `host:port` of every primary that `CLUSTER NODES` lists and does not mark failed.
fn primaries(nodes: &str) -> Vec<String> {
    let mut hosts: Vec<String> = nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (address, flags) = (fields.get(1)?, fields.get(2)?);
            let flags: Vec<&str> = flags.split(',').collect();
            let primary = flags.contains(&"master") && !flags.iter().any(|f| f.starts_with("fail"));
            // `ip:port@cport[,hostname]`
            let host = address.split(['@', ',']).next()?;
            (primary && !host.starts_with(':')).then(|| host.to_owned())
        })
        .collect();
    hosts.sort();
    hosts
}

fn address(client: &redis::Client) -> String {
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        redis::ConnectionAddr::Unix(path) => path.display().to_string(),
        _ => "server".into(),
    }
}

async fn connect(
    client: &redis::Client,
    timeout: Duration,
) -> Result<MultiplexedConnection, String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|error| format!("cannot reach the server: {error}"))
}

/// An open connection to one target, scanning from the start of its keyspace.
pub struct Scanner {
    pub name: String,
    connection: MultiplexedConnection,
    pattern: Vec<u8>,
    batch: u32,
    cursor: u64,
    done: bool,
    whole: bool,
}

impl Scanner {
    /// Connects to `target` to scan the keys matching `pattern`, `batch` at a time.
    ///
    /// # Errors
    ///
    /// A message when the server cannot be reached or refuses (`PING`).
    pub async fn open(
        target: &Target,
        pattern: Vec<u8>,
        batch: u32,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut connection = connect(&target.client, timeout)
            .await
            .map_err(|error| format!("{}: {error}", target.name))?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|error| format!("{}: {error}", target.name))?;
        Ok(Self {
            name: target.name.clone(),
            connection,
            pattern,
            batch,
            cursor: 0,
            done: false,
            whole: target.whole,
        })
    }

    /// How many keys the server holds in all (an upper bound for a progress bar).
    pub async fn size(&mut self) -> Result<u64, String> {
        redis::cmd("DBSIZE")
            .query_async::<u64>(&mut self.connection)
            .await
            .map_err(|error| format!("{}: DBSIZE: {error}", self.name))
    }

    /// The next batch of keys with their values (`None`: gone between `SCAN` and `GET`, or not
    /// a string); `None` once the scan is complete. A key may come twice, as `SCAN` promises
    /// only that every key present throughout is returned at least once.
    pub async fn next(&mut self) -> Result<Option<Vec<(Vec<u8>, Option<Vec<u8>>)>>, String> {
        if self.done {
            return Ok(None);
        }
        let (cursor, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(self.cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(self.batch)
            .query_async(&mut self.connection)
            .await
            .map_err(|error| format!("{}: SCAN: {error}", self.name))?;
        self.cursor = cursor;
        self.done = cursor == 0;
        if keys.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let values: Vec<redis::Value> = if self.whole {
            redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut self.connection)
                .await
                .map_err(|error| format!("{}: MGET: {error}", self.name))?
        } else {
            let mut pipeline = redis::pipe();
            for key in &keys {
                pipeline.cmd("GET").arg(key);
            }
            pipeline
                .query_async(&mut self.connection)
                .await
                .map_err(|error| format!("{}: GET: {error}", self.name))?
        };
        if values.len() != keys.len() {
            return Err(format!(
                "{}: a batch of {} values for {} keys",
                self.name,
                values.len(),
                keys.len()
            ));
        }
        Ok(Some(
            keys.into_iter()
                .zip(values)
                .map(|(key, value)| match value {
                    redis::Value::BulkString(bytes) => (key, Some(bytes)),
                    // nil: gone, or (MGET) not a string; a WRONGTYPE error (GET): not a string.
                    _ => (key, None),
                })
                .collect(),
        ))
    }
}

/// The `SCAN MATCH` pattern of every entry under `prefix` (of one namespace, if given): the
/// prefix with glob characters escaped, then the key format's own prefix.
pub fn pattern(prefix: &[u8], namespace: Option<&str>) -> Vec<u8> {
    let mut pattern = Vec::with_capacity(prefix.len() + 48);
    for &byte in prefix {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(byte);
    }
    pattern.extend_from_slice(scoped_cache::envelope::KEY_PREFIX);
    if let Some(namespace) = namespace {
        pattern.extend_from_slice(namespace.as_bytes());
        pattern.push(b':');
    }
    pattern.push(b'*');
    pattern
}

/// Paces reads to a rate: after `n` keys, waits until `n / rate` seconds have passed.
pub struct Pacer {
    started: Instant,
    per_second: Option<u64>,
    keys: u64,
}

impl Pacer {
    pub fn new(rate: Rate) -> Self {
        Self {
            started: Instant::now(),
            per_second: match rate {
                Rate::PerSecond(n) => Some(n),
                Rate::Unlimited => None,
            },
            keys: 0,
        }
    }

    /// Counts `keys` read, and sleeps as long as reading them so far was ahead of the rate.
    pub async fn read(&mut self, keys: usize) {
        self.keys += keys as u64;
        if let Some(per_second) = self.per_second {
            let due = self.started + Duration::from_secs_f64(self.keys as f64 / per_second as f64);
            tokio::time::sleep_until(due.into()).await;
        }
    }

    /// The batch size that keeps the pace smooth: at most a tenth of a second's keys.
    pub fn batch(rate: Rate, batch: u32) -> u32 {
        match rate {
            Rate::PerSecond(n) => batch.min(u32::try_from(n / 10).unwrap_or(u32::MAX).max(1)),
            Rate::Unlimited => batch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_the_prefix() {
        assert_eq!(pattern(b"", None), b"sc1:*");
        assert_eq!(
            pattern(b"svc[1]*:", Some("thumb")),
            b"svc\\[1\\]\\*:sc1:thumb:*"
        );
    }

    #[test]
    fn cluster_urls_and_primaries() {
        assert_eq!(cluster_url("redis://h:1").unwrap(), None);
        assert_eq!(
            cluster_url("redis-cluster://u:p@a:1,b:2/").unwrap(),
            Some((false, "u:p@".into(), vec!["a:1".into(), "b:2".into()]))
        );
        assert!(cluster_url("redis-cluster://a:1,,b:2").is_err());
        let nodes = "\
            e7d1 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n\
            67ed 127.0.0.1:7000@17000,node-0 myself,master - 0 0 1 connected 0-5460\n\
            292f 127.0.0.1:7003@17003 slave 67ed 0 0 1 connected\n\
            9bc1 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected\n";
        assert_eq!(primaries(nodes), ["127.0.0.1:7000", "127.0.0.1:7001"]);
    }
}
