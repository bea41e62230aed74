//! Request inputs read into typed structs: [`JsonBody<T>`] for JSON bodies (size-limited,
//! `application/json`; `Option<JsonBody<T>>` where the body may be left out), and the field
//! problems both it and `query::QueryParams` report, each naming its field
//! (`content.subject`, `limit`) in the service's usual words.
//!
//! A body is parsed once, straight into `T` (no intermediate `serde_json::Value`); only a body
//! that fails is parsed a second time, through `serde_path_to_error`, to name the field.
//! Structural problems (a wrong type, an unknown field) stop at the first; the domain's
//! parsers then report every semantic problem at once.

use axum::body::Bytes;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::FieldError;

/// A structural problem at one place of an input, as serde reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// serde_path_to_error's path: `content.subject`, `ids[3]`, `limit`.
    pub path: String,
    pub kind: ProblemKind,
    /// serde's own message (for `Other`, and for a type that quotes it).
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// A field the type does not have.
    UnknownField,
    /// A field given twice.
    Duplicate,
    /// A required field left out.
    Missing,
    /// A value of the wrong type or out of the type's range; `expected` is serde's wording
    /// (`a string`, `u64`, `struct MessageContent`).
    WrongType { expected: String },
    /// Anything else (a custom parser's message): `message` says it.
    Other,
}

impl FieldProblem {
    /// From serde's message (without its `at line … column …` suffix).
    pub fn new(path: String, message: &str) -> FieldProblem {
        let kind = if message.starts_with("unknown field") {
            ProblemKind::UnknownField
        } else if message.starts_with("duplicate field") {
            ProblemKind::Duplicate
        } else if message.starts_with("missing field") {
            ProblemKind::Missing
        } else if let Some((_, expected)) = message
            .strip_prefix("invalid type: ")
            .or_else(|| message.strip_prefix("invalid value: "))
            .and_then(|rest| rest.rsplit_once(", expected "))
        {
            ProblemKind::WrongType {
                expected: expected.to_owned(),
            }
        } else {
            ProblemKind::Other
        };
        // serde reports a duplicate or a missing field at the object holding it: name the
        // field itself.
        let names_field = matches!(kind, ProblemKind::Duplicate | ProblemKind::Missing);
        let path = match message.split('`').nth(1) {
            Some(name) if names_field && path == "." => name.to_owned(),
            Some(name) if names_field => format!("{path}.{name}"),
            _ => path,
        };
        FieldProblem {
            path,
            kind,
            message: message.to_owned(),
        }
    }

    /// The first segment of the path: the top-level field.
    pub fn field(&self) -> &str {
        self.path.split(['.', '[']).next().unwrap_or("")
    }

    /// The service's usual words for the problem.
    pub fn generic(&self) -> FieldError {
        let message = match &self.kind {
            ProblemKind::UnknownField => "is not a known field".to_owned(),
            ProblemKind::Duplicate => "is given more than once".to_owned(),
            ProblemKind::Missing => "is required".to_owned(),
            ProblemKind::WrongType { expected } => must_be(expected),
            ProblemKind::Other => self.message.clone(),
        };
        FieldError::new(self.path.clone(), message)
    }
}

/// "must be …" for serde's name of what it expected.
fn must_be(expected: &str) -> String {
    let what = match expected {
        "a string" => "a string",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "an integer"
        }
        "f32" | "f64" => "a number",
        e if e.starts_with("struct ") || e == "a map" => "a JSON object",
        e if e.contains("UUID") => "a UUID",
        other => return format!("must be {other}"),
    };
    format!("must be {what}")
}

/// How a typed input names its problems. The default uses the generic words; a type
/// overrides it to keep a field's own message (`ttl_seconds: must be an integer between …`).
pub trait RequestFields: DeserializeOwned {
    fn field_error(problem: &FieldProblem) -> FieldError {
        problem.generic()
    }
}

/// serde_json's message without the position it appends.
pub(super) fn message_without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if e.line() > 0 => text[..i].to_owned(),
        _ => text,
    }
}

fn not_json(e: &serde_json::Error) -> ApiError {
    ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
}

/// A JSON request body read into `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: RequestFields> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let bytes = read_body(req, state).await?;
        parse_body(&bytes).map(JsonBody)
    }
}

/// Parses `bytes` into `T`: 400 for a body that is not JSON or not an object, 422 naming the
/// field for a structural problem.
pub fn parse_body<T: RequestFields>(bytes: &[u8]) -> Result<T, ApiError> {
    let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_object {
        match serde_json::from_slice::<T>(bytes) {
            Ok(body) => return Ok(body),
            Err(e) if !e.is_data() => return Err(not_json(&e)),
            Err(_) => {}
        }
    } else {
        // serde would take an array for a struct; the service wants an object.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::bad_request("invalid_json", "the body must be a JSON object"),
                Err(e) => not_json(&e),
            },
        );
    }
    // Only a failing body is read again, to learn where it failed.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let e = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(body) => return Ok(body),
        Err(e) => e,
    };
    let path = e.path().to_string();
    let problem = FieldProblem::new(path, &message_without_position(e.inner()));
    Err(ApiError::validation(vec![T::field_error(&problem)]))
}

pub(super) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let v = v.to_ascii_lowercase();
            v.starts_with("application/json") || v.contains("+json")
        })
        .unwrap_or(false);
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ))
    }
}

pub(super) async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than the service accepts",
            )
        } else {
            ApiError::bad_request("unreadable_body", "the body could not be read")
        }
    })
}

/// A body that may be left out (empty): `None`, with no Content-Type needed; anything else is
/// read as [`JsonBody`] reads it.
impl<S: Send + Sync, T: RequestFields> OptionalFromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let headers = req.headers().clone();
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        require_json(&headers)?;
        parse_body(&bytes).map(|body| Some(JsonBody(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: Option<String>,
        count: Option<u32>,
        inner: Option<Inner>,
        ids: Option<Vec<i64>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        flag: Option<bool>,
    }

    impl RequestFields for Sample {}

    fn problem(body: &str) -> (u16, Vec<FieldError>) {
        let e = parse_body::<Sample>(body.as_bytes()).expect_err("must fail");
        (e.status.as_u16(), e.errors)
    }

    #[test]
    fn a_structural_problem_names_its_field_in_the_usual_words() {
        let cases = [
            (r#"{"nmae": "x"}"#, "nmae", "is not a known field"),
            (r#"{"name": 5}"#, "name", "must be a string"),
            (r#"{"count": "5"}"#, "count", "must be an integer"),
            (r#"{"count": -1}"#, "count", "must be an integer"),
            (r#"{"inner": 1}"#, "inner", "must be a JSON object"),
            (
                r#"{"inner": {"flag": "yes"}}"#,
                "inner.flag",
                "must be true or false",
            ),
            (
                r#"{"inner": {"colour": 1}}"#,
                "inner.colour",
                "is not a known field",
            ),
            (r#"{"ids": [1, "x"]}"#, "ids[1]", "must be an integer"),
            (r#"{"ids": {}}"#, "ids", "must be an array"),
            (
                r#"{"name": "a", "name": "b"}"#,
                "name",
                "is given more than once",
            ),
            (
                r#"{"inner": {"flag": true, "flag": false}}"#,
                "inner.flag",
                "is given more than once",
            ),
        ];
        for (body, field, message) in cases {
            let (status, errors) = problem(body);
            assert_eq!(status, 422, "{body}");
            assert_eq!(errors, [FieldError::new(field, message)], "{body}");
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Required {
        name: String,
        inner: Option<RequiredInner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct RequiredInner {
        flag: bool,
    }

    impl RequestFields for Required {}

    #[test]
    fn a_missing_field_is_named_and_required() {
        for (body, field) in [
            (r#"{}"#, "name"),
            (r#"{"name": "x", "inner": {}}"#, "inner.flag"),
        ] {
            let e = parse_body::<Required>(body.as_bytes()).expect_err(body);
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(e.errors, [FieldError::new(field, "is required")], "{body}");
        }
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_a_400() {
        for body in ["{oops", "[1]", "5", "null", r#"{"name": "x"} trailing"#, ""] {
            let e = parse_body::<Sample>(body.as_bytes()).expect_err(body);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.code, "invalid_json", "{body}");
            assert!(e.errors.is_empty());
        }
    }

    #[test]
    fn a_valid_body_is_read_in_one_pass() {
        let s: Sample = parse_body(br#"{"name": "x", "inner": {"flag": true}}"#).expect("valid");
        assert_eq!(s.name.as_deref(), Some("x"));
    }

    async fn optional(content_type: Option<&str>, body: &str) -> Result<Option<Sample>, ApiError> {
        let mut req = Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(axum::body::Body::from(body.to_owned()))
            .expect("request");
        <JsonBody<Sample> as OptionalFromRequest<()>>::from_request(req, &())
            .await
            .map(|b| b.map(|JsonBody(s)| s))
    }

    #[tokio::test]
    async fn an_optional_body_may_be_left_out_but_not_sent_as_anything_else() {
        assert!(optional(None, "").await.expect("empty").is_none());
        assert!(optional(None, " \n").await.expect("blank").is_none());
        let given = optional(Some("application/json"), r#"{"name": "x"}"#).await;
        assert_eq!(
            given.expect("valid").and_then(|s| s.name).as_deref(),
            Some("x")
        );
        let e = optional(None, r#"{"name": "x"}"#)
            .await
            .expect_err("no type");
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = optional(Some("application/json"), r#"{"name": 1}"#)
            .await
            .expect_err("bad");
        assert_eq!(e.errors, [FieldError::new("name", "must be a string")]);
    }
}
