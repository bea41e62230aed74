//! [`QueryParams<T>`]: a query string read into a typed struct. A problem is a 400
//! `validation_failed` naming the parameter (`limit: must be 1 to 200`): a bad value worded by
//! the type's [`RequestFields`]; an unknown parameter (a typo is not silently ignored) or one
//! given twice worded here.

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
