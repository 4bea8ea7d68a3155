//! The command line: its help text, and reading the flags into a `Config`.

use crate::config::{BackendChoice, Config, PolicyChoice, Stop};
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: cargo run --release --example storm -- [flags]

  --tenants N               tenants; tenant and device ids are both 0..N          [2000]
  --devices-per-tenant N    devices of each tenant (1..tenants-1; symmetric)      [8]
  --items-per-device N      thumbnails per device                                 [4]
  --sessions-per-device N   concurrent fetchers per device (camera + apps)        [2]
  --requests N              total get_or_load calls, split over the sessions      [6000000]
  --duration D              run for D (e.g. 10s) instead of --requests
  --l1-capacity N           in-process entries; 0 disables the in-process tier    [10000]
  --ttl D                   time to live of cached values (nothing expires
                            during a run shorter than this)                       [600s]
  --origin-latency D        time the origin takes per load                        [1ms]
  --origin-concurrency N    loads the origin serves at once                       [64]
  --policy cache|autobypass the namespace's policy                                [cache]
  --breaker-threshold N     autobypass: violations per window that open it        [1000]
  --breaker-window D        autobypass: the counting window                       [1s]
  --breaker-cool-down D     autobypass: time open before probing                  [2s]
  --backend memory|URL      the remote tier: in-process, or redis://… (needs
                            --features redis)                                     [memory]
  --faults SPEC             kind=rate[@duration],… or none; kinds swap, confuse,
                            corrupt, truncate, stale, replay, drop, delay, timeout
                            [swap=0.01,confuse=0.01,corrupt=0.001,truncate=0.001,
                             stale=0.001,replay=0.001,drop=0.001,delay=0.001@2ms,
                             timeout=0.0001@20ms]
  --baseline-unverified     also run the storm through a naive unverified cache
  --seed N                  seed of the faults                                    [42]
  --no-progress             no progress bar (there is none when stdout is not a terminal)
  --json PATH               also write the report as JSON to PATH
  -h, --help                this text

durations: a number and ns, us, ms, s or m (1ms, 0.5s, 2m)
exit status: 0 clean, 1 leak or unrefused fault, 2 bad flags, 3 runtime/backend/report failure";

/// What `main` should do after reading the flags.
pub enum Command {
    Run(Box<Config>),
    Help,
}

pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = Config::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--tenants" => config.tenants = number(&flag, &value()?)?,
            "--devices-per-tenant" => config.devices_per_tenant = number(&flag, &value()?)?,
            "--items-per-device" => config.items_per_device = number(&flag, &value()?)?,
            "--sessions-per-device" => config.sessions_per_device = number(&flag, &value()?)?,
            "--requests" => config.stop = Stop::Requests(number(&flag, &value()?)?),
            "--duration" => config.stop = Stop::After(duration(&flag, &value()?)?),
            "--l1-capacity" => config.l1_capacity = number(&flag, &value()?)?,
            "--ttl" => config.ttl = duration(&flag, &value()?)?,
            "--origin-latency" => config.origin_latency = duration(&flag, &value()?)?,
            "--origin-concurrency" => {
                config.origin_concurrency = usize::try_from(number(&flag, &value()?)?)
                    .map_err(|_| format!("{flag} is too large"))?;
            }
            "--policy" => {
                config.policy = match value()?.as_str() {
                    "cache" => PolicyChoice::Cache,
                    "autobypass" => PolicyChoice::AutoBypass,
                    other => return Err(format!("--policy {other:?}: use cache or autobypass")),
                }
            }
            "--breaker-threshold" => {
                config.breaker_threshold = u32::try_from(number(&flag, &value()?)?)
                    .map_err(|_| format!("{flag} is too large"))?;
            }
            "--breaker-window" => config.breaker_window = duration(&flag, &value()?)?,
            "--breaker-cool-down" => config.breaker_cool_down = duration(&flag, &value()?)?,
            "--backend" => {
                let backend = value()?;
                config.backend = match backend.as_str() {
                    "memory" => BackendChoice::Memory,
                    url if url.starts_with("redis://")
                        || url.starts_with("rediss://")
                        || url.starts_with("redis+unix://")
                        || url.starts_with("unix://") =>
                    {
                        BackendChoice::Redis(url.to_owned())
                    }
                    other => {
                        return Err(format!("--backend {other:?}: use memory or a redis:// URL"));
                    }
                };
            }
            "--faults" => {
                config.faults = value()?
                    .parse()
                    .map_err(|error| format!("--faults: {error}"))?;
            }
            "--baseline-unverified" => config.baseline_unverified = true,
            "--seed" => config.seed = number(&flag, &value()?)?,
            "--no-progress" => config.progress = false,
            "--json" => config.json = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if config.tenants < 2 {
        return Err("--tenants must be at least 2".into());
    }
    if !(1..config.tenants).contains(&config.devices_per_tenant) {
        return Err(format!(
            "--devices-per-tenant must be 1..={} (fewer than --tenants, so device sets are symmetric)",
            config.tenants - 1
        ));
    }
    if config.items_per_device == 0
        || config.sessions_per_device == 0
        || config.origin_concurrency == 0
        || config.breaker_threshold == 0
    {
        return Err(
            "--items-per-device, --sessions-per-device, --origin-concurrency and \
             --breaker-threshold must be positive"
                .into(),
        );
    }
    let keys = config
        .tenants
        .checked_mul(config.devices_per_tenant)
        .and_then(|devices| devices.checked_mul(config.items_per_device))
        .and_then(|keys| keys.checked_mul(config.sessions_per_device));
    if keys.is_none_or(|keys| keys > u64::from(u32::MAX)) {
        return Err("tenants x devices x items x sessions is too large".into());
    }
    if config.ttl.is_zero() {
        return Err("--ttl must be positive".into());
    }
    if matches!(config.backend, BackendChoice::Redis(_)) && !cfg!(feature = "redis") {
        return Err("--backend redis://… needs the redis feature: add --features redis".into());
    }
    Ok(Command::Run(Box::new(config)))
}

/// A non-negative integer; `_` separators are allowed (`1_000_000`).
fn number(flag: &str, text: &str) -> Result<u64, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a non-negative integer"))
}

/// A duration: a number and a unit, `ns`, `us`, `ms`, `s` or `m`.
fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    let bad = || format!("{flag}: {text:?} is not a duration; write e.g. 1ms, 0.5s, 2m");
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(number * seconds).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scoped_cache::testing::FaultKind;

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let args = |text: &str| {
            text.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let Ok(Command::Run(config)) = parse_args(args(
            "--duration 2s --origin-latency 500us --policy autobypass --faults delay=0.1@3ms",
        )) else {
            unreachable!("valid flags refused")
        };
        assert!(matches!(config.stop, Stop::After(d) if d == Duration::from_secs(2)));
        assert_eq!(config.origin_latency, Duration::from_micros(500));
        assert_eq!(config.policy, PolicyChoice::AutoBypass);
        assert_eq!(
            config.faults.duration(FaultKind::Delay),
            Some(Duration::from_millis(3))
        );
        assert!(
            Config::default().faults.iter().all(|(_, rate)| rate > 0.0),
            "every kind on by default"
        );
        for bad in [
            "--tenants 1",
            "--tenants 10 --devices-per-tenant 10",
            "--duration 5",
            "--policy sometimes",
            "--backend mongodb://x",
            "--faults swap=2",
            "--sessions-per-device 0",
            "--ttl 0s",
            "--nonsense",
        ] {
            assert!(parse_args(args(bad)).is_err(), "{bad:?} was accepted");
        }
    }
}
