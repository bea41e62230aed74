//! How a provider kind describes itself: its name, channels, configuration fields (what a form
//! shows and what the API accepts), how to build its adapter from a configuration, and how to
//! verify and read its delivery receipts. Each kind's folder holds one [`KindSpec`]; the
//! [`registry`](super::registry) lists them.
//!
//! A configuration is checked in two steps, both part of building: the fields against the
//! description (unknown, missing, wrong type, option not offered, number out of range: every
//! problem at once), then the kind's typed config (`#[serde(deny_unknown_fields)]`) and its
//! own rules. Saving a provider runs the same build, so a configuration that saves builds.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Provider, ProviderContext, ReceiptRequest, VerifiedReceipt, WebhookError};
use crate::domain::{Channel, FieldError};

/// A provider kind's name (`twilio`, `smtp`, …). Each kind's folder defines its own constant,
/// so adding a kind touches no shared enum.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderKind(&'static str);

impl ProviderKind {
    pub const fn new(name: &'static str) -> ProviderKind {
        ProviderKind(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for ProviderKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

/// How a form shows a field, and what JSON type the API accepts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A non-blank string.
    Text,
    /// A non-blank string, sealed at rest and masked in every response.
    Secret,
    /// One of `options`.
    Select,
    Number,
    Bool,
}

/// A value that passes validation, in the field's own JSON type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Example {
    Text(&'static str),
    Integer(u64),
    Bool(bool),
}

impl Example {
    pub fn to_json(self) -> Value {
        match self {
            Example::Text(s) => Value::String(s.to_owned()),
            Example::Integer(n) => Value::from(n),
            Example::Bool(b) => Value::Bool(b),
        }
    }
}

/// The accepted range of a number field, and what to say outside it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Values must be greater than this (`exclusive`) or at least this.
    pub min: f64,
    pub exclusive: bool,
    pub max: f64,
    pub message: &'static str,
}

/// One field of a kind's configuration.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub label: &'static str,
    pub field_type: FieldType,
    pub required: bool,
    /// The choices of a `select` field (empty for the others).
    pub options: &'static [&'static str],
    pub help: &'static str,
    pub example: Example,
    /// Bounds of a `number` field.
    pub range: Option<Range>,
}

impl FieldSpec {
    /// A field with no options and no range; adjust with struct update syntax.
    pub const fn new(
        name: &'static str,
        label: &'static str,
        field_type: FieldType,
        required: bool,
        help: &'static str,
        example: Example,
    ) -> FieldSpec {
        FieldSpec {
            name,
            label,
            field_type,
            required,
            options: &[],
            help,
            example,
            range: None,
        }
    }
}

/// Builds a kind's adapter from its whole (decrypted) configuration.
pub type BuildFn =
    fn(&Map<String, Value>, &ProviderContext) -> Result<Arc<dyn Provider>, BuildError>;

/// Verifies a receipt request with the provider row's configuration and reads what it says.
pub type ReceiptFn =
    fn(&ReceiptRequest<'_>, &Map<String, Value>) -> Result<Vec<VerifiedReceipt>, WebhookError>;

/// Everything the service knows about one kind. "Test connection" runs the built adapter's
/// [`Provider::check`].
pub struct KindSpec {
    pub kind: ProviderKind,
    pub label: &'static str,
    pub description: &'static str,
    pub channels: &'static [Channel],
    /// The kind's own fields; [`COMMON_FIELDS`] are accepted by every kind besides these.
    pub fields: &'static [FieldSpec],
    pub build: BuildFn,
    /// `None` when the kind sends no delivery receipts.
    pub receipts: Option<ReceiptFn>,
}

impl KindSpec {
    pub fn supports(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }

    /// The kind's fields followed by the common ones.
    pub fn all_fields(&self) -> impl Iterator<Item = &'static FieldSpec> + use<> {
        let own: &'static [FieldSpec] = self.fields;
        own.iter().chain(COMMON_FIELDS.iter())
    }

    fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.all_fields().find(|f| f.name == name)
    }

    /// Whether `name` is one of this kind's secret fields.
    pub fn is_secret_field(&self, name: &str) -> bool {
        self.field(name)
            .is_some_and(|f| f.field_type == FieldType::Secret)
    }
}

/// Fields every kind accepts. They are read by the service, not by adapters, so adapters'
/// typed configs never see them.
pub const COMMON_FIELDS: &[FieldSpec] = &[FieldSpec {
    range: Some(Range {
        min: 0.0,
        exclusive: true,
        max: 100_000.0,
        message: "must be a number between 0 and 100000",
    }),
    ..FieldSpec::new(
        "rate_per_second",
        "Rate limit (messages per second)",
        FieldType::Number,
        false,
        "The most messages per second sent through this provider, shared by every worker; \
         unset means no limit.",
        Example::Integer(10),
    )
}];

/// Why a configuration cannot become an adapter: every problem, each naming its field
/// (`config.<name>`, or `config` for problems of the whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider configuration is unusable: {}", describe(.problems))]
pub struct BuildError {
    pub problems: Vec<FieldError>,
}

fn describe(problems: &[FieldError]) -> String {
    problems
        .iter()
        .map(|p| format!("{} {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl BuildError {
    /// A problem with `config.<name>`.
    pub fn field(name: &str, message: impl Into<String>) -> BuildError {
        BuildError {
            problems: vec![FieldError::new(format!("config.{name}"), message)],
        }
    }

    /// A problem that is no single field's (e.g. the operator's API base).
    pub fn whole(message: impl Into<String>) -> BuildError {
        BuildError {
            problems: vec![FieldError::new("config", message)],
        }
    }
}

/// Collects a build's problems so that all of them are reported at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, name: &str, message: impl Into<String>) {
        self.0
            .push(FieldError::new(format!("config.{name}"), message));
    }

    pub fn into_result(self) -> Result<(), BuildError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(BuildError { problems: self.0 })
        }
    }
}

/// `config` without null values (a null is an absent field) and without the common fields.
fn own_fields(config: &Map<String, Value>) -> Map<String, Value> {
    config
        .iter()
        .filter(|(k, v)| !v.is_null() && !COMMON_FIELDS.iter().any(|f| f.name == k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Reads a kind's typed config. A serde failure names the field it happened at.
pub fn typed_config<T: DeserializeOwned>(config: &Map<String, Value>) -> Result<T, BuildError> {
    let value = Value::Object(own_fields(config));
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_json's messages end with " at line L column C" only for text input; a Value
        // has none, and its unknown-field message names the field itself.
        if let Some(unknown) = inner
            .strip_prefix("unknown field `")
            .and_then(|s| s.split('`').next())
        {
            BuildError::field(unknown, "is not a field of this provider kind")
        } else if path == "." || path.is_empty() {
            BuildError::whole(inner)
        } else {
            BuildError::field(&path, inner)
        }
    })
}

fn option_list(options: &[&str]) -> String {
    match options {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Checks `config` against the kind's fields: every problem at once.
pub fn check_fields(spec: &KindSpec, config: &Map<String, Value>) -> Result<(), BuildError> {
    let mut problems = Problems::default();
    for (name, value) in config {
        let Some(field) = spec.field(name) else {
            problems.add(name, format!("is not a field of {} providers", spec.kind));
            continue;
        };
        if value.is_null() {
            continue;
        }
        if let Some(message) = value_problem(field, value) {
            problems.add(name, message);
        }
    }
    for field in spec.all_fields() {
        if field.required && config.get(field.name).is_none_or(Value::is_null) {
            problems.add(field.name, "is required");
        }
    }
    problems.into_result()
}

/// What is wrong with a (non-null) value of `field`, if anything.
fn value_problem(field: &FieldSpec, value: &Value) -> Option<String> {
    match field.field_type {
        FieldType::Text | FieldType::Secret => match value.as_str() {
            Some(s) if !s.trim().is_empty() && s.chars().count() <= 2048 => None,
            _ => Some("must be a non-empty string".into()),
        },
        FieldType::Select => match value.as_str() {
            Some(s) if field.options.contains(&s) => None,
            _ => Some(format!("must be {}", option_list(field.options))),
        },
        FieldType::Bool => (!value.is_boolean()).then(|| "must be true or false".into()),
        FieldType::Number => {
            let Some(n) = value.as_f64() else {
                return Some("must be a number".into());
            };
            let range = field.range?;
            let above_min = if range.exclusive {
                n > range.min
            } else {
                n >= range.min
            };
            (!(above_min && n <= range.max)).then(|| range.message.to_owned())
        }
    }
}

/// A configuration split into its stored halves: `settings` in clear, `secrets` to be sealed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitConfig {
    pub settings: Map<String, Value>,
    pub secrets: Map<String, Value>,
}

/// Splits a built configuration by field type (nulls dropped).
pub fn split(spec: &KindSpec, config: &Map<String, Value>) -> SplitConfig {
    let mut out = SplitConfig::default();
    for (name, value) in config.iter().filter(|(_, v)| !v.is_null()) {
        let half = if spec.is_secret_field(name) {
            &mut out.secrets
        } else {
            &mut out.settings
        };
        half.insert(name.clone(), value.clone());
    }
    out
}

/// Masks a secret for display: at most the last 4 characters are shown, and only of values
/// long enough that 4 characters reveal little.
pub fn mask_secret(value: &Value) -> Value {
    let s = match value {
        Value::String(s) => s.as_str(),
        _ => return Value::String("****".into()),
    };
    let n = s.chars().count();
    if n >= 12 {
        let tail: String = s.chars().skip(n - 4).collect();
        Value::String(format!("****{tail}"))
    } else {
        Value::String("****".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_show_at_most_four_characters() {
        assert_eq!(
            mask_secret(&Value::from("re_1234567890abcd")),
            Value::from("****abcd")
        );
        assert_eq!(mask_secret(&Value::from("short")), Value::from("****"));
    }

    #[test]
    fn options_read_as_a_sentence() {
        assert_eq!(
            option_list(&["starttls", "implicit", "none"]),
            "starttls, implicit or none"
        );
        assert_eq!(option_list(&["us", "eu"]), "us or eu");
    }
}
