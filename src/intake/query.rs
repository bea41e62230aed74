//! [`QueryParams<T>`]: a query string read into a typed struct. A problem is a 400
//! `validation_failed` naming the parameter (`limit: must be 1 to 200`): a bad value worded by
//! the type's [`RequestFields`]; an unknown parameter (a typo is not silently ignored) or one
//! given twice worded here.
//!
//! Also the one keyset cursor of the newest-first lists: `(time, id)` of the page's last row,
//! opaque to callers (URL-safe base64 of `rfc3339|uuid`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use super::json::{FieldProblem, ProblemKind, RequestFields};
use crate::domain::FieldError;

/// A query string read into `T` (see the module docs).
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: RequestFields> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or("")).map(QueryParams)
    }
}

/// Parses a query string into `T`; a problem is a 400 naming the parameter.
pub fn parse_query<T: RequestFields>(query: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    let e = match serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)) {
        Ok(params) => return Ok(params),
        Err(e) => e,
    };
    let problem = FieldProblem::new(e.path().to_string(), &e.inner().to_string());
    let error = match problem.kind {
        ProblemKind::UnknownField => FieldError::new(problem.path, "is not a known filter"),
        ProblemKind::Duplicate => problem.generic(),
        _ => T::field_error(&problem),
    };
    Err(invalid(vec![error]))
}

/// A refusal of parameters that parsed but do not go together (or out of range): 400.
pub fn invalid(errors: Vec<FieldError>) -> ApiError {
    let mut error = ApiError::validation(errors);
    error.status = axum::http::StatusCode::BAD_REQUEST;
    error
}

/// The cursor after a row of a newest-first list ordered by `(time, id)`.
pub fn encode_time_cursor(at: chrono::DateTime<chrono::Utc>, id: uuid::Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.to_rfc3339()))
}

/// Reads a cursor made by [`encode_time_cursor`]; `None` for anything else.
pub fn decode_time_cursor(s: &str) -> Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (at, id) = text.split_once('|')?;
    Some((
        chrono::DateTime::parse_from_rfc3339(at)
            .ok()?
            .with_timezone(&chrono::Utc),
        uuid::Uuid::parse_str(id).ok()?,
    ))
}
