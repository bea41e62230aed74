//! The provider kinds and their configuration fields.
//!
//! A provider's `config` object is split on write: non-secret fields go to the `settings`
//! column as JSON, secret fields are encrypted together into `secrets`. Every response masks
//! the secret fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{Channel, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    System,
    Twilio,
    Vonage,
    Resend,
    Sendgrid,
    Postmark,
    Mailgun,
    Smtp,
}

/// One field of a kind's configuration.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub secret: bool,
    pub required: bool,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 8] = [
        ProviderKind::System,
        ProviderKind::Twilio,
        ProviderKind::Vonage,
        ProviderKind::Resend,
        ProviderKind::Sendgrid,
        ProviderKind::Postmark,
        ProviderKind::Mailgun,
        ProviderKind::Smtp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::System => "system",
            ProviderKind::Twilio => "twilio",
            ProviderKind::Vonage => "vonage",
            ProviderKind::Resend => "resend",
            ProviderKind::Sendgrid => "sendgrid",
            ProviderKind::Postmark => "postmark",
            ProviderKind::Mailgun => "mailgun",
            ProviderKind::Smtp => "smtp",
        }
    }

    pub fn parse(s: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn supports(self, channel: Channel) -> bool {
        match self {
            ProviderKind::System => true,
            ProviderKind::Twilio | ProviderKind::Vonage => channel == Channel::Sms,
            _ => channel == Channel::Email,
        }
    }

    /// The configuration fields of this kind. `rate_per_second` is accepted by every kind.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            ProviderKind::System => &[
                FieldSpec {
                    name: "behavior",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "latency_ms",
                    secret: false,
                    required: false,
                },
            ],
            ProviderKind::Twilio => &[
                FieldSpec {
                    name: "account_sid",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "auth_token",
                    secret: true,
                    required: true,
                },
                FieldSpec {
                    name: "api_key_sid",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "api_key_secret",
                    secret: true,
                    required: false,
                },
                FieldSpec {
                    name: "from",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "messaging_service_sid",
                    secret: false,
                    required: false,
                },
            ],
            ProviderKind::Vonage => &[
                FieldSpec {
                    name: "api_key",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "api_secret",
                    secret: true,
                    required: true,
                },
                FieldSpec {
                    name: "from",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "signature_secret",
                    secret: true,
                    required: false,
                },
                FieldSpec {
                    name: "signature_method",
                    secret: false,
                    required: false,
                },
            ],
            ProviderKind::Resend => &[
                FieldSpec {
                    name: "api_key",
                    secret: true,
                    required: true,
                },
                FieldSpec {
                    name: "from",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "reply_to",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "webhook_secret",
                    secret: true,
                    required: false,
                },
            ],
            ProviderKind::Sendgrid => &[
                FieldSpec {
                    name: "api_key",
                    secret: true,
                    required: true,
                },
                FieldSpec {
                    name: "from",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "reply_to",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "webhook_public_key",
                    secret: false,
                    required: false,
                },
            ],
            ProviderKind::Postmark => &[
                FieldSpec {
                    name: "server_token",
                    secret: true,
                    required: true,
                },
                FieldSpec {
                    name: "from",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "message_stream",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "reply_to",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "webhook_username",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "webhook_password",
                    secret: true,
                    required: false,
                },
            ],
            ProviderKind::Mailgun => &[
                FieldSpec {
                    name: "api_key",
                    secret: true,
                    required: true,
                },
                FieldSpec {
                    name: "domain",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "from",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "region",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "reply_to",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "webhook_signing_key",
                    secret: true,
                    required: false,
                },
                FieldSpec {
                    name: "webhook_signing_key",
                    secret: true,
                    required: false,
                },
            ],
            ProviderKind::Smtp => &[
                FieldSpec {
                    name: "host",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "port",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "username",
                    secret: false,
                    required: false,
                },
                FieldSpec {
                    name: "password",
                    secret: true,
                    required: false,
                },
                FieldSpec {
                    name: "tls",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "from",
                    secret: false,
                    required: true,
                },
                FieldSpec {
                    name: "reply_to",
                    secret: false,
                    required: false,
                },
            ],
        }
    }

    pub fn is_secret(self, field: &str) -> bool {
        self.fields().iter().any(|f| f.secret && f.name == field)
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration split into its stored halves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitConfig {
    pub settings: Map<String, Value>,
    pub secrets: Map<String, Value>,
}

impl SplitConfig {
    /// The whole configuration, as adapters read it.
    pub fn merged(&self) -> Map<String, Value> {
        let mut all = self.settings.clone();
        for (k, v) in &self.secrets {
            all.insert(k.clone(), v.clone());
        }
        all
    }
}

fn str_field<'a>(config: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    config.get(name).and_then(Value::as_str)
}

/// Validates a kind's whole configuration and splits it into settings and secrets.
/// Problems are reported as `config.<field>`.
pub fn validate_config(
    kind: ProviderKind,
    config: &Map<String, Value>,
) -> Result<SplitConfig, Vec<FieldError>> {
    let mut errors = Vec::new();
    let specs = kind.fields();
    let mut split = SplitConfig::default();
    for (key, value) in config {
        if key == "rate_per_second" {
            match value.as_f64() {
                Some(r) if r > 0.0 && r <= 100_000.0 => {
                    split.settings.insert(key.clone(), value.clone());
                }
                _ => errors.push(FieldError::new(
                    "config.rate_per_second",
                    "must be a number between 0 and 100000",
                )),
            }
            continue;
        }
        let Some(spec) = specs.iter().find(|s| s.name == key) else {
            errors.push(FieldError::new(
                format!("config.{key}"),
                format!("is not a field of {kind} providers"),
            ));
            continue;
        };
        if value.is_null() {
            continue;
        }
        let typed_ok = match (kind, key.as_str()) {
            (ProviderKind::System, "latency_ms") => value.as_u64().is_some_and(|v| v <= 60_000),
            (ProviderKind::Smtp, "port") => {
                value.as_u64().is_some_and(|p| (1..=65535).contains(&p))
            }
            _ => value
                .as_str()
                .is_some_and(|s| !s.trim().is_empty() && s.len() <= 2048),
        };
        if !typed_ok {
            let what = match (kind, key.as_str()) {
                (ProviderKind::System, "latency_ms") => {
                    "must be a number of milliseconds up to 60000"
                }
                (ProviderKind::Smtp, "port") => "must be a port number 1-65535",
                _ => "must be a non-empty string",
            };
            errors.push(FieldError::new(format!("config.{key}"), what));
            continue;
        }
        if spec.secret {
            split.secrets.insert(key.clone(), value.clone());
        } else {
            split.settings.insert(key.clone(), value.clone());
        }
    }
    let all = split.merged();
    for spec in specs {
        if spec.required && !all.contains_key(spec.name) {
            errors.push(FieldError::new(
                format!("config.{}", spec.name),
                "is required",
            ));
        }
    }
    // Kind-specific rules.
    match kind {
        ProviderKind::System => {
            if let Some(b) = all.get("behavior")
                && !matches!(
                    b.as_str(),
                    Some("deliver" | "fail_transient" | "fail_permanent" | "fail_recipient")
                )
            {
                errors.push(FieldError::new(
                    "config.behavior",
                    "must be deliver, fail_transient, fail_permanent or fail_recipient",
                ));
            }
        }
        ProviderKind::Twilio => {
            if !all.contains_key("from") && !all.contains_key("messaging_service_sid") {
                errors.push(FieldError::new(
                    "config.from",
                    "either from or messaging_service_sid is required",
                ));
            }
            if all.contains_key("api_key_sid") != all.contains_key("api_key_secret") {
                errors.push(FieldError::new(
                    "config.api_key_secret",
                    "api_key_sid and api_key_secret go together",
                ));
            }
        }
        ProviderKind::Smtp => {
            if let Some(t) = all.get("tls")
                && !matches!(t.as_str(), Some("starttls" | "implicit" | "none"))
            {
                errors.push(FieldError::new(
                    "config.tls",
                    "must be starttls, implicit or none",
                ));
            }
        }
        ProviderKind::Mailgun => {
            if let Some(r) = all.get("region")
                && !matches!(r.as_str(), Some("us" | "eu"))
            {
                errors.push(FieldError::new("config.region", "must be us or eu"));
            }
        }
        ProviderKind::Vonage => {
            if let Some(m) = all.get("signature_method")
                && !matches!(m.as_str(), Some("sha256" | "sha512"))
            {
                errors.push(FieldError::new(
                    "config.signature_method",
                    "must be sha256 or sha512 (the account's HMAC signature method)",
                ));
            }
        }
        _ => {}
    }
    if let Some(from) = str_field(&all, "from")
        && kind != ProviderKind::Twilio
        && kind != ProviderKind::Vonage
        && kind != ProviderKind::System
        && !from.contains('@')
    {
        errors.push(FieldError::new(
            "config.from",
            "must contain an email address",
        ));
    }
    if errors.is_empty() {
        Ok(split)
    } else {
        Err(errors)
    }
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
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn secrets_are_split_from_settings() {
        let split = validate_config(
            ProviderKind::Twilio,
            &obj(json!({"account_sid": "AC1", "auth_token": "tok", "from": "+15005550006"})),
        )
        .expect("valid");
        assert_eq!(split.secrets.get("auth_token"), Some(&json!("tok")));
        assert!(!split.settings.contains_key("auth_token"));
        assert_eq!(split.settings.get("account_sid"), Some(&json!("AC1")));
    }

    #[test]
    fn problems_name_their_field() {
        let errs = validate_config(
            ProviderKind::Smtp,
            &obj(json!({"host": "mail.example.com", "port": 70000, "tls": "maybe", "bogus": 1})),
        )
        .expect_err("invalid");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for f in ["config.port", "config.tls", "config.bogus", "config.from"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn masks_show_at_most_four_characters() {
        assert_eq!(mask_secret(&json!("re_1234567890abcd")), json!("****abcd"));
        assert_eq!(mask_secret(&json!("short")), json!("****"));
    }
}
