//! Unit tests of reading a send: its fingerprint and its problems.

use super::*;
use crate::intake::json::parse_body;

fn request(body: &str) -> SendRequest {
    parse_body(body.as_bytes()).expect("valid body")
}

#[test]
fn the_fingerprint_is_the_one_the_value_based_reader_computed() {
    let bodies = [
        r#"{"channel":"sms","to":"+14155550100","content":{"text":"Your code is 481516"},"ttl_seconds":300}"#,
        r#"{"to":"ada@example.com","content":{"text":"t","subject":"s","html":"<p>h</p>"},
           "metadata":{"z":1,"a":{"y":[1,2],"b":null}},"channel":"email",
           "provider_id":"0190c5b4-8e1f-7a3c-9d2e-4b5a6c7d8e9f"}"#,
        // `priority` sorts between `metadata` and `provider_id`, and counts only when given.
        r#"{"channel":"email","to":"ada@example.com","content":{"text":"t","subject":"s"},
           "metadata":{"k":"v"},"priority":"high",
           "provider_id":"0190c5b4-8e1f-7a3c-9d2e-4b5a6c7d8e9f"}"#,
    ];
    for body in bodies {
        // What the earlier reader hashed: the body as a serde_json map (sorted keys).
        let value: Value = serde_json::from_str(body).expect("json");
        let earlier = hex::encode(Sha256::digest(serde_json::to_vec(&value).expect("json")));
        assert_eq!(request(body).fingerprint(), earlier, "{body}");
    }
    // Key order and spacing do not matter; the content does.
    let a = request(r#"{"channel":"sms","to":"+14155550100","content":{"text":"x"}}"#);
    let b = request(r#"{ "content": {"text": "x"}, "to": "+14155550100", "channel": "sms" }"#);
    let c = request(r#"{"channel":"sms","to":"+14155550100","content":{"text":"y"}}"#);
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_ne!(a.fingerprint(), c.fingerprint());
    let high = request(
        r#"{"channel":"sms","to":"+14155550100","content":{"text":"x"},"priority":"high"}"#,
    );
    let normal = request(
        r#"{"channel":"sms","to":"+14155550100","content":{"text":"x"},"priority":"normal"}"#,
    );
    assert_ne!(a.fingerprint(), high.fingerprint());
    assert_ne!(high.fingerprint(), normal.fingerprint());
}

#[test]
fn structural_problems_keep_their_earlier_words() {
    let cases = [
        (r#"{"contnet": 1}"#, "contnet", "is not a known field"),
        (r#"{"channel": 5}"#, "channel", "must be a string"),
        (r#"{"to": ["a"]}"#, "to", "must be a string"),
        (r#"{"content": "hi"}"#, "content", "must be a JSON object"),
        (r#"{"provider_id": 7}"#, "provider_id", "must be a string"),
        (
            r#"{"provider_id": "nope"}"#,
            "provider_id",
            "must be a UUID",
        ),
        (r#"{"ttl_seconds": -5}"#, "ttl_seconds", TTL_RANGE),
        (r#"{"ttl_seconds": "soon"}"#, "ttl_seconds", TTL_RANGE),
        (r#"{"priority": "urgent"}"#, "priority", PRIORITY_VALUES),
        (r#"{"priority": "HIGH"}"#, "priority", PRIORITY_VALUES),
        (r#"{"priority": 1}"#, "priority", PRIORITY_VALUES),
    ];
    for (body, field, message) in cases {
        let e = parse_body::<SendRequest>(body.as_bytes()).expect_err(body);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(e.errors, [FieldError::new(field, message)], "{body}");
    }
    let e = parse_body::<SendRequest>(br#"{"content": {"text": "x", "colour": "red"}}"#)
        .expect_err("unknown content field");
    assert_eq!(e.errors[0].field, "content");
    assert!(
        e.errors[0]
            .message
            .starts_with("must hold only subject, text and html strings (unknown field `colour`"),
        "{:?}",
        e.errors
    );
}

#[test]
fn a_ttl_out_of_range_is_reported_once_in_the_edges_words() {
    let body =
        request(r#"{"channel":"sms","to":"+14155550100","content":{"text":"x"},"ttl_seconds":0}"#);
    let mut errors = Vec::new();
    let draft = body.into_draft(None, &mut errors);
    assert_eq!(errors, [FieldError::new("ttl_seconds", TTL_RANGE)]);
    assert!(
        draft.validate().is_ok(),
        "the domain does not report it again"
    );
}
