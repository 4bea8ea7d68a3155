//! The Redis commands behind `RemoteStore`, written once for every topology (one server, a
//! cluster): how each call is put as a command, and how its reply is read. A reply no correct
//! connection gives marks the connection out of step, and the store replaces it.

use super::StoreError;
use super::redis::claimed_key;
use ::redis::{Cmd, Value};
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;

/// What a Redis store provides for the shared commands: its key layout, one request, and how it
/// replaces a connection that answered out of step.
pub(crate) trait Connections: Sync {
    /// Which connection (and generation of it) served a request.
    type Used: Copy + Send;

    /// Appends the Redis key under which `key` is stored to `cmd`, as one argument.
    fn key_arg(&self, cmd: &mut Cmd, key: &[u8]);

    /// Sends `cmd`, bounded by the response timeout; a server error reply is an error.
    fn request(
        &self,
        cmd: &Cmd,
    ) -> impl Future<Output = Result<(Value, Self::Used), StoreError>> + Send;

    /// Replaces the connection `used` came from, unless another caller already did.
    fn replace(&self, used: Self::Used);

    /// A reply that no correct connection gives to this command: replace the connection.
    fn out_of_step(&self, used: Self::Used, command: &str, reply: &Value) -> StoreError {
        self.replace(used);
        StoreError::Protocol(format!("unexpected reply to {command}: {}", shape(reply)))
    }

    /// A `GET`/`MGET` element: `None`, or the bytes. A value sealed for another key than
    /// `requested` is returned (for `Cache` to refuse and report) but marks the connection.
    fn value(
        &self,
        used: Self::Used,
        command: &str,
        requested: &[u8],
        reply: Value,
    ) -> Result<Option<Bytes>, StoreError> {
        match reply {
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => {
                if claimed_key(&bytes).is_some_and(|claimed| claimed != requested) {
                    self.replace(used);
                }
                Ok(Some(Bytes::from(bytes)))
            }
            other => Err(self.out_of_step(used, command, &other)),
        }
    }
}

/// `GET key`.
pub(crate) async fn get<C: Connections>(
    store: &C,
    key: &[u8],
) -> Result<Option<Bytes>, StoreError> {
    let mut cmd = ::redis::cmd("GET");
    store.key_arg(&mut cmd, key);
    let (reply, used) = store.request(&cmd).await?;
    store.value(used, "GET", key, reply)
}

/// `MGET keys…`: one element per key, in the caller's order, or an error for the whole batch.
pub(crate) async fn get_many<C: Connections>(
    store: &C,
    keys: &[Vec<u8>],
) -> Result<Vec<Option<Bytes>>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = ::redis::cmd("MGET");
    for key in keys {
        store.key_arg(&mut cmd, key);
    }
    let (reply, used) = store.request(&cmd).await?;
    let elements = match reply {
        Value::Array(elements) if elements.len() == keys.len() => elements,
        other => return Err(store.out_of_step(used, "MGET", &other)),
    };
    keys.iter()
        .zip(elements)
        .map(|(key, element)| store.value(used, "MGET", key, element))
        .collect()
}

/// `SET key value [PX ms]`.
pub(crate) async fn set<C: Connections>(
    store: &C,
    key: &[u8],
    value: &Bytes,
    ttl: Option<Duration>,
) -> Result<(), StoreError> {
    let mut cmd = ::redis::cmd("SET");
    store.key_arg(&mut cmd, key);
    cmd.arg(value.as_ref());
    if let Some(ttl) = ttl {
        // Redis refuses PX 0; a sub-millisecond TTL is rounded up to 1 ms.
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        cmd.arg("PX").arg(ms);
    }
    match store.request(&cmd).await? {
        (Value::Okay, _) => Ok(()),
        (other, used) => Err(store.out_of_step(used, "SET", &other)),
    }
}

/// `DEL key`.
pub(crate) async fn delete<C: Connections>(store: &C, key: &[u8]) -> Result<(), StoreError> {
    let mut cmd = ::redis::cmd("DEL");
    store.key_arg(&mut cmd, key);
    match store.request(&cmd).await? {
        (Value::Int(_), _) => Ok(()),
        (other, used) => Err(store.out_of_step(used, "DEL", &other)),
    }
}

/// Compare and delete in one step, as a Lua script (Redis has no such command). A server that
/// refuses scripts (`NOPERM`: an ACL without `@scripting`; `NOSCRIPT`) gets an unconditional
/// `DEL` instead; any other error is returned and nothing is deleted, since a plain `DEL` then
/// could remove a good value written since the read.
pub(crate) async fn delete_if<C: Connections>(
    store: &C,
    key: &[u8],
    value: &Bytes,
) -> Result<(), StoreError> {
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(DELETE_IF_SCRIPT).arg(1);
    store.key_arg(&mut cmd, key);
    cmd.arg(value.as_ref());
    match store.request(&cmd).await {
        Ok((Value::Int(_), _)) => Ok(()),
        Ok((other, used)) => Err(store.out_of_step(used, "EVAL", &other)),
        Err(StoreError::Server(message)) if refuses_scripts(error_code(&message)) => {
            delete(store, key).await
        }
        Err(error) => Err(error),
    }
}

/// `delete_if`'s script: deletes `KEYS[1]` only while it holds `ARGV[1]`; replies 1 or 0.
const DELETE_IF_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Whether a server error code means "no scripts here" (`NOPERM`: an ACL without
/// `@scripting`; `NOSCRIPT`), the one case where `delete_if` may fall back to a plain `DEL`.
fn refuses_scripts(code: &str) -> bool {
    matches!(code, "NOSCRIPT" | "NOPERM")
}

/// The error code of a [`StoreError::Server`] message: its first word.
fn error_code(message: &str) -> &str {
    message
        .trim_start()
        .split([' ', ':'])
        .next()
        .unwrap_or_default()
}

/// The type of a reply, for an error message (never its contents: they may be another
/// owner's data).
pub(crate) fn shape(reply: &Value) -> &'static str {
    match reply {
        Value::Nil => "nil",
        Value::Int(_) => "integer",
        Value::BulkString(_) => "bulk string",
        Value::Array(_) => "array",
        Value::SimpleString(_) => "simple string",
        Value::Okay => "OK",
        Value::Map(_) => "map",
        Value::Set(_) => "set",
        Value::Push { .. } => "push",
        Value::ServerError(_) => "error",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_to_run_scripts_falls_back_to_a_plain_delete() {
        let refuses = |message| refuses_scripts(error_code(message));
        assert!(refuses(
            "NOPERM User cache has no permissions to run the 'eval' command"
        ));
        assert!(refuses("NOSCRIPT No matching script."));
        assert!(refuses("NOPERM: no permissions"));
        for other in [
            "OOM command not allowed when used memory > 'maxmemory'.",
            "BUSY Redis is busy running a script.",
            "ERR Error running script",
            "READONLY You can't write against a read only replica.",
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MOVED 3999 127.0.0.1:6381",
            "LOADING Redis is loading the dataset in memory",
            "",
        ] {
            assert!(!refuses(other), "{other:?} must not delete unconditionally");
        }
    }
}
