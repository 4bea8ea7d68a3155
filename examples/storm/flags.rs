//! Reading the command line into a `Config`: the syntax of numbers and durations, and the checks
//! that involve more than one flag.

use crate::config::{Config, PolicyChoice, Window};
use clap::CommandFactory;
use clap::Parser;
use clap::error::ErrorKind;
use std::ffi::OsString;
use std::time::Duration;

/// The flags in `args` (the program's name first), read and checked.
///
/// # Errors
///
/// A clap error that prints the help (`-h`, `--help`; status 0) or says what is wrong
/// (status 2) when `exit`ed.
pub fn parse_flags<I, T>(args: I) -> Result<Config, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let config = Config::try_parse_from(args)?;
    check(&config)
        .map_err(|message| Config::command().error(ErrorKind::ValueValidation, message))?;
    Ok(config)
}

/// What no single flag's parser can see.
fn check(config: &Config) -> Result<(), String> {
    if config.tenants < 2 {
        return Err("--tenants must be at least 2".into());
    }
    if !(1..config.tenants).contains(&config.devices_per_tenant) {
        return Err(format!(
            "--devices-per-tenant must be 1..={} (fewer than --tenants, so device sets are symmetric)",
            config.tenants - 1
        ));
    }
    // Keys and sessions are indexed by u32 and allocated up front.
    let keys = config
        .tenants
        .checked_mul(config.devices_per_tenant)
        .and_then(|devices| devices.checked_mul(config.items_per_device))
        .and_then(|keys| keys.checked_mul(config.sessions_per_device));
    if keys.is_none_or(|keys| keys > u64::from(u32::MAX)) {
        return Err("tenants x devices x items x sessions is too large".into());
    }
    if config
        .refresh_after
        .is_some_and(|after| after >= config.ttl)
    {
        return Err("--refresh-after must be shorter than --ttl".into());
    }
    if config.keep_yesterday && config.stale_for.is_none() {
        return Err("--keep-yesterday needs --stale-for (yesterday's values are stale)".into());
    }
    if config.soft_timeout.is_some() && config.stale_for.is_none() {
        return Err("--soft-timeout needs --stale-for (it answers with a stale value)".into());
    }
    if config.fleet() && config.policy != PolicyChoice::Cache {
        return Err(
            "--instances, --transfers and --bus-cuts run the coherent policy; drop --policy".into(),
        );
    }
    if config.fleet() && config.baseline_unverified {
        return Err("--baseline-unverified runs one naive instance; drop it with --instances, --transfers or --bus-cuts".into());
    }
    Ok(())
}

/// A non-negative integer; `_` separators are allowed (`1_000_000`).
pub fn number<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    text.replace('_', "")
        .parse::<u64>()
        .ok()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| "not a non-negative integer in range".to_owned())
}

/// A positive integer, as `number` reads it.
pub fn positive<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    match number::<u64>(text)? {
        0 => Err("must be at least 1".into()),
        n => T::try_from(n).map_err(|_| "too large".into()),
    }
}

/// A duration: a number and a unit, `ns`, `us`, `ms`, `s`, `m` or `h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let bad = || "not a duration; write e.g. 1ms, 0.5s, 2m, 1h".to_owned();
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
        "h" => 3_600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(number * seconds).map_err(|_| bad())
}

/// A stretch of the run, `AT+FOR` (e.g. `8s+5s`), FOR longer than zero.
pub fn window(text: &str) -> Result<Window, String> {
    let (at, length) = text
        .split_once('+')
        .ok_or_else(|| "write AT+FOR, e.g. 8s+5s".to_owned())?;
    Ok(Window {
        at: duration(at)?,
        length: positive_duration(length)?,
    })
}

/// A period and a length, `EVERY+FOR` (e.g. `500ms+50ms`), the length shorter.
pub fn every_for(text: &str) -> Result<(Duration, Duration), String> {
    let (every, length) = text
        .split_once('+')
        .ok_or_else(|| "write EVERY+FOR, e.g. 500ms+50ms".to_owned())?;
    let (every, length) = (positive_duration(every)?, positive_duration(length)?);
    if length >= every {
        return Err("FOR must be shorter than EVERY".into());
    }
    Ok((every, length))
}

/// A stretch of the run and a latency, `AT+FOR@LATENCY` (e.g. `8s+5s@2s`).
pub fn slow_window(text: &str) -> Result<(Window, Duration), String> {
    let (stretch, latency) = text
        .split_once('@')
        .ok_or_else(|| "write AT+FOR@LATENCY, e.g. 8s+5s@2s".to_owned())?;
    Ok((window(stretch)?, duration(latency)?))
}

/// A rate per second: a positive number, e.g. 150000 or 1.5e5 (`_` separators allowed).
pub fn positive_rate(text: &str) -> Result<f64, String> {
    match text.replace('_', "").parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("not a positive number (per second), e.g. 150_000".into()),
    }
}

/// A duration longer than zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        Duration::ZERO => Err("must be longer than 0".into()),
        positive => Ok(positive),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PolicyChoice, Stop};
    use scoped_cache::testing::FaultKind;

    fn parse(flags: &str) -> Result<Config, clap::Error> {
        parse_flags(std::iter::once("storm").chain(flags.split_whitespace()))
    }

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let config = parse(
            "--duration 2s --origin-latency 500us --policy autobypass --faults delay=0.1@3ms \
             --tenants=1_000 --seed 1 --seed 7",
        )
        .unwrap_or_else(|error| unreachable!("valid flags refused: {error}"));
        assert!(matches!(config.stop(), Stop::After(d) if d == Duration::from_secs(2)));
        assert_eq!(config.origin_latency, Duration::from_micros(500));
        assert_eq!(config.policy, PolicyChoice::AutoBypass);
        assert_eq!((config.tenants, config.seed), (1000, 7));
        assert_eq!(
            config.faults.duration(FaultKind::Delay),
            Some(Duration::from_millis(3))
        );
        let fail_safe = parse("--origin-outage 8s+5s --origin-slow 1s+2s@3s --stale-for 60s")
            .unwrap_or_else(|error| unreachable!("valid flags refused: {error}"));
        let outage = fail_safe.origin_outage.unwrap_or_else(|| unreachable!());
        assert_eq!(
            (outage.at, outage.end()),
            (Duration::from_secs(8), Duration::from_secs(13))
        );
        assert_eq!(
            fail_safe.origin_slow.map(|(_, latency)| latency),
            Some(Duration::from_secs(3))
        );
        assert!(fail_safe.refreshing());
        let open_loop = parse("--rate 150_000 --in-flight 500")
            .unwrap_or_else(|error| unreachable!("valid flags refused: {error}"));
        assert_eq!(
            (open_loop.rate, open_loop.in_flight),
            (Some(150_000.0), 500)
        );
        assert_eq!(Config::default().rate, None, "closed loop by default");
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
            "--breaker-threshold 5_000_000_000",
            "--origin-outage 8s",
            "--origin-outage 8s+0s",
            "--origin-slow 8s+5s",
            "--refresh-after 600s",
            "--soft-timeout 1s",
            "--keep-yesterday",
            "--max-loads 0",
            "--rate 0",
            "--rate fast",
            "--rate 1000 --in-flight 0",
            "--nonsense",
        ] {
            let error = parse(bad).err();
            assert!(error.is_some(), "{bad:?} was accepted");
            assert_eq!(error.map(|e| e.exit_code()), Some(2), "{bad:?}");
        }
    }

    #[test]
    fn a_redis_backend_is_accepted_only_by_a_build_with_its_feature() {
        for (url, feature, built_with) in [
            ("redis://127.0.0.1:6379", "redis", cfg!(feature = "redis")),
            (
                "redis+unix:///tmp/redis.sock",
                "redis",
                cfg!(feature = "redis"),
            ),
            (
                "redis-cluster://127.0.0.1:7000,127.0.0.1:7001",
                "redis-cluster",
                cfg!(feature = "redis-cluster"),
            ),
            (
                "rediss-cluster://127.0.0.1:7000",
                "redis-cluster",
                cfg!(feature = "redis-cluster"),
            ),
            (
                "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster",
                "redis-sentinel",
                cfg!(feature = "redis-sentinel"),
            ),
        ] {
            match parse(&format!("--backend {url}")) {
                Ok(config) => {
                    assert!(built_with, "{url} accepted without --features {feature}");
                    assert_eq!(config.backend_name(), url);
                }
                Err(error) => {
                    assert!(!built_with, "{url} refused: {error}");
                    assert_eq!(error.exit_code(), 2, "{url}");
                    let wanted = format!("add --features {feature}");
                    assert!(error.to_string().contains(&wanted), "{url}: {error}");
                }
            }
        }
    }

    #[test]
    fn the_last_of_requests_and_duration_decides() {
        let stop = |flags| parse(flags).map(|config| config.stop()).ok();
        assert!(matches!(
            stop("--requests 5 --duration 1s"),
            Some(Stop::After(_))
        ));
        assert!(matches!(
            stop("--duration 1s --requests 5"),
            Some(Stop::Requests(5))
        ));
        assert!(matches!(stop(""), Some(Stop::Requests(6_000_000))));
    }

    #[test]
    fn help_is_generated_and_exits_0() {
        let help = parse("--help").err();
        assert_eq!(
            help.as_ref().map(|e| e.kind()),
            Some(ErrorKind::DisplayHelp)
        );
        assert_eq!(help.map(|e| e.exit_code()), Some(0));
        Config::command().debug_assert();
    }
}
