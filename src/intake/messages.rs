//! `GET /v1/messages/{id}` and `GET /v1/messages`: a tenant's messages and their events.
//! The structs below are what the handlers read and answer, and what OpenAPI documents.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiErrors, NotFoundError};
use super::idempotency;
use super::json::{FieldProblem, RequestFields};
use super::query::{self, QueryParams};
use super::send::QueuedMarker;
use crate::domain::{Channel, FieldError, MessageStatus, Recipient};
use crate::store::messages::{self as store, EventRow, MessageFilter, MessageRow};

/// One step of a message's life.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// accepted, attempt, retry_scheduled, failover, sent, delivered, undelivered, bounced,
    /// failed, expired, suppressed, dead_lettered.
    pub r#type: String,
    pub provider_id: Option<Uuid>,
    pub detail: Option<Value>,
    pub at: DateTime<Utc>,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> EventView {
        EventView {
            r#type: e.kind,
            provider_id: e.provider_id,
            detail: e.detail,
            at: e.created_at,
        }
    }
}

/// A message and (on `GET /v1/messages/{id}`) its ordered events.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    /// queued, sending, sent, delivered, undelivered, bounced, failed, expired, suppressed.
    pub status: String,
    #[schema(value_type = Channel)]
    pub channel: String,
    pub to: String,
    pub provider_id: Option<Uuid>,
    pub provider_kind: Option<String>,
    pub provider_message_id: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub metadata: Option<Value>,
    pub ttl_seconds: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Only on `GET /v1/messages/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventView>>,
}

impl MessageView {
    fn of_row(row: MessageRow, events: Option<Vec<EventView>>) -> MessageView {
        MessageView {
            id: row.id,
            status: row.status,
            channel: row.channel,
            to: row.recipient,
            provider_id: row.provider_id,
            provider_kind: row.provider_kind,
            provider_message_id: row.provider_message_id,
            attempts: row.attempts,
            last_error: row.last_error,
            idempotency_key: row.idempotency_key,
            metadata: row.metadata,
            ttl_seconds: row.ttl_seconds,
            created_at: row.created_at,
            updated_at: row.updated_at,
            sent_at: row.sent_at,
            completed_at: row.completed_at,
            events,
        }
    }

    /// Accepted, not yet recorded by a worker: what the intake's marker knows.
    fn queued(id: Uuid, marker: QueuedMarker) -> MessageView {
        MessageView {
            id,
            status: MessageStatus::Queued.as_str().to_owned(),
            channel: marker.channel.as_str().to_owned(),
            to: marker.to,
            provider_id: None,
            provider_kind: None,
            provider_message_id: None,
            attempts: 0,
            last_error: None,
            idempotency_key: None,
            metadata: None,
            ttl_seconds: None,
            created_at: marker.created_at,
            updated_at: marker.created_at,
            sent_at: None,
            completed_at: None,
            events: Some(Vec::new()),
        }
    }
}

/// A page of `GET /v1/messages`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<MessageView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    operation_id = "get_message",
    tag = "messages",
    summary = "A message with its events",
    params(("id" = Uuid, Path, description = "The resource id")),
    responses(
        (status = 200, description = "The message (`queued` while only accepted)", body = MessageView),
        ApiErrors,
        NotFoundError,
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let tenant = caller.tenant()?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("message"))?;
    let row = store::get_message(&state.pool, tenant.as_str(), id)
        .await
        .map_err(|e| ApiError::database("get message", e))?;
    if let Some(row) = row {
        let events = store::list_events(&state.pool, id)
            .await
            .map_err(|e| ApiError::database("list events", e))?;
        let events = events.into_iter().map(EventView::from).collect();
        return Ok(Json(MessageView::of_row(row, Some(events))));
    }
    // Accepted but not yet recorded by a worker (a backlog): the intake's marker says so.
    let marker = idempotency::marker_key(&state.namespace, tenant.as_str(), id);
    let found = match state.redis.get().await {
        Ok(mut conn) => idempotency::get_marker(&mut conn, &marker)
            .await
            .ok()
            .flatten(),
        Err(_) => None,
    };
    match found.map(|m| serde_json::from_str::<QueuedMarker>(&m)) {
        Some(Ok(marker)) => Ok(Json(MessageView::queued(id, marker))),
        Some(Err(e)) => {
            tracing::warn!(message_id = %id, error = %e, "unreadable queued marker");
            Err(ApiError::not_found("message"))
        }
        None => Err(ApiError::not_found("message")),
    }
}

/// Where a page ends: the last row's `(created_at, id)`, opaque to callers.
#[derive(Debug, Clone, Copy)]
pub struct MessageCursor(DateTime<Utc>, Uuid);

impl MessageCursor {
    fn of(row: &MessageRow) -> MessageCursor {
        MessageCursor(row.created_at, row.id)
    }

    fn encode(self) -> String {
        query::encode_time_cursor(self.0, self.1)
    }

    fn decode(s: &str) -> Option<MessageCursor> {
        let (at, id) = query::decode_time_cursor(s)?;
        Some(MessageCursor(at, id))
    }
}

impl<'de> Deserialize<'de> for MessageCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        MessageCursor::decode(&s).ok_or_else(|| serde::de::Error::custom("not a cursor"))
    }
}

/// Most messages one page holds, and the default.
const MAX_PAGE: i64 = 200;
const DEFAULT_PAGE: i64 = 50;

/// The filters of `GET /v1/messages`; an unknown one is refused.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// Only this status.
    #[param(value_type = Option<String>)]
    pub status: Option<MessageStatus>,
    /// email or sms.
    #[param(value_type = Option<Channel>)]
    pub channel: Option<Channel>,
    /// Only messages sent (or last tried) through this provider.
    pub provider_id: Option<Uuid>,
    /// Exactly this recipient. With `channel`, it must be one of that channel (an email
    /// address, an E.164 number); without, it is matched as given (trimmed).
    #[param(example = "+14155550100")]
    pub to: Option<String>,
    /// RFC 3339, inclusive.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub until: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<MessageCursor>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

impl RequestFields for MessageQuery {
    fn field_error(problem: &FieldProblem) -> FieldError {
        let message = match problem.field() {
            "status" => "is not a message status",
            "channel" => "must be email or sms",
            "provider_id" => "must be a UUID",
            "since" | "until" => "must be an RFC 3339 time",
            "cursor" => "is not a cursor from this API",
            "limit" => "must be 1 to 200",
            _ => return problem.generic(),
        };
        FieldError::new(problem.field(), message)
    }
}

impl MessageQuery {
    /// The store's filter and the page size, or a 400 naming each bad parameter.
    fn into_filter(self) -> Result<(MessageFilter, i64), ApiError> {
        let mut errors = Vec::new();
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            errors.push(FieldError::new("limit", "must be 1 to 200"));
        }
        let recipient =
            self.to
                .as_deref()
                .and_then(|to| match recipient_filter(self.channel, to) {
                    Ok(recipient) => Some(recipient),
                    Err(message) => {
                        errors.push(FieldError::new("to", message));
                        None
                    }
                });
        if !errors.is_empty() {
            return Err(query::invalid(errors));
        }
        let filter = MessageFilter {
            status: self.status.map(|s| s.as_str().to_owned()),
            channel: self.channel.map(|c| c.as_str().to_owned()),
            provider_id: self.provider_id,
            recipient,
            since: self.since,
            until: self.until,
            before: self.cursor.map(|c| (c.0, c.1)),
        };
        Ok((filter, limit))
    }
}

/// The recipient as the send path records it: parsed for `channel` when given (a bad one is
/// refused as a send would refuse it), else as given, trimmed.
fn recipient_filter(channel: Option<Channel>, to: &str) -> Result<String, String> {
    match channel {
        // A `+` left unencoded in a query string arrives as a space.
        Some(Channel::Sms) if to.starts_with(' ') && !to.trim().starts_with('+') => {
            Err("must be an E.164 number; write its '+' as %2B in a query string".into())
        }
        Some(channel) => Recipient::parse(channel, to).map(|r| r.as_str().to_owned()),
        None if to.trim().is_empty() => Err("must not be empty".into()),
        None => Ok(to.trim().to_owned()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/messages",
    operation_id = "list_messages",
    tag = "messages",
    summary = "List messages, newest first",
    params(MessageQuery),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        ApiErrors,
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(query): QueryParams<MessageQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let tenant = caller.tenant()?;
    let (filter, limit) = query.into_filter()?;
    let mut rows = store::list_messages(&state.pool, tenant.as_str(), &filter, limit + 1)
        .await
        .map_err(|e| ApiError::database("list messages", e))?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(|r| MessageCursor::of(r).encode())
    } else {
        None
    };
    Ok(Json(MessagePage {
        items: rows
            .into_iter()
            .map(|r| MessageView::of_row(r, None))
            .collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_filter_is_a_400_naming_it() {
        let cases = [
            ("status=lost", "status", "is not a message status"),
            ("channel=fax", "channel", "must be email or sms"),
            ("since=yesterday", "since", "must be an RFC 3339 time"),
            ("until=2026-13-01", "until", "must be an RFC 3339 time"),
            ("cursor=nope", "cursor", "is not a cursor from this API"),
            ("limit=many", "limit", "must be 1 to 200"),
            ("provider_id=nope", "provider_id", "must be a UUID"),
            ("to=a&to=b", "to", "is given more than once"),
            ("colour=red", "colour", "is not a known filter"),
            (
                "status=sent&status=failed",
                "status",
                "is given more than once",
            ),
        ];
        for (q, field, message) in cases {
            let e = query::parse_query::<MessageQuery>(q).expect_err(q);
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{q}");
            assert_eq!(e.errors, [FieldError::new(field, message)], "{q}");
        }
        for q in ["limit=0", "limit=201"] {
            let parsed = query::parse_query::<MessageQuery>(q).expect("parses");
            let e = parsed.into_filter().expect_err(q);
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{q}");
            assert_eq!(e.errors, [FieldError::new("limit", "must be 1 to 200")]);
        }
    }

    fn refused_recipient(q: &str) -> Vec<FieldError> {
        let parsed = query::parse_query::<MessageQuery>(q).expect("parses");
        let e = parsed.into_filter().expect_err(q);
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{q}");
        e.errors
    }

    #[test]
    fn a_recipient_is_refused_as_the_send_path_would_refuse_it() {
        let e164 = crate::domain::PhoneNumber::parse("14155550100").expect_err("no plus");
        let email = crate::domain::EmailAddress::parse("ada").expect_err("no at");
        for (q, message) in [
            ("channel=sms&to=14155550100", e164.as_str()),
            ("channel=email&to=ada", email.as_str()),
            (
                "channel=sms&to=+14155550100",
                "must be an E.164 number; write its '+' as %2B in a query string",
            ),
            ("to=%20", "must not be empty"),
        ] {
            assert_eq!(
                refused_recipient(q),
                [FieldError::new("to", message)],
                "{q}"
            );
        }
        // Every bad parameter at once.
        let e = refused_recipient("channel=sms&to=x&limit=0");
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "to"]);
    }

    #[test]
    fn a_recipient_filter_is_the_recorded_form() {
        let filter = |q: &str| {
            query::parse_query::<MessageQuery>(q)
                .expect("parses")
                .into_filter()
                .expect("valid")
                .0
        };
        let provider = Uuid::now_v7();
        let f = filter(&format!(
            "provider_id={provider}&channel=sms&to=%2B14155550100%20"
        ));
        assert_eq!(f.provider_id, Some(provider));
        assert_eq!(f.recipient.as_deref(), Some("+14155550100"));
        let f = filter("channel=email&to=Ada%40Example.com");
        assert_eq!(f.recipient.as_deref(), Some("Ada@Example.com"));
        // Without a channel, as given (trimmed): a dead-lettered raw recipient is findable.
        let f = filter("to=%20not-an-address");
        assert_eq!(f.recipient.as_deref(), Some("not-an-address"));
        assert_eq!(f.channel, None);
    }

    #[test]
    fn good_filters_become_the_stores_filter() {
        let cursor = MessageCursor(Utc::now(), Uuid::now_v7()).encode();
        let q = format!(
            "status=sent&channel=sms&since=2026-11-01T00:00:00Z&until=2026-11-02T00:00:00%2B01:00&limit=7&cursor={cursor}"
        );
        let (filter, limit) = query::parse_query::<MessageQuery>(&q)
            .expect("parses")
            .into_filter()
            .expect("valid");
        assert_eq!(limit, 7);
        assert_eq!(filter.status.as_deref(), Some("sent"));
        assert_eq!(filter.channel.as_deref(), Some("sms"));
        assert_eq!(
            filter.until.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-11-01T23:00:00+00:00")
        );
        assert!(filter.before.is_some());
        let (_, limit) = query::parse_query::<MessageQuery>("")
            .expect("parses")
            .into_filter()
            .expect("valid");
        assert_eq!(limit, DEFAULT_PAGE);
    }
}
