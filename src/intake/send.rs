//! `POST /v1/send`: validate; claim the idempotency key, admit under the tenant's limits
//! (`crate::limits`) and decide the lane (`crate::lanes`) in one Redis script (`send_gate`);
//! publish with a confirm, answer 202.
//! Never touches Postgres. [`SendRequest`] and [`SendAccepted`] are what the handler reads and
//! answers, and what OpenAPI documents.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors, BodyErrors};
use super::idempotency;
use super::json::{FieldProblem, JsonBody, ProblemKind, RequestFields};
use super::send_gate::{self, Outcome};
use crate::domain::{
    Channel, Content, FieldError, MAX_TTL_SECONDS, MessageDraft, Priority, TenantId, ValidMessage,
    check_idempotency_key,
};
use crate::limits::{LimitsGate, Refusal};
use crate::queue::topology::stamp_published_at;
use crate::queue::{Envelope, PublishError, Topology};
use crate::trace_context::{self, TraceContext};
use tracing::Instrument;

/// What a message says. Email needs `subject` and `text` and/or `html`; SMS needs `text`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageContent {
    /// Email only; required for email.
    pub subject: Option<String>,
    /// Required for SMS; for email, `text` and/or `html`.
    pub text: Option<String>,
    /// Email only.
    pub html: Option<String>,
}

impl From<MessageContent> for Content {
    fn from(c: MessageContent) -> Content {
        Content {
            subject: c.subject,
            text: c.text,
            html: c.html,
        }
    }
}

// Every field is optional to serde, so that a missing one is reported by the domain's rules
// together with every other problem; the document marks the required ones.
/// Body of `POST /v1/send`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    #[schema(value_type = Channel)]
    pub channel: Option<String>,
    /// An email address or an E.164 phone number, matching `channel`.
    #[schema(value_type = String, example = "+14155550100")]
    pub to: Option<String>,
    #[schema(value_type = MessageContent)]
    pub content: Option<MessageContent>,
    /// Pin one of the tenant's providers.
    pub provider_id: Option<Uuid>,
    /// A JSON object (at most 8 KiB), stored with the message and passed to providers that
    /// accept tags.
    pub metadata: Option<Value>,
    /// After this many seconds the message is `expired` instead of sent.
    #[schema(minimum = 1, maximum = 604800)]
    pub ttl_seconds: Option<u64>,
    /// `high` for one-time codes and security mail, `normal` (default), `bulk` for receipts
    /// and newsletters. Beyond a tenant's fair share per second, its messages move down a lane.
    #[schema(value_type = Option<Priority>)]
    #[serde(default, deserialize_with = "priority_field")]
    pub priority: Option<Priority>,
}

/// `priority` read as a string first: serde_json reports a number where an enum is expected
/// as a syntax error (a 400 "not JSON"), where the caller should hear which field is wrong.
fn priority_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Priority>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    Priority::parse(&s)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("unknown priority"))
}

impl RequestFields for SendRequest {
    fn field_error(problem: &FieldProblem) -> FieldError {
        let wrong_type = matches!(problem.kind, ProblemKind::WrongType { .. });
        match problem.field() {
            "content" if problem.path == "content" && wrong_type => {
                FieldError::new("content", "must be a JSON object")
            }
            "content" if problem.path != "content" => FieldError::new(
                "content",
                format!(
                    "must hold only subject, text and html strings ({})",
                    problem.message
                ),
            ),
            "provider_id" if wrong_type && !problem.message.starts_with("invalid type: string") => {
                FieldError::new("provider_id", "must be a string")
            }
            "provider_id" => FieldError::new("provider_id", "must be a UUID"),
            "ttl_seconds" => FieldError::new("ttl_seconds", TTL_RANGE),
            "priority" => FieldError::new("priority", PRIORITY_VALUES),
            _ => problem.generic(),
        }
    }
}

const TTL_RANGE: &str = "must be an integer between 1 and 604800";
const PRIORITY_VALUES: &str = "must be one of high, normal, bulk";

impl SendRequest {
    /// SHA-256 of the body's canonical JSON (fields in alphabetical order, absent ones left
    /// out, `metadata`'s keys sorted): the same bytes serde_json's sorted map gave the earlier
    /// reader, so a key claimed before an upgrade still matches its replay. `priority` is in
    /// it only when given, so a body without it hashes as it did before lanes existed.
    fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct CanonicalContent<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            html: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            subject: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            text: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Canonical<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            channel: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            content: Option<CanonicalContent<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            metadata: Option<&'a Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            priority: Option<&'static str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            provider_id: Option<&'a Uuid>,
            #[serde(skip_serializing_if = "Option::is_none")]
            to: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            ttl_seconds: Option<u64>,
        }
        let canonical = Canonical {
            channel: self.channel.as_deref(),
            content: self.content.as_ref().map(|c| CanonicalContent {
                html: c.html.as_deref(),
                subject: c.subject.as_deref(),
                text: c.text.as_deref(),
            }),
            metadata: self.metadata.as_ref(),
            priority: self.priority.map(Priority::as_str),
            provider_id: self.provider_id.as_ref(),
            to: self.to.as_deref(),
            ttl_seconds: self.ttl_seconds,
        };
        let mut hasher = HashWriter(Sha256::new());
        // Writing into a hasher cannot fail, nor can serializing these types.
        let _ = serde_json::to_writer(&mut hasher, &canonical);
        hex::encode(hasher.0.finalize())
    }

    /// The domain's draft; `edge_errors` gets the problems found here (a TTL out of range is
    /// reported in the words of the edge, once).
    fn into_draft(
        self,
        idempotency_key: Option<String>,
        edge_errors: &mut Vec<FieldError>,
    ) -> MessageDraft {
        let ttl_seconds = match self.ttl_seconds {
            Some(t) if t == 0 || t > MAX_TTL_SECONDS => {
                edge_errors.push(FieldError::new("ttl_seconds", TTL_RANGE));
                None
            }
            other => other,
        };
        MessageDraft {
            channel: self.channel,
            to: self.to,
            content: self.content.map(Content::from),
            provider_id: self.provider_id,
            metadata: self.metadata,
            ttl_seconds,
            idempotency_key,
        }
    }
}

/// Feeds serialized bytes straight into the hash (no intermediate buffer).
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `202`: accepted; delivery happens asynchronously.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendAccepted {
    pub id: Uuid,
    #[schema(value_type = String, example = "queued")]
    pub status: &'static str,
}

fn accepted(id: Uuid, replayed: bool) -> Response {
    let body = SendAccepted {
        id,
        status: "queued",
    };
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The short-lived Redis marker that lets `GET /v1/messages/{id}` answer `queued` before a
/// worker has recorded the message.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueuedMarker {
    pub channel: Channel,
    pub to: String,
    pub created_at: DateTime<Utc>,
}

/// The marker's JSON for `message`.
pub(super) fn queued_marker(message: &ValidMessage, created_at: DateTime<Utc>) -> String {
    let marker = QueuedMarker {
        channel: message.channel,
        to: message.to.as_str().to_owned(),
        created_at,
    };
    serde_json::to_string(&marker).unwrap_or_default()
}

/// Publishes a send straight to `lane` on `{ns}.send` (decided by the send's script as the
/// router would: `lanes::fair_share`) and waits for the broker's confirm (timed). The envelope
/// carries the priority asked for, so a retry is re-laned from it.
pub(super) async fn publish_send(
    state: &AppState,
    id: Uuid,
    tenant: &TenantId,
    message: &ValidMessage,
    priority: Option<Priority>,
    lane: Priority,
    created_at: DateTime<Utc>,
) -> Result<(), PublishError> {
    let mut envelope = Envelope::new(id, tenant, message, created_at);
    envelope.priority = priority;
    let mut headers = lapin::types::FieldTable::default();
    stamp_published_at(&mut headers);
    let started = Instant::now();
    let published = state
        .publisher
        .publish(
            &state.publisher.topology().send_exchange(),
            &Topology::lane_routing_key(message.channel, lane),
            &envelope.to_bytes(),
            headers,
            Some(&id.to_string()),
        )
        .await;
    metrics::histogram!("communication_publish_confirm_seconds")
        .record(started.elapsed().as_secs_f64());
    published
}

#[utoipa::path(
    post,
    path = "/v1/send",
    operation_id = "send_message",
    tag = "send",
    summary = "Accept a message for delivery",
    request_body = SendRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Replay-safe key (same key and body: same id)"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context to continue; an invalid one is ignored"),
        ("X-Tenant-Id" = Option<String>, Header, description = "The tenant, with the service token"),
    ),
    responses(
        (status = 202, description = "Accepted (confirmed by the broker); headers `traceparent`, and `Idempotent-Replayed: true` on a replay", body = SendAccepted),
        ApiErrors,
        BodyErrors,
        (status = 409, description = "Same Idempotency-Key still in flight", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's accept rate (`rate_limited`) or the channel's daily quota (`quota_exceeded`) set by the operator is reached; nothing was queued. `Retry-After` says when to try again (the next second, or UTC midnight)", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (see `errors`), or an Idempotency-Key reused with another body", body = super::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn send(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SendRequest>,
) -> Response {
    // A valid incoming `traceparent` is continued; an invalid or missing one starts a trace.
    let incoming = headers
        .get(trace_context::HEADER)
        .and_then(|v| v.to_str().ok());
    let trace = TraceContext::continue_from(incoming);
    let span = trace.send_span();
    let result = trace
        .scope(accept(state, caller, headers, body))
        .instrument(span)
        .await;
    let mut response = result.into_response();
    if let Ok(v) = HeaderValue::from_str(&trace.traceparent()) {
        response.headers_mut().insert(trace_context::HEADER, v);
    }
    response
}

async fn accept(
    state: Arc<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: SendRequest,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant()?.clone();
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().map_err(|_| {
                ApiError::validation(vec![FieldError::new(
                    "Idempotency-Key",
                    "must be visible ASCII text",
                )])
            })?;
            check_idempotency_key(key)
                .map_err(|m| ApiError::validation(vec![FieldError::new("Idempotency-Key", m)]))?;
            Some(key.to_owned())
        }
    };
    let fingerprint = body.fingerprint();
    let priority = body.priority;
    let mut errors = Vec::new();
    let draft = body.into_draft(idempotency_key.clone(), &mut errors);
    let message = match draft.validate() {
        Ok(m) if errors.is_empty() => m,
        Ok(_) => return Err(ApiError::validation(errors)),
        Err(more) => {
            // A field the edge already reported is not reported again by the domain.
            for e in more {
                if !errors.iter().any(|x| e.field.starts_with(&x.field)) {
                    errors.push(e);
                }
            }
            return Err(ApiError::validation(errors));
        }
    };

    let id = Uuid::now_v7();
    let created_at = Utc::now();
    let channel = message.channel;
    let marker = idempotency::marker_key(&state.namespace, tenant.as_str(), id);
    let marker_value = queued_marker(&message, created_at);
    let idem = idempotency_key
        .as_deref()
        .map(|k| idempotency::idem_key(&state.namespace, tenant.as_str(), k));
    let claim = idem.as_deref().map(|k| (k, fingerprint.as_str()));
    let requested = priority.unwrap_or_default();
    let lane_ask = state
        .lanes
        .ask(&tenant, channel, requested, created_at.timestamp());
    let limits = state.limits.limits(tenant.as_str()).await;

    // Redis: one script claims the key, admits the send under the tenant's limits, decides its
    // lane and leaves the queued marker (`send_gate`). If Redis is down, the send is still
    // accepted, unclaimed, unlimited, in the lane it asked for; the worker's unique
    // (tenant, idempotency_key) is the backstop.
    let ask = send_gate::SendAsk {
        namespace: &state.namespace,
        tenant: tenant.as_str(),
        channel,
        id,
        now: created_at,
        idempotency: claim,
        marker: &marker,
        marker_value: &marker_value,
        limits,
        lane: lane_ask.as_ref().ok(),
    };
    // `Err((asked, why))`: `asked` is false when Redis was not tried (resting after a failed
    // connect), so an outage counts one unanswered lane decision per try, not per send.
    let answer = match state.send_redis.link().await {
        Ok(mut link) => {
            let answer = send_gate::admit(&mut link.conn, &ask).await;
            if let Err(e) = &answer {
                state.send_redis.broken(&link, e);
            }
            answer
                .map(|outcome| (link, outcome))
                .map_err(|e| (true, e.to_string()))
        }
        Err(e) => Err((e.tried(), e.to_string())),
    };
    let (mut redis, counted, lane) = match answer {
        Ok((_, Outcome::Used(found))) => {
            if found.fingerprint != fingerprint {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request body",
                ));
            }
            if !found.done {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_flight",
                    "a request with this Idempotency-Key is still being processed",
                ));
            }
            metrics::counter!("communication_idempotent_replays_total").increment(1);
            return Ok(accepted(found.id, true));
        }
        Ok((_, Outcome::Refused(verdict))) => {
            let refusal = LimitsGate::refusal(verdict, channel, limits, created_at).unwrap_or(
                Refusal::RateLimited {
                    retry_after_secs: 1,
                },
            );
            return Err(super::limits::refuse(refusal));
        }
        Ok((link, Outcome::Accepted { counted, lane })) => {
            let lane = match (&lane_ask, lane) {
                (Ok(ask), Some(n)) => state.lanes.answered(channel, ask, n),
                (Ok(ask), None) => ask.requested,
                (Err(lane), _) => *lane,
            };
            (Some(link), Some(counted), lane)
        }
        Err((asked, e)) => {
            tracing::warn!(error = %e,
                "Redis unavailable; accepting without idempotency claim, limits or fair share");
            let lane = match &lane_ask {
                Ok(ask) if asked => state.lanes.unanswered(ask, &e),
                Ok(ask) => ask.requested,
                Err(lane) => *lane,
            };
            (None, None, lane)
        }
    };

    let published = publish_send(&state, id, &tenant, &message, priority, lane, created_at).await;
    if let Err(e) = published {
        tracing::warn!(message_id = %id, error = %e, "publish failed; send refused with 503");
        if let (Some(link), Some(counted)) = (redis.as_mut(), counted.as_ref())
            && let Err(re) = send_gate::undo(&mut link.conn, counted, &marker, claim, id).await
        {
            tracing::warn!(error = %re,
                "could not give back the counted send or release its idempotency claim");
        }
        return Err(ApiError::unavailable("the message broker"));
    }
    if let (Some(link), Some(idem)) = (redis.as_mut(), idem.as_deref())
        && let Err(e) = idempotency::complete(&mut link.conn, idem, &fingerprint, id).await
    {
        // The message is accepted; a retry with the key would answer 409 until the TTL ends.
        tracing::warn!(error = %e, "could not mark idempotency key done");
    }
    metrics::counter!("communication_accepted_total", "channel" => channel.as_str()).increment(1);
    tracing::debug!(message_id = %id, channel = channel.as_str(), "send accepted");
    Ok(accepted(id, false))
}

#[cfg(test)]
mod tests;
