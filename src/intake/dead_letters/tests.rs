//! Unit tests of the dead-letter routes' inputs and answers.

use super::*;

#[test]
fn cursors_round_trip_and_foreign_ones_are_refused() {
    assert_eq!(
        DeadLetterCursor::decode(&DeadLetterCursor(42).encode()),
        Some(DeadLetterCursor(42))
    );
    assert_eq!(DeadLetterCursor::decode("not-a-cursor"), None);
    // A /v1/messages cursor is not a dead-letter cursor.
    let foreign =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("2026-11-25T10:00:00+00:00|01a2");
    assert_eq!(DeadLetterCursor::decode(&foreign), None);
}

#[test]
fn a_failed_publish_is_reported_without_the_brokers_error_text() {
    let r = ReplayResult::of(
        7,
        &ReplayOutcome::PublishFailed {
            reason: "RabbitMQ is unreachable: connection refused (os error 111)".into(),
        },
    );
    assert_eq!(r.outcome, "publish_failed");
    assert!(!r.detail.contains("os error"));
    assert_eq!(r.message_id, None);
}

#[test]
fn each_bad_filter_is_a_400_naming_it() {
    let cases = [
        (
            "tenant=a%20b",
            "tenant",
            "may contain only letters, digits, '_' and '-'",
        ),
        ("since=yesterday", "since", "must be an RFC 3339 time"),
        ("replayed=maybe", "replayed", "must be true or false"),
        ("cursor=nope", "cursor", "is not a cursor from this API"),
        ("limit=-", "limit", "must be 1 to 200"),
        ("colour=red", "colour", "is not a known filter"),
    ];
    for (q, field, message) in cases {
        let e = query::parse_query::<DeadLetterQuery>(q).expect_err(q);
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(e.errors, [FieldError::new(field, message)], "{q}");
    }
    let acme = TenantId::parse("acme").expect("tenant");
    let globex = TenantId::parse("globex").expect("tenant");
    let q = query::parse_query::<DeadLetterQuery>("tenant=acme&limit=0").expect("parses");
    let e = q.into_filter(Some(&globex)).expect_err("conflicts");
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        e.errors,
        [
            FieldError::new("limit", "must be 1 to 200"),
            FieldError::new("tenant", "differs from X-Tenant-Id")
        ]
    );
    let q = query::parse_query::<DeadLetterQuery>("replayed=false").expect("parses");
    let (filter, limit) = q.into_filter(Some(&acme)).expect("valid");
    assert_eq!(filter.tenant.as_deref(), Some("acme"));
    assert_eq!(filter.replayed, Some(false));
    assert_eq!(limit, 50);
}

#[test]
fn a_bulk_replay_body_names_its_problems_as_before() {
    let cases = [
        (
            r#"{"ids": 5}"#,
            "ids",
            "must be an array of dead letter ids",
        ),
        (
            r#"{"ids": [1, "two"]}"#,
            "ids",
            "must be dead letter ids (integers)",
        ),
        (r#"{"all": "yes"}"#, "all", "must be a boolean"),
        (r#"{"every": true}"#, "every", "is not a known field"),
    ];
    for (body, field, message) in cases {
        let e =
            super::super::json::parse_body::<ReplayManyRequest>(body.as_bytes()).expect_err(body);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(e.errors, [FieldError::new(field, message)], "{body}");
    }
}
