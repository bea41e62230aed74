//! The provider kinds the service knows, and the one way to build an adapter from a stored or
//! submitted configuration. Adding a kind is a new folder with its [`KindSpec`] and one line
//! in [`KINDS`].

use std::sync::Arc;

use serde_json::{Map, Value};

use super::description::{self, BuildError, KindSpec, SplitConfig};
use super::{Provider, ProviderContext};

/// Every kind, in the order forms list them.
pub static KINDS: &[&KindSpec] = &[
    &super::system::SPEC,
    &super::twilio::SPEC,
    &super::vonage::SPEC,
    &super::resend::SPEC,
    &super::sendgrid::SPEC,
    &super::postmark::SPEC,
    &super::mailgun::SPEC,
    &super::smtp::SPEC,
];

/// The kind named `name`.
pub fn find(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().copied().find(|k| k.kind.as_str() == name)
}

/// Builds the adapter of `spec` from a whole (decrypted) configuration: its fields checked
/// against the description, then the kind's typed config and rules.
pub fn build(
    spec: &KindSpec,
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<Arc<dyn Provider>, BuildError> {
    description::check_fields(spec, config)?;
    (spec.build)(config, ctx)
}

/// Validates a configuration about to be saved by building it, and splits it into the clear
/// and the sealed halves.
pub fn validate(
    spec: &KindSpec,
    config: &Map<String, Value>,
    ctx: &ProviderContext,
) -> Result<SplitConfig, BuildError> {
    build(spec, config, ctx)?;
    Ok(description::split(spec, config))
}

/// The common `rate_per_second` of a configuration, when set.
pub fn rate_per_second(config: &Map<String, Value>) -> Option<f64> {
    config
        .get("rate_per_second")
        .and_then(Value::as_f64)
        .filter(|r| *r > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderBases;
    use crate::domain::Channel;
    use std::time::Duration;

    fn ctx(allow_private_hosts: bool) -> ProviderContext {
        ProviderContext::new(
            ProviderBases::default(),
            allow_private_hosts,
            Duration::from_secs(5),
            None,
        )
        .expect("context")
    }

    fn examples(spec: &KindSpec) -> Map<String, Value> {
        spec.all_fields()
            .map(|f| (f.name.to_owned(), f.example.to_json()))
            .collect()
    }

    #[test]
    fn every_kind_builds_from_its_examples_with_every_field_filled() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        for spec in KINDS {
            let config = examples(spec);
            if let Err(e) = build(spec, &config, &ctx(false)) {
                panic!("{} does not build from its own examples: {e}", spec.kind);
            }
            let split = validate(spec, &config, &ctx(false)).expect("validates");
            for field in spec.all_fields() {
                let secret = field.field_type == description::FieldType::Secret;
                assert_eq!(
                    split.secrets.contains_key(field.name),
                    secret,
                    "{}",
                    field.name
                );
                assert_eq!(
                    split.settings.contains_key(field.name),
                    !secret,
                    "{}",
                    field.name
                );
            }
        }
    }

    #[test]
    fn descriptions_are_complete_and_names_unique() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.kind.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        assert_eq!(find("system").map(|s| s.channels), Some(&Channel::ALL[..]));
        for spec in KINDS {
            assert!(!spec.channels.is_empty() && !spec.label.is_empty());
            for field in spec.all_fields() {
                let select = field.field_type == description::FieldType::Select;
                assert_eq!(select, !field.options.is_empty(), "{}", field.name);
                assert!(!field.help.is_empty() && !field.label.is_empty());
            }
        }
    }

    #[test]
    fn every_problem_names_its_field_at_once() {
        let spec = find("smtp").expect("smtp");
        let config = serde_json::json!({"host": "mail.example.com", "port": 70000,
            "tls": "maybe", "bogus": 1});
        let err = build(spec, config.as_object().expect("object"), &ctx(false))
            .err()
            .expect("refused");
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        for f in ["config.port", "config.tls", "config.bogus", "config.from"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn secrets_are_split_from_settings() {
        let spec = find("twilio").expect("twilio");
        let config = serde_json::json!({"account_sid": "AC1", "auth_token": "tok",
            "from": "+15005550006", "rate_per_second": 5});
        let split =
            validate(spec, config.as_object().expect("object"), &ctx(false)).expect("valid");
        assert_eq!(split.secrets.get("auth_token"), Some(&Value::from("tok")));
        assert!(!split.settings.contains_key("auth_token"));
        assert_eq!(split.settings.get("account_sid"), Some(&Value::from("AC1")));
        assert_eq!(split.settings.get("rate_per_second"), Some(&Value::from(5)));
    }
}
