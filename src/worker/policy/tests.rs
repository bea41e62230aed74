//! The decision table, one row per case, and the retry-delay schedule.

use super::*;

const NOW: i64 = 1_000_000;

fn policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(100),
        max: Duration::from_millis(1000),
        attempts_per_provider: 3,
    }
}

fn error(class: ErrorClass) -> ProviderError {
    ProviderError {
        class,
        message: "boom".into(),
        code: None,
        outcome_unknown: false,
    }
}

fn transient(retry_after: Option<u64>) -> ProviderError {
    error(ErrorClass::Transient {
        retry_after: retry_after.map(Duration::from_millis),
    })
}

fn failed(error: &ProviderError, breaker_open_until: Option<i64>) -> Outcome<'_> {
    Outcome::Failed {
        error,
        latency_ms: 5,
        breaker_open_until,
    }
}

/// Provider `index` of `providers`, with `attempts_done` attempts counted on it.
fn at(index: usize, providers: usize, attempts_done: u32) -> Position {
    Position {
        index,
        providers,
        attempts_done,
    }
}

fn retry(wait_ms: u64, until_ms: Option<i64>, attempts: u32) -> Next {
    Next::Retry(Delay {
        wait: Duration::from_millis(wait_ms),
        until_ms,
        attempts,
        rate_slot: false,
    })
}

#[test]
fn the_decision_table() {
    let clock = Clock {
        now_ms: NOW,
        jitter: 0.5,
    };
    let (soft, hinted, hinted_long) = (
        transient(None),
        transient(Some(700)),
        transient(Some(60_000)),
    );
    let provider_down = error(ErrorClass::ProviderPermanent);
    let recipient_bad = error(ErrorClass::RecipientPermanent);
    let sent = Outcome::Sent {
        provider_message_id: Some("SM1"),
        latency_ms: 3,
    };
    let expired = Outcome::Expired { at: Utc::now() };
    let open = Outcome::CircuitOpen {
        until_ms: NOW + 4000,
        probing: false,
    };
    let probing = Outcome::CircuitOpen {
        until_ms: NOW + 300,
        probing: true,
    };
    let rows: Vec<(&str, Outcome<'_>, Position, Next)> = vec![
        ("sent", sent, at(0, 2, 0), Next::Sent),
        ("expired", expired, at(0, 2, 0), Next::Expire),
        // Backoff: attempt 1 → ceiling 100 ms, attempt 2 → 200 ms; jitter 0.5 halves it.
        (
            "transient, budget left",
            failed(&soft, None),
            at(0, 2, 0),
            retry(50, None, 1),
        ),
        (
            "transient, second try",
            failed(&soft, None),
            at(0, 2, 1),
            retry(100, None, 2),
        ),
        (
            "transient, Retry-After above the backoff",
            failed(&hinted, None),
            at(0, 1, 0),
            retry(700, None, 1),
        ),
        (
            "transient, Retry-After beyond the cap",
            failed(&hinted_long, None),
            at(0, 1, 1),
            retry(1000, None, 2),
        ),
        (
            "transient, budget spent, more providers",
            failed(&soft, None),
            at(0, 2, 2),
            Next::FailOver,
        ),
        (
            "transient, budget spent on the last",
            failed(&soft, None),
            at(1, 2, 2),
            Next::Fail { dead_letter: true },
        ),
        (
            "transient, breaker opened, more providers",
            failed(&soft, Some(NOW + 5000)),
            at(0, 2, 0),
            Next::FailOver,
        ),
        (
            "transient, breaker opened on the last",
            failed(&soft, Some(NOW + 5000)),
            at(1, 2, 0),
            retry(5000, Some(NOW + 5000), 1),
        ),
        (
            "transient, breaker already closed again",
            failed(&soft, Some(NOW - 1)),
            at(0, 1, 0),
            retry(50, None, 1),
        ),
        (
            "transient, breaker open, budget spent",
            failed(&soft, Some(NOW + 5000)),
            at(0, 1, 2),
            Next::Fail { dead_letter: true },
        ),
        (
            "provider-permanent, more providers",
            failed(&provider_down, None),
            at(0, 3, 0),
            Next::FailOver,
        ),
        (
            "provider-permanent on the last",
            failed(&provider_down, None),
            at(2, 3, 0),
            Next::Fail { dead_letter: true },
        ),
        (
            "recipient-permanent",
            failed(&recipient_bad, None),
            at(0, 3, 0),
            Next::Fail { dead_letter: false },
        ),
        (
            "recipient-permanent on the last",
            failed(&recipient_bad, None),
            at(2, 3, 2),
            Next::Fail { dead_letter: false },
        ),
        (
            "breaker open, more providers",
            open,
            at(0, 2, 0),
            Next::FailOver,
        ),
        (
            "breaker open on the last, budget left",
            open,
            at(1, 2, 1),
            retry(4000, Some(NOW + 4000), 2),
        ),
        (
            "breaker open on the last, budget spent",
            open,
            at(1, 2, 2),
            Next::Fail { dead_letter: true },
        ),
        (
            "half-open, someone else probing, more providers",
            probing,
            at(0, 2, 0),
            Next::FailOver,
        ),
        (
            "half-open, someone else probing, last provider",
            probing,
            at(1, 2, 1),
            Next::Wait(Delay {
                wait: Duration::ZERO,
                until_ms: None,
                attempts: 1,
                rate_slot: false,
            }),
        ),
        (
            "rate limited, token reserved",
            Outcome::RateLimited {
                wait: Duration::from_millis(250),
                reserved: true,
            },
            at(0, 2, 1),
            Next::Wait(Delay {
                wait: Duration::from_millis(250),
                until_ms: Some(NOW + 250),
                attempts: 1,
                rate_slot: true,
            }),
        ),
        (
            "rate limited, beyond the reservation horizon",
            Outcome::RateLimited {
                wait: Duration::from_secs(90),
                reserved: false,
            },
            at(0, 1, 0),
            Next::Wait(Delay {
                wait: Duration::from_secs(90),
                until_ms: Some(NOW + 90_000),
                attempts: 0,
                rate_slot: false,
            }),
        ),
    ];
    for (case, outcome, position, expected) in rows {
        assert_eq!(
            decide(&outcome, position, &policy(), clock),
            expected,
            "{case}"
        );
    }
}

#[test]
fn retry_delays_grow_exponentially_within_the_cap() {
    let policy = RetryPolicy {
        attempts_per_provider: 10,
        ..policy()
    };
    let ms = |attempt, jitter| retry_delay(&policy, attempt, None, jitter).as_millis();
    // The top of the jitter range doubles per attempt until the cap.
    let tops: Vec<u128> = (1..=6).map(|a| ms(a, 1.0)).collect();
    assert_eq!(tops, vec![100, 200, 400, 800, 1000, 1000]);
    // Full jitter: anywhere from zero to that top, proportionally.
    assert_eq!(ms(3, 0.0), 0);
    assert_eq!(ms(3, 0.25), 100);
    assert_eq!(ms(9, 0.5), 500);
}

#[test]
fn real_retry_delays_are_spread_and_grow_with_the_attempt() {
    let policy = RetryPolicy {
        attempts_per_provider: 10,
        ..policy()
    };
    let draw = |attempt| -> Vec<Duration> {
        (0..400)
            .map(|_| retry_delay(&policy, attempt, None, Clock::now().jitter))
            .collect()
    };
    let mean = |d: &[Duration]| d.iter().sum::<Duration>() / d.len() as u32;
    let (first, third) = (draw(1), draw(3));
    assert!(first.iter().all(|d| *d <= Duration::from_millis(100)));
    assert!(third.iter().all(|d| *d <= Duration::from_millis(400)));
    // A delay function that always answered 0 (or never grew) fails here.
    assert!(
        mean(&first) >= Duration::from_millis(30),
        "{:?}",
        mean(&first)
    );
    assert!(
        mean(&third) >= Duration::from_millis(120),
        "{:?}",
        mean(&third)
    );
    assert!(mean(&third) > mean(&first) * 2);
    assert!(third.iter().any(|d| *d > Duration::from_millis(300)));
}

#[test]
fn retry_after_is_a_floor_within_the_cap() {
    for jitter in [0.0, 0.3, 1.0] {
        let hinted = retry_delay(&policy(), 2, Some(Duration::from_millis(700)), jitter);
        assert!(hinted >= Duration::from_millis(700), "{hinted:?}");
        assert!(hinted <= Duration::from_millis(1000));
        let capped = retry_delay(&policy(), 2, Some(Duration::from_secs(60)), jitter);
        assert_eq!(capped, Duration::from_millis(1000));
    }
}
