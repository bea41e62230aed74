//! Unit tests of reading the configuration.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[test]
fn defaults_apply_when_only_required_variables_are_set() {
    let get = lookup(&[
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", KEY),
    ]);
    let c = Config::from_lookup(&get, false).expect("valid");
    assert_eq!(c.namespace, "communication");
    assert_eq!(c.intake.listen_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(c.retry.attempts_per_provider, 4);
    assert!(!c.providers.allow_private_hosts);
    assert_eq!(c.telemetry.worker_metrics_addr, None);
    assert!(!c.telemetry.json_logs);
    assert_eq!(c.worker.batch_flushes, 4);
    assert_eq!(c.worker.concurrency, 400);
}

#[test]
fn the_worker_metrics_address_and_json_logs_are_read() {
    let get = lookup(&[
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", KEY),
        ("COMMUNICATION_WORKER_METRICS_ADDR", "0.0.0.0:9090"),
        ("COMMUNICATION_LOG_FORMAT", "json"),
    ]);
    let c = Config::from_lookup(&get, false).expect("valid");
    assert_eq!(
        c.telemetry
            .worker_metrics_addr
            .map(|a| a.to_string())
            .as_deref(),
        Some("0.0.0.0:9090")
    );
    assert!(c.telemetry.json_logs);
}

#[test]
fn worker_concurrency_follows_prefetch_unless_set() {
    let base = [
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", KEY),
        ("COMMUNICATION_PREFETCH", "500"),
    ];
    let c = Config::from_lookup(&lookup(&base), false).expect("valid");
    assert_eq!(c.worker.concurrency, 1000);
    let mut vars = base.to_vec();
    vars.push(("COMMUNICATION_WORKER_CONCURRENCY", "64"));
    let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
    assert_eq!(c.worker.concurrency, 64);
}

#[test]
fn writer_flushes_is_read_and_checked() {
    let base = [
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", KEY),
    ];
    let mut vars = base.to_vec();
    vars.push(("COMMUNICATION_WRITER_FLUSHES", "2"));
    let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
    assert_eq!(c.worker.batch_flushes, 2);
    for bad in ["0", "many"] {
        let mut vars = base.to_vec();
        vars.push(("COMMUNICATION_WRITER_FLUSHES", bad));
        let e = Config::from_lookup(&lookup(&vars), false).expect_err("must fail");
        assert_eq!(e.names(), ["COMMUNICATION_WRITER_FLUSHES"]);
    }
}

#[test]
fn each_problem_names_its_variable() {
    type Case<'a> = (Vec<(&'a str, &'a str)>, bool, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("ENCRYPTION_SECRET", KEY)], false, "DATABASE_URL"),
        (
            vec![("DATABASE_URL", "postgres://x/y")],
            false,
            "ENCRYPTION_SECRET",
        ),
        (
            vec![
                ("DATABASE_URL", "postgres://x/y"),
                ("ENCRYPTION_SECRET", "short"),
            ],
            false,
            "ENCRYPTION_SECRET",
        ),
        (
            vec![
                ("DATABASE_URL", "postgres://x/y"),
                ("ENCRYPTION_SECRET", KEY),
            ],
            true,
            "COMMUNICATION_SERVICE_TOKEN",
        ),
        (
            vec![
                ("DATABASE_URL", "postgres://x/y"),
                ("ENCRYPTION_SECRET", KEY),
                ("COMMUNICATION_RETRY_BASE_MS", "soon"),
            ],
            false,
            "COMMUNICATION_RETRY_BASE_MS",
        ),
        (
            vec![
                ("DATABASE_URL", "postgres://x/y"),
                ("ENCRYPTION_SECRET", KEY),
                ("COMMUNICATION_LISTEN_ADDR", "everywhere"),
            ],
            false,
            "COMMUNICATION_LISTEN_ADDR",
        ),
        (
            vec![
                ("DATABASE_URL", "postgres://x/y"),
                ("ENCRYPTION_SECRET", KEY),
                ("ENCRYPTION_SECRET_PREVIOUS", "nope"),
            ],
            false,
            "ENCRYPTION_SECRET_PREVIOUS",
        ),
        (
            vec![
                ("DATABASE_URL", "postgres://x/y"),
                ("ENCRYPTION_SECRET", KEY),
                ("COMMUNICATION_WORKER_METRICS_ADDR", "port 9090"),
            ],
            false,
            "COMMUNICATION_WORKER_METRICS_ADDR",
        ),
        (
            vec![
                ("DATABASE_URL", "postgres://x/y"),
                ("ENCRYPTION_SECRET", KEY),
                ("COMMUNICATION_LOG_FORMAT", "yaml"),
            ],
            false,
            "COMMUNICATION_LOG_FORMAT",
        ),
    ];
    for (vars, needs_token, name) in cases {
        let get = lookup(&vars);
        let e = Config::from_lookup(&get, needs_token).expect_err("must fail");
        assert_eq!(e.names(), [name]);
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn breaker_and_rate_limit_settings_have_defaults_and_named_errors() {
    let base = [
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", KEY),
    ];
    let c = Config::from_lookup(&lookup(&base), false).expect("valid");
    assert_eq!(c.guard.threshold, 5);
    assert_eq!(c.guard.cooldown, Duration::from_secs(30));
    assert_eq!(c.guard.redis_timeout, Duration::from_millis(250));
    assert_eq!(c.guard.probe_ttl, Duration::from_secs(20));
    let mut vars = base.to_vec();
    vars.extend([
        ("COMMUNICATION_BREAKER_THRESHOLD", "0"),
        ("COMMUNICATION_BREAKER_COOLDOWN_MS", "1500"),
        ("COMMUNICATION_GUARD_REDIS_TIMEOUT_MS", "50"),
        ("COMMUNICATION_PROVIDER_TIMEOUT_MS", "1000"),
    ]);
    let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
    assert_eq!(c.guard.threshold, 0, "0 disables breakers");
    assert_eq!(c.guard.cooldown, Duration::from_millis(1500));
    assert_eq!(c.guard.redis_timeout, Duration::from_millis(50));
    assert_eq!(c.guard.probe_ttl, Duration::from_secs(6));
    for (name, value) in [
        ("COMMUNICATION_BREAKER_THRESHOLD", "many"),
        ("COMMUNICATION_BREAKER_THRESHOLD", "-1"),
        ("COMMUNICATION_BREAKER_COOLDOWN_MS", "0"),
        ("COMMUNICATION_BREAKER_COOLDOWN_MS", "soon"),
        ("COMMUNICATION_GUARD_REDIS_TIMEOUT_MS", "0"),
        ("COMMUNICATION_GUARD_REDIS_TIMEOUT_MS", "999999"),
    ] {
        let mut vars = base.to_vec();
        vars.push((name, value));
        let e = Config::from_lookup(&lookup(&vars), false).expect_err("must fail");
        assert_eq!(e.names(), [name], "{value}");
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn debug_output_hides_secrets() {
    let get = lookup(&[
        ("DATABASE_URL", "postgres://user:hunter2@x/y"),
        ("ENCRYPTION_SECRET", KEY),
        ("COMMUNICATION_SERVICE_TOKEN", "super-secret-token-123"),
    ]);
    let c = Config::from_lookup(&get, true).expect("valid");
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"));
    assert!(!dbg.contains("super-secret-token-123"));
    assert!(!dbg.contains(KEY));
}

#[test]
fn every_problem_is_reported_at_once_one_line_each() {
    let get = lookup(&[
        ("DATABASE_URL", "mysql://x/y"),
        ("REDIS_URL", "http://cache"),
        ("ENCRYPTION_SECRET_PREVIOUS", "nope"),
        ("COMMUNICATION_LISTEN_ADDR", "everywhere"),
        ("COMMUNICATION_NAMESPACE", "has spaces"),
        ("COMMUNICATION_RETRY_ATTEMPTS", "0"),
        ("COMMUNICATION_PREFETCH", "lots"),
        ("COMMUNICATION_BREAKER_COOLDOWN_MS", "0"),
        ("COMMUNICATION_LOG_FORMAT", "yaml"),
        ("TWILIO_BASE_URL", "ftp://twilio"),
    ]);
    let e = Config::from_lookup(&get, true).expect_err("must fail");
    let mut names = e.names();
    names.sort_unstable();
    let mut expected = vec![
        "DATABASE_URL",
        "REDIS_URL",
        "ENCRYPTION_SECRET",
        "ENCRYPTION_SECRET_PREVIOUS",
        "COMMUNICATION_SERVICE_TOKEN",
        "COMMUNICATION_LISTEN_ADDR",
        "COMMUNICATION_NAMESPACE",
        "COMMUNICATION_RETRY_ATTEMPTS",
        "COMMUNICATION_PREFETCH",
        "COMMUNICATION_BREAKER_COOLDOWN_MS",
        "COMMUNICATION_LOG_FORMAT",
        "TWILIO_BASE_URL",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected);
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, problem) in lines.iter().zip(&e.0) {
        assert!(line.starts_with("configuration: "), "{line}");
        assert!(line.contains(problem.name), "{line}");
    }
}

#[test]
fn a_missing_and_a_malformed_variable_are_both_named() {
    let get = lookup(&[("COMMUNICATION_RETRY_BASE_MS", "soon")]);
    let e = Config::from_lookup(&get, false).expect_err("must fail");
    assert_eq!(
        e.names(),
        [
            "DATABASE_URL",
            "ENCRYPTION_SECRET",
            "COMMUNICATION_RETRY_BASE_MS"
        ]
    );
    assert_eq!(e.0[0].reason, "is required");
    assert!(e.0[2].reason.contains("must be a number"));
}

#[test]
fn a_bad_active_and_a_bad_previous_key_are_both_named() {
    let get = lookup(&[
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", "short"),
        ("ENCRYPTION_SECRET_PREVIOUS", "also-short"),
    ]);
    let e = Config::from_lookup(&get, false).expect_err("must fail");
    assert_eq!(
        e.names(),
        ["ENCRYPTION_SECRET", "ENCRYPTION_SECRET_PREVIOUS"]
    );
}

#[test]
fn the_retry_cap_below_the_base_is_named_once_and_only_when_both_are_numbers() {
    let base = [
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", KEY),
    ];
    let mut vars = base.to_vec();
    vars.extend([
        ("COMMUNICATION_RETRY_BASE_MS", "5000"),
        ("COMMUNICATION_RETRY_MAX_MS", "1000"),
    ]);
    let e = Config::from_lookup(&lookup(&vars), false).expect_err("must fail");
    assert_eq!(e.names(), ["COMMUNICATION_RETRY_MAX_MS"]);
    let mut vars = base.to_vec();
    vars.extend([
        ("COMMUNICATION_RETRY_BASE_MS", "later"),
        ("COMMUNICATION_RETRY_MAX_MS", "1000"),
    ]);
    let e = Config::from_lookup(&lookup(&vars), false).expect_err("must fail");
    assert_eq!(e.names(), ["COMMUNICATION_RETRY_BASE_MS"]);
}

#[test]
fn an_unset_variable_takes_its_areas_default() {
    let c = Config::from_lookup(
        &lookup(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("ENCRYPTION_SECRET", KEY),
        ]),
        false,
    )
    .expect("valid");
    use secrecy::ExposeSecret;
    assert_eq!(c.database.pool_size, DatabaseSettings::default().pool_size);
    assert_eq!(
        c.redis.url.expose_secret(),
        RedisSettings::default().url.expose_secret()
    );
    assert_eq!(
        c.amqp.url.expose_secret(),
        AmqpSettings::default().url.expose_secret()
    );
    assert_eq!(
        c.amqp.publish_channels,
        AmqpSettings::default().publish_channels
    );
    assert_eq!(
        c.amqp.publish_linger,
        AmqpSettings::default().publish_linger
    );
    assert_eq!(c.retry.base, RetryPolicy::default().base);
    assert_eq!(c.retry.max, RetryPolicy::default().max);
    assert_eq!(c.worker.prefetch, WorkerTuning::default().prefetch);
    assert_eq!(c.worker.concurrency, WorkerTuning::default().concurrency);
    assert_eq!(c.worker.batch_linger, WorkerTuning::default().batch_linger);
    assert_eq!(c.guard.probe_ttl, GuardSettings::default().probe_ttl);
    assert_eq!(c.guard.cooldown, GuardSettings::default().cooldown);
    assert_eq!(c.providers.timeout, ProviderSettings::default().timeout);
    assert_eq!(c.providers.cache_ttl, ProviderSettings::default().cache_ttl);
    assert_eq!(c.providers.bases.twilio, ProviderBases::default().twilio);
    assert_eq!(c.intake.listen_addr, IntakeSettings::default().listen_addr);
    assert_eq!(c.namespace, DEFAULT_NAMESPACE);
    assert_eq!(c.retention, RetentionSettings::default());
}

#[test]
fn retention_defaults_to_30_days_every_hour_and_its_settings_are_read() {
    let base = [
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", KEY),
    ];
    let c = Config::from_lookup(&lookup(&base), false).expect("valid");
    assert_eq!(c.retention.days, 30);
    assert_eq!(c.retention.interval, Duration::from_secs(3600));
    let mut vars = base.to_vec();
    vars.extend([
        ("COMMUNICATION_RETENTION_DAYS", "3650"),
        ("COMMUNICATION_RETENTION_INTERVAL", "15m"),
        ("COMMUNICATION_RETENTION_BATCH", "500"),
        ("COMMUNICATION_RETENTION_PAUSE_MS", "0"),
    ]);
    let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
    assert_eq!(c.retention.days, 3650);
    assert_eq!(c.retention.interval, Duration::from_secs(900));
    assert_eq!(c.retention.batch_size, 500);
    assert_eq!(c.retention.pause, Duration::ZERO);
    let mut vars = base.to_vec();
    vars.push(("COMMUNICATION_RETENTION_DAYS", "1"));
    let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
    assert_eq!(c.retention.days, 1);
}

#[test]
fn retention_settings_out_of_range_are_each_named() {
    for (name, bad) in [
        ("COMMUNICATION_RETENTION_DAYS", "0"),
        ("COMMUNICATION_RETENTION_DAYS", "3651"),
        ("COMMUNICATION_RETENTION_DAYS", "forever"),
        ("COMMUNICATION_RETENTION_INTERVAL", "hourly"),
        ("COMMUNICATION_RETENTION_INTERVAL", "0s"),
        ("COMMUNICATION_RETENTION_BATCH", "0"),
        ("COMMUNICATION_RETENTION_PAUSE_MS", "-1"),
    ] {
        let vars = [
            ("DATABASE_URL", "postgres://x/y"),
            ("ENCRYPTION_SECRET", KEY),
            (name, bad),
        ];
        let e = Config::from_lookup(&lookup(&vars), false).expect_err(bad);
        assert_eq!(e.names(), vec![name], "{name}={bad}");
    }
}

#[test]
fn lanes_are_on_with_default_shares_unless_set() {
    let base = [
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", KEY),
    ];
    let c = Config::from_lookup(&lookup(&base), false).expect("valid");
    assert!(c.lanes.enabled);
    assert_eq!((c.lanes.share_high, c.lanes.share_normal), (20, 200));
    assert_eq!(c.lanes.redis_timeout, Duration::from_millis(250));
    let mut vars = base.to_vec();
    vars.extend([
        ("COMMUNICATION_LANES", "false"),
        ("COMMUNICATION_FAIR_SHARE_HIGH", "5"),
        ("COMMUNICATION_FAIR_SHARE_NORMAL", "50"),
        ("COMMUNICATION_FAIR_SHARE_REDIS_TIMEOUT_MS", "100"),
    ]);
    let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
    assert!(!c.lanes.enabled);
    assert_eq!((c.lanes.share_high, c.lanes.share_normal), (5, 50));
    assert_eq!(c.lanes.redis_timeout, Duration::from_millis(100));
}

#[test]
fn bad_lane_settings_name_their_variable() {
    for (name, bad) in [
        ("COMMUNICATION_LANES", "sometimes"),
        ("COMMUNICATION_FAIR_SHARE_HIGH", "0"),
        ("COMMUNICATION_FAIR_SHARE_HIGH", "lots"),
        ("COMMUNICATION_FAIR_SHARE_NORMAL", "0"),
        ("COMMUNICATION_FAIR_SHARE_NORMAL", "-3"),
        ("COMMUNICATION_FAIR_SHARE_REDIS_TIMEOUT_MS", "soon"),
    ] {
        let vars = [
            ("DATABASE_URL", "postgres://x/y"),
            ("ENCRYPTION_SECRET", KEY),
            (name, bad),
        ];
        let e = Config::from_lookup(&lookup(&vars), false).expect_err("must fail");
        assert_eq!(e.names(), [name], "{bad}");
    }
}

#[test]
fn the_publish_linger_is_read_in_milliseconds_and_bounded() {
    let base = [
        ("DATABASE_URL", "postgres://x/y"),
        ("ENCRYPTION_SECRET", KEY),
    ];
    let c = Config::from_lookup(&lookup(&base), false).expect("valid");
    assert_eq!(c.amqp.publish_linger, Duration::from_millis(2));
    let mut vars = base.to_vec();
    vars.push(("COMMUNICATION_PUBLISH_LINGER_MS", "0"));
    let c = Config::from_lookup(&lookup(&vars), false).expect("valid");
    assert_eq!(c.amqp.publish_linger, Duration::ZERO);
    for bad in ["1001", "-1", "soon"] {
        let mut vars = base.to_vec();
        vars.push(("COMMUNICATION_PUBLISH_LINGER_MS", bad));
        let e = Config::from_lookup(&lookup(&vars), false).expect_err(bad);
        assert_eq!(e.names(), vec!["COMMUNICATION_PUBLISH_LINGER_MS"], "{bad}");
    }
}
