//! Settings of suppression and status webhooks (the `notify` room) (`COMMUNICATION_SUPPRESSION_…`,
//! `COMMUNICATION_WEBHOOK_…`), read with the rest of the configuration.

use std::time::Duration;

use super::{ConfigError, Lookup};

/// Typed settings of this area; see the README's configuration table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// How long a worker trusts its cached copy of a tenant's suppression list
    /// (`COMMUNICATION_SUPPRESSION_CACHE_MS`): a removal takes effect within this time.
    pub suppression_cache_ttl: Duration,
    /// The waits before retries 1, 2, … of a webhook event
    /// (`COMMUNICATION_WEBHOOK_RETRY_SCHEDULE`); one delay queue per entry.
    pub retry_schedule: Vec<Duration>,
    /// Per-call limit of a webhook request (`COMMUNICATION_WEBHOOK_TIMEOUT_MS`).
    pub timeout: Duration,
    /// An endpoint failing without a success for this long is disabled
    /// (`COMMUNICATION_WEBHOOK_DISABLE_AFTER`).
    pub disable_after: Duration,
    /// Webhook requests in flight per worker (`COMMUNICATION_WEBHOOK_CONCURRENCY`); also the
    /// prefetch of the webhook queue.
    pub concurrency: u16,
    /// How often the outbox is checked for events not yet on the queue
    /// (`COMMUNICATION_WEBHOOK_OUTBOX_POLL_MS`).
    pub outbox_poll: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            suppression_cache_ttl: Duration::from_secs(5),
            retry_schedule: [5, 60, 600, 3600, 4 * 3600, 12 * 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            timeout: Duration::from_secs(10),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            concurrency: 32,
            outbox_poll: Duration::from_millis(500),
        }
    }
}

fn bad(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        reason: reason.into(),
    }
}

/// `250ms`, `5s`, `10m`, `4h`, `5d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

impl NotifySettings {
    /// Reads the area's variables; an unset one takes its default, a malformed one is
    /// reported (and takes its default).
    pub fn read(get: Lookup) -> (NotifySettings, Vec<ConfigError>) {
        let mut s = NotifySettings::default();
        let mut problems = Vec::new();
        let ms = |name: &'static str, problems: &mut Vec<ConfigError>| -> Option<u64> {
            let v = get(name)?;
            match v.trim().parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    problems.push(bad(name, format!("must be a number, got {v:?}")));
                    None
                }
            }
        };
        if let Some(v) = ms("COMMUNICATION_SUPPRESSION_CACHE_MS", &mut problems) {
            s.suppression_cache_ttl = Duration::from_millis(v);
        }
        match ms("COMMUNICATION_WEBHOOK_TIMEOUT_MS", &mut problems) {
            Some(0) => problems.push(bad(
                "COMMUNICATION_WEBHOOK_TIMEOUT_MS",
                "must be at least 1",
            )),
            Some(v) => s.timeout = Duration::from_millis(v),
            None => {}
        }
        if let Some(v) = ms("COMMUNICATION_WEBHOOK_OUTBOX_POLL_MS", &mut problems) {
            s.outbox_poll = Duration::from_millis(v.max(10));
        }
        if let Some(v) = ms("COMMUNICATION_WEBHOOK_CONCURRENCY", &mut problems) {
            match u16::try_from(v).ok().filter(|c| *c > 0) {
                Some(c) => s.concurrency = c,
                None => problems.push(bad(
                    "COMMUNICATION_WEBHOOK_CONCURRENCY",
                    "must be 1 to 65535",
                )),
            }
        }
        if let Some(v) = get("COMMUNICATION_WEBHOOK_RETRY_SCHEDULE") {
            let name = "COMMUNICATION_WEBHOOK_RETRY_SCHEDULE";
            let tiers: Option<Vec<Duration>> = v.split(',').map(parse_duration).collect();
            match tiers {
                Some(t) if !t.is_empty() && t.len() <= 20 && t.iter().all(|d| !d.is_zero()) => {
                    s.retry_schedule = t;
                }
                _ => problems.push(bad(
                    name,
                    "must be 1 to 20 comma-separated durations like 5s,1m,10m,1h, none zero",
                )),
            }
        }
        if let Some(v) = get("COMMUNICATION_WEBHOOK_DISABLE_AFTER") {
            match parse_duration(&v) {
                Some(d) => s.disable_after = d,
                None => problems.push(bad(
                    "COMMUNICATION_WEBHOOK_DISABLE_AFTER",
                    "must be a duration like 5d or 12h",
                )),
            }
        }
        (s, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_spans_about_a_day_and_settings_are_read() {
        let (d, problems) = NotifySettings::read(&|_| None);
        assert!(problems.is_empty());
        let total: Duration = d.retry_schedule.iter().sum();
        assert_eq!(total.as_secs(), 5 + 60 + 600 + 3600 + 4 * 3600 + 12 * 3600);
        let (s, problems) = NotifySettings::read(&|k| match k {
            "COMMUNICATION_WEBHOOK_RETRY_SCHEDULE" => Some("200ms, 1s,2m".into()),
            "COMMUNICATION_WEBHOOK_DISABLE_AFTER" => Some("3d".into()),
            _ => None,
        });
        assert!(problems.is_empty());
        assert_eq!(
            s.retry_schedule,
            vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(120)
            ]
        );
        assert_eq!(s.disable_after, Duration::from_secs(3 * 86_400));
        let (_, problems) = NotifySettings::read(&|k| match k {
            "COMMUNICATION_WEBHOOK_RETRY_SCHEDULE" => Some("soon".into()),
            "COMMUNICATION_WEBHOOK_TIMEOUT_MS" => Some("0".into()),
            _ => None,
        });
        let names: Vec<&str> = problems.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            vec![
                "COMMUNICATION_WEBHOOK_TIMEOUT_MS",
                "COMMUNICATION_WEBHOOK_RETRY_SCHEDULE"
            ]
        );
    }
}
