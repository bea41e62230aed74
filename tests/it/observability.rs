//! Observability: the W3C `traceparent` from the HTTP request through the AMQP message into the
//! worker's spans (one send is one trace), `GET /metrics`, the worker's metrics listener,
//! `GET /openapi.json`, and the deploy files' configuration names.
//!
//! The test binary captures its logs as JSON lines (the `COMMUNICATION_LOG_FORMAT=json`
//! shape). Tests run in parallel, so each one looks only at the lines of its own message ids.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Options, TestApp, envelope};
use communication::domain::Channel;
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Value, json};
use uuid::Uuid;

/// Captured JSON log lines whose `message_id` field is `id`.
fn lines_of(id: &str) -> Vec<Value> {
    let text = crate::log_capture::text();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message_id"].as_str() == Some(id))
        .collect()
}

fn message_of(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

/// Polls until the log lines of `id` include one with message `what` (fails after 10 s).
async fn wait_for_log(id: &str, what: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = lines_of(id);
        if lines.iter().any(|l| message_of(l) == what) {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what:?} log line for {id}; got {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// (trace id, parent id) of a `traceparent` value.
fn split_traceparent(v: &str) -> (String, String) {
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {v:?}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    (parts[1].to_owned(), parts[2].to_owned())
}

fn response_traceparent(r: &reqwest::Response) -> String {
    r.headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("traceparent response header")
        .to_owned()
}

fn new_trace() -> (String, String, String) {
    let trace = Uuid::new_v4().simple().to_string();
    let parent = Uuid::new_v4().simple().to_string()[..16].to_owned();
    (format!("00-{trace}-{parent}-01"), trace, parent)
}

async fn send_traced(app: &TestApp, traceparent: &str) -> reqwest::Response {
    app.as_tenant(reqwest::Method::POST, "/v1/send", "acme")
        .header("traceparent", traceparent)
        .json(&json!({"channel": "sms", "to": "+14155550100", "content": {"text": "code 1234"}}))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn one_send_is_one_trace_from_the_request_through_retries_and_failover_to_sent() {
    crate::log_capture::install();
    let app = TestApp::spawn().await;
    app.system_provider("acme", "sms", "flaky", "fail_transient", 1)
        .await;
    app.system_provider("acme", "sms", "steady", "deliver", 2)
        .await;
    let (incoming, trace, parent) = new_trace();
    let r = send_traced(&app, &incoming).await;
    assert_eq!(r.status(), 202);
    let (answered_trace, intake_span) = split_traceparent(&response_traceparent(&r));
    assert_eq!(
        answered_trace, trace,
        "the intake continues the caller's trace"
    );
    assert_ne!(
        intake_span, parent,
        "the intake's own span is the new parent"
    );
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let body = app.wait_for_status("acme", &id, &["sent"]).await;
    // Three attempts on the flaky provider (two through delay queues), then the failover.
    assert_eq!(body["attempts"], 4);

    let lines = wait_for_log(&id, "message sent").await;
    let accepted: Vec<&Value> = lines
        .iter()
        .filter(|l| message_of(l) == "send accepted")
        .collect();
    assert_eq!(accepted.len(), 1, "{lines:?}");
    assert_eq!(accepted[0]["span"]["trace_id"], trace.as_str());
    assert_eq!(accepted[0]["span"]["span_id"], intake_span.as_str());
    assert_eq!(accepted[0]["span"]["parent_span_id"], parent.as_str());

    let deliveries: Vec<&Value> = lines
        .iter()
        .filter(|l| message_of(l) == "delivery started")
        .collect();
    assert_eq!(
        deliveries.len(),
        3,
        "first delivery and two retries: {lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| message_of(l) == "attempt failed")
            .count(),
        3
    );
    for line in &lines {
        assert_eq!(
            line["span"]["trace_id"],
            trace.as_str(),
            "every log line of the send carries its trace id: {line}"
        );
    }
    // The first delivery's parent is the intake's span; each retry's parent is the delivery
    // that scheduled it, so the spans chain.
    let delivery_spans: Vec<(String, String)> = deliveries
        .iter()
        .map(|l| {
            (
                l["span"]["span_id"].as_str().unwrap_or("").to_owned(),
                l["span"]["parent_span_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(delivery_spans[0].1, intake_span);
    assert_eq!(delivery_spans[1].1, delivery_spans[0].0);
    assert_eq!(delivery_spans[2].1, delivery_spans[1].0);
    app.cleanup().await;
}

#[tokio::test]
async fn the_amqp_message_carries_the_traceparent_and_an_invalid_one_starts_a_new_trace() {
    let app = TestApp::spawn_with(Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let (incoming, trace, _) = new_trace();
    let valid = send_traced(&app, &incoming).await;
    assert_eq!(valid.status(), 202);
    let valid_header = response_traceparent(&valid);
    let invalid = send_traced(
        &app,
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    )
    .await;
    assert_eq!(invalid.status(), 202, "an invalid traceparent is ignored");
    let invalid_header = response_traceparent(&invalid);
    let (fresh_trace, _) = split_traceparent(&invalid_header);
    assert_ne!(fresh_trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(fresh_trace, trace);

    let conn = app.amqp().await;
    let ch = conn.create_channel().await.expect("channel");
    let mut seen = Vec::new();
    while let Some(msg) = ch
        .basic_get(
            app.topology()
                .lane_queue(Channel::Sms, communication::domain::Priority::Normal)
                .into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic_get")
    {
        seen.push(
            communication::queue::topology::header_str(
                msg.delivery.properties.headers().as_ref(),
                "traceparent",
            )
            .expect("message has a traceparent header"),
        );
    }
    let _ = conn.close(200, "done".into()).await;
    assert_eq!(seen, vec![valid_header, invalid_header]);
    app.cleanup().await;
}

#[tokio::test]
async fn a_direct_publish_keeps_its_traceparent_through_delivery_and_into_the_dead_letter() {
    crate::log_capture::install();
    let app = TestApp::spawn().await;
    app.system_provider("acme", "email", "refuses", "fail_permanent", 1)
        .await;
    let (incoming, trace, parent) = new_trace();
    let id = Uuid::new_v4();
    let env = envelope(
        "acme",
        id,
        "email",
        "ada@example.com",
        json!({"subject": "Hi", "text": "Hello"}),
    );
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), text(&incoming));
    let conn = app.amqp().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(Default::default())
        .await
        .expect("confirm");
    app.topology().declare(&ch).await.expect("declare");
    let confirm = ch
        .basic_publish(
            app.topology().send_exchange().into(),
            "email".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &serde_json::to_vec(&env).expect("json"),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
    let _ = conn.close(200, "done".into()).await;

    let id = id.to_string();
    app.wait_for_status("acme", &id, &["failed"]).await;
    let lines = wait_for_log(&id, "delivery started").await;
    let started: Vec<&Value> = lines
        .iter()
        .filter(|l| message_of(l) == "delivery started")
        .collect();
    assert_eq!(started.len(), 1, "{lines:?}");
    assert_eq!(started[0]["span"]["trace_id"], trace.as_str());
    assert_eq!(started[0]["span"]["parent_span_id"], parent.as_str());
    let delivery_span = started[0]["span"]["span_id"]
        .as_str()
        .expect("span id")
        .to_owned();
    for line in &lines {
        assert_eq!(line["span"]["trace_id"], trace.as_str(), "{line}");
    }

    // The dead letter stays in the trace, with the delivery's span as its parent.
    let conn = app.amqp().await;
    let ch = conn.create_channel().await.expect("channel");
    let dead = ch
        .basic_get(
            app.topology().dead_queue().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic_get")
        .expect("a dead letter");
    let header = communication::queue::topology::header_str(
        dead.delivery.properties.headers().as_ref(),
        "traceparent",
    )
    .expect("dead letter has a traceparent");
    let _ = conn.close(200, "done".into()).await;
    assert_eq!(split_traceparent(&header), (trace, delivery_span));
    app.cleanup().await;
}

/// The value of the sample `name{…}` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_part, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (l, v) = r.split_once("} ")?;
                (l, v)
            }
            None => ("", rest.strip_prefix(' ')?),
        };
        let all = labels
            .iter()
            .all(|(k, v)| label_part.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        if all { value.trim().parse().ok() } else { None }
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn metrics_expose_requests_publishes_deliveries_retries_failovers_dead_letters_and_db_writes()
{
    let port = free_port();
    let app = TestApp::spawn_with(Options {
        vars: vec![(
            "COMMUNICATION_WORKER_METRICS_ADDR",
            format!("127.0.0.1:{port}"),
        )],
        worker: true,
    })
    .await;
    app.system_provider("acme", "sms", "flaky", "fail_transient", 1)
        .await;
    app.system_provider("acme", "sms", "steady", "deliver", 2)
        .await;
    let id = app.send_sms("acme", "metrics please").await;
    app.wait_for_status("acme", &id, &["sent"]).await;
    // A tenant whose only provider refuses: failed, with the provider's kind.
    app.system_provider("umbrella", "sms", "refuses", "fail_permanent", 1)
        .await;
    let failed = app.send_sms("umbrella", "metrics please").await;
    app.wait_for_status("umbrella", &failed, &["failed"]).await;
    // An envelope that fails validation is dead-lettered.
    app.publish_raw("sms", br#"{"version": 1, "id": "nope"}"#)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.drain_dead().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A send over the tenant's daily quota is refused and counted by reason.
    let r = app
        .as_tenant(reqwest::Method::PUT, "/v1/limits", "initech")
        .json(&json!({"daily_quota": {"sms": 1}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    app.send_sms("initech", "within the quota").await;
    let r = app
        .send(
            "initech",
            json!({"channel": "sms", "to": "+14155550100", "content": {"text": "over"}}),
        )
        .await;
    assert_eq!(r.status(), 429);

    let r = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "/metrics needs no credentials");
    let text = r.text().await.expect("text");
    let positive = |name: &str, labels: &[(&str, &str)]| {
        let v = sample(&text, name, labels);
        assert!(
            v.is_some_and(|v| v > 0.0),
            "{name} {labels:?} missing or zero in:\n{text}"
        );
    };
    positive(
        "communication_http_requests_total",
        &[("method", "POST"), ("route", "/v1/send"), ("status", "202")],
    );
    positive(
        "communication_http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/v1/messages/{id}"),
            ("status", "200"),
        ],
    );
    positive(
        "communication_http_request_seconds_count",
        &[("route", "/v1/send")],
    );
    positive("communication_publish_confirm_seconds_count", &[]);
    positive(
        "communication_publish_confirm_seconds_bucket",
        &[("le", "+Inf")],
    );
    positive(
        "communication_deliveries_total",
        &[("channel", "sms"), ("kind", "system"), ("outcome", "sent")],
    );
    positive(
        "communication_provider_call_seconds_bucket",
        &[("kind", "system"), ("le", "+Inf")],
    );
    positive(
        "communication_deliveries_total",
        &[
            ("channel", "sms"),
            ("kind", "system"),
            ("outcome", "failed"),
        ],
    );
    positive("communication_retries_total", &[("kind", "system")]);
    positive("communication_failovers_total", &[("kind", "system")]);
    positive("communication_dead_letters_total", &[]);
    positive("communication_accept_to_sent_seconds_count", &[]);
    positive("communication_db_batch_seconds_count", &[]);
    positive("communication_accepted_total", &[("channel", "sms")]);
    positive(
        "communication_intake_refused_total",
        &[("reason", "quota_exceeded")],
    );
    // Lanes: the wait in the lane (publish → consume), and the retries re-laned by the router.
    positive(
        "communication_queue_wait_seconds_count",
        &[("channel", "sms"), ("lane", "normal")],
    );
    positive(
        "communication_routed_total",
        &[("channel", "sms"), ("lane", "normal")],
    );
    assert!(
        sample(&text, "communication_worker_in_flight", &[]).is_some(),
        "worker in-flight gauge missing"
    );
    // A request to no route is counted without its raw path.
    let r = app
        .http
        .get(app.url(&format!("/nowhere/{}", Uuid::new_v4())))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let text = app.metrics_text().await;
    assert!(
        sample(
            &text,
            "communication_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        )
        .is_some()
    );
    assert!(!text.contains("/nowhere/"));

    // The worker's own listener: liveness and the same metrics, without credentials.
    let worker = format!("http://127.0.0.1:{port}");
    let health = app
        .http
        .get(format!("{worker}/healthz"))
        .send()
        .await
        .expect("worker healthz");
    assert_eq!(health.status(), 200);
    let ready = app
        .http
        .get(format!("{worker}/readyz"))
        .send()
        .await
        .expect("worker readyz");
    assert_eq!(
        ready.status(),
        200,
        "a consuming worker with Postgres is ready"
    );
    let worker_metrics = app
        .http
        .get(format!("{worker}/metrics"))
        .send()
        .await
        .expect("worker metrics")
        .text()
        .await
        .expect("text");
    assert!(sample(&worker_metrics, "communication_worker_in_flight", &[]).is_some());
    assert!(
        sample(
            &worker_metrics,
            "communication_deliveries_total",
            &[("outcome", "sent")]
        )
        .is_some()
    );
    app.cleanup().await;
}

/// The operations a client of this service relies on (DESIGN.md's HTTP API).
const DESIGNED: &[(&str, &str)] = &[
    ("post", "/v1/send"),
    ("get", "/v1/messages"),
    ("get", "/v1/messages/{id}"),
    ("post", "/v1/providers"),
    ("get", "/v1/providers"),
    ("get", "/v1/providers/{id}"),
    ("patch", "/v1/providers/{id}"),
    ("delete", "/v1/providers/{id}"),
    ("post", "/v1/providers/{id}/test"),
    ("get", "/v1/provider-kinds"),
    ("post", "/v1/api-keys"),
    ("get", "/v1/api-keys"),
    ("delete", "/v1/api-keys/{id}"),
    ("get", "/v1/stats"),
    ("get", "/v1/stats/providers"),
    ("get", "/v1/dead-letters"),
    ("post", "/v1/dead-letters/replay"),
    ("post", "/v1/dead-letters/{id}/replay"),
    ("post", "/v1/webhooks/{kind}/{provider_id}"),
    ("get", "/v1/suppressions"),
    ("post", "/v1/suppressions"),
    ("delete", "/v1/suppressions/{id}"),
    ("post", "/v1/webhook-endpoints"),
    ("get", "/v1/webhook-endpoints"),
    ("get", "/v1/webhook-endpoints/{id}"),
    ("patch", "/v1/webhook-endpoints/{id}"),
    ("delete", "/v1/webhook-endpoints/{id}"),
    ("get", "/v1/webhook-endpoints/{id}/attempts"),
    (
        "post",
        "/v1/webhook-endpoints/{id}/attempts/{attempt_id}/retry",
    ),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_documents_the_errors() {
    let app = TestApp::spawn_with(Options {
        worker: false,
        ..Default::default()
    })
    .await;
    let r = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "/openapi.json needs no credentials");
    let doc: Value = r.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");

    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        for m in METHODS {
            if let Some(op) = item.get(*m) {
                documented.insert((m.to_string(), path.clone()));
                // Generated clients name their calls after these: each route has its own.
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(
                    operation_ids.insert(id.clone()),
                    "{m} {path}: operationId {id:?} is missing or used by another route"
                );
            }
        }
    }
    // Every route the router registers is in the document: the router is built from the
    // document's own route list, so enumerate that list and compare.
    let (_, from_routes) = communication::intake::documented_routes().split_for_parts();
    let registered: BTreeSet<(String, String)> = from_routes
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            let item = serde_json::to_value(item).unwrap_or(Value::Null);
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_string(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(documented, registered);
    for (m, p) in DESIGNED {
        assert!(
            documented.contains(&(m.to_string(), p.to_string())),
            "{m} {p} is not documented"
        );
    }

    // Each documented operation is really served (not the 404 fallback, not a 405).
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", &Uuid::new_v4().to_string())
            .replace("{provider_id}", &Uuid::new_v4().to_string())
            .replace("{kind}", "twilio");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("m");
        let r = app
            .http
            .request(method.clone(), app.url(&concrete))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        assert_ne!(
            body["detail"], "route not found",
            "{method} {path} is documented but not routed"
        );
    }

    // Errors: problem+json everywhere, and the statuses each kind of operation can answer.
    let problem_ref = "#/components/schemas/Problem";
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    for (method, path) in &documented {
        let op = &paths[path.as_str()][method.as_str()];
        let responses = op["responses"].as_object().expect("responses");
        for (status, response) in responses {
            if status.starts_with('4') || (status.starts_with('5') && path != "/readyz") {
                let content = &response["content"]["application/problem+json"]["schema"];
                assert_eq!(
                    content["$ref"], problem_ref,
                    "{method} {path} {status} is not documented as problem+json"
                );
            }
        }
        let has = |s: &str| responses.contains_key(s);
        if path.starts_with("/v1/") {
            assert!(has("500") && has("503"), "{method} {path}: 500/503");
            if !path.starts_with("/v1/webhooks/") {
                assert!(has("401") && has("403"), "{method} {path}: 401/403");
            } else {
                assert!(has("401"), "{method} {path}: bad signature");
            }
            if op.get("requestBody").is_some() {
                assert!(has("400") && has("413"), "{method} {path}: body errors");
                assert!(has("422"), "{method} {path}: validation");
            }
            if path.contains("{id}") {
                assert!(has("404"), "{method} {path}: 404");
            }
        }
    }
    // /v1/send documents its idempotency conflict and the headers it reads.
    let send = &paths["/v1/send"]["post"];
    assert!(send["responses"]["409"].is_object());
    let params: Vec<&str> = send["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"Idempotency-Key") && params.contains(&"traceparent"));
    // Authenticated operations say so; the probes and the webhooks do not need the bearer.
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    app.cleanup().await;
}

/// Upper-case names with an underscore (`DATABASE_URL`, `COMMUNICATION_…`) in `text`.
fn variable_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| {
            w.contains('_')
                && w.len() > 3
                && w.starts_with(|c: char| c.is_ascii_uppercase())
                && !w.ends_with('_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_deploy_files_set_only_variables_the_service_reads_and_all_it_requires() {
    let root = env!("CARGO_MANIFEST_DIR");
    let read = |p: &str| {
        std::fs::read_to_string(format!("{root}/{p}")).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    // What the service reads: quoted names in the configuration (src/config/) and telemetry
    // code, plus
    // RUST_LOG (tracing-subscriber's EnvFilter).
    let mut sources = vec!["src/telemetry.rs".to_owned()];
    for entry in std::fs::read_dir(format!("{root}/src/config"))
        .expect("src/config")
        .flatten()
    {
        sources.push(format!(
            "src/config/{}",
            entry.file_name().to_string_lossy()
        ));
    }
    let mut known: BTreeSet<String> = sources
        .iter()
        .flat_map(|p| {
            read(p)
                .split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    known.insert("RUST_LOG".into());
    // Names that belong to other images or to the compose file itself.
    let foreign = ["POSTGRES_PASSWORD", "POSTGRES_DB"];

    let mut files = vec!["docker-compose.yml".to_owned()];
    let dir = std::fs::read_dir(format!("{root}/deploy/k8s")).expect("deploy/k8s");
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            files.push(format!("deploy/k8s/{name}"));
        }
    }
    assert!(files.len() >= 6, "{files:?}");
    for file in &files {
        let names = variable_names(&read(file));
        for name in &names {
            assert!(
                known.contains(name) || foreign.contains(&name.as_str()),
                "{file} sets {name}, which the service does not read"
            );
        }
    }
    let k8s: String = files
        .iter()
        .filter(|f| f.starts_with("deploy/"))
        .map(|f| read(f))
        .collect();
    let compose = read("docker-compose.yml");
    for required in [
        "DATABASE_URL",
        "REDIS_URL",
        "AMQP_URL",
        "ENCRYPTION_SECRET",
        "COMMUNICATION_SERVICE_TOKEN",
        "COMMUNICATION_LISTEN_ADDR",
        "COMMUNICATION_WORKER_METRICS_ADDR",
    ] {
        assert!(
            variable_names(&k8s).contains(required),
            "k8s lacks {required}"
        );
        assert!(
            variable_names(&compose).contains(required),
            "compose lacks {required}"
        );
    }
    // KEDA watches every work queue (entry and lanes) of the default namespace `communication`.
    let topology = communication::queue::Topology::new(
        "communication",
        &communication::config::RetryPolicy::default(),
    );
    for queue in topology.work_queues() {
        assert!(
            k8s.contains(&format!("queueName: {queue}\n")),
            "KEDA does not scale on {queue}"
        );
    }
}

#[tokio::test]
async fn a_worker_is_ready_only_while_it_consumes_and_postgres_answers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (db_name, pool) = common::create_database().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let consuming = Arc::new(AtomicBool::new(false));
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(communication::telemetry::serve_worker_endpoints(
        listener,
        stop.clone(),
        consuming.clone(),
        pool.clone(),
    ));
    let http = reqwest::Client::new();
    let readyz = |http: reqwest::Client| async move {
        let r = http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.expect("json"))
    };
    let (status, body) = readyz(http.clone()).await;
    assert_eq!(
        (status, body["rabbitmq"].as_str()),
        (503, Some("down")),
        "{body}"
    );
    assert_eq!(body["postgres"], "ok", "{body}");
    consuming.store(true, Ordering::Relaxed);
    let (status, body) = readyz(http.clone()).await;
    assert_eq!(status, 200, "{body}");
    pool.close().await;
    let (status, body) = readyz(http.clone()).await;
    assert_eq!(
        (status, body["postgres"].as_str()),
        (503, Some("down")),
        "{body}"
    );
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        health.status(),
        200,
        "liveness does not depend on the dependencies"
    );
    stop.cancel();
    let _ = server.await;
    common::drop_database(&db_name).await;
}

#[tokio::test]
async fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    // `serve` logs at start-up without needing any service: the pool connects lazily and an
    // unreachable broker is only a warning. Its stderr is a pipe here, not a terminal.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_communication"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("ENCRYPTION_SECRET", common::test_key())
        .env("COMMUNICATION_SERVICE_TOKEN", common::SERVICE_TOKEN)
        .env(
            "COMMUNICATION_LISTEN_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run the communication binary");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains("intake listening");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    let _ = child.kill().await;
    assert_eq!(listening, Ok(true), "no start-up log line: {seen:?}");
    for line in &seen {
        assert!(
            !line.contains('\u{1b}'),
            "ANSI escape in a piped log line: {line:?}"
        );
    }
}
