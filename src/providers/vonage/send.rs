//! Sending through Vonage's SMS API and checking its credentials, and the classification of
//! its answers (see `class_for_status` for the table).

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

use super::{KIND, VonageConfig};
use crate::domain::Recipient;
use crate::providers::http::{self, Answer};
use crate::providers::scrub::scrub;
use crate::providers::{
    BuildError, CheckReport, ErrorClass, OutboundMessage, Provider, ProviderContext, ProviderError,
    ProviderKind, SendReceipt,
};

/// One configured Vonage account.
pub struct VonageProvider {
    http: reqwest::Client,
    api_key: String,
    api_secret: String,
    from: String,
    sms_url: String,
    /// Receipts are requested only when they can be verified.
    signed_receipts: bool,
    /// Parsed once: the check appends the credentials as query parameters.
    balance_url: url::Url,
}

/// The secret stays out of `Debug`.
impl std::fmt::Debug for VonageProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageProvider")
            .field("api_key", &self.api_key)
            .field("api_secret", &"****")
            .field("from", &self.from)
            .field("sms_url", &self.sms_url)
            .finish()
    }
}

/// Vonage wants numbers in international format without the leading `+`; an alphanumeric
/// sender ID is passed as it is.
fn sender_id(from: &str) -> String {
    match from.strip_prefix('+') {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.to_string()
        }
        _ => from.to_string(),
    }
}

impl VonageProvider {
    /// The adapter of a typed configuration.
    pub fn new(config: VonageConfig, ctx: &ProviderContext) -> Result<VonageProvider, BuildError> {
        let base = ctx.bases.vonage.trim_end_matches('/');
        let balance_url = url::Url::parse(&format!("{base}/account/get-balance"))
            .map_err(|_| BuildError::whole("vonage: the operator's API base is not a valid URL"))?;
        Ok(VonageProvider {
            http: ctx.http.clone(),
            api_key: config.api_key.trim().to_owned(),
            api_secret: config.api_secret.expose_secret().trim().to_owned(),
            from: sender_id(config.from.trim()),
            sms_url: format!("{base}/sms/json"),
            signed_receipts: config
                .signature_secret
                .as_ref()
                .is_some_and(|s| !s.expose_secret().is_empty()),
            balance_url,
        })
    }

    /// Makes a provider's message safe to store (the one scrubber: secret and text removed).
    fn scrub(&self, text: &str, body_text: Option<&str>) -> String {
        scrub(text, &[&self.api_secret], body_text.as_slice())
    }
}

/// Vonage's answer to `POST /sms/json`: one entry per SMS part.
#[derive(Debug, Deserialize)]
struct SmsResponse {
    #[serde(default)]
    messages: Vec<SmsPart>,
}

#[derive(Debug, Deserialize)]
struct SmsPart {
    /// A string in Vonage's documentation ("0"); numbers are accepted too.
    #[serde(default)]
    status: Option<Value>,
    #[serde(default, rename = "message-id")]
    message_id: Option<String>,
    #[serde(default, rename = "error-text")]
    error_text: Option<String>,
}

impl SmsPart {
    fn status_code(&self) -> Option<u64> {
        match self.status.as_ref()? {
            Value::String(s) => s.trim().parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }
}

/// Vonage's answer to `GET /account/get-balance`.
#[derive(Debug, Deserialize)]
struct Balance {
    value: f64,
    #[serde(default, rename = "autoReload")]
    auto_reload: Option<bool>,
}

/// How the documented `messages[].status` values of the SMS API are handled.
///
/// | status | Vonage's meaning                                              | class               |
/// |--------|---------------------------------------------------------------|---------------------|
/// | 0      | success (accepted for delivery)                               | —                   |
/// | 1      | throttled: faster than the account's limit                    | transient           |
/// | 2      | missing parameters                                            | provider-permanent  |
/// | 3      | invalid parameters                                            | provider-permanent  |
/// | 4      | invalid credentials                                           | provider-permanent  |
/// | 5      | internal error                                                | transient           |
/// | 6      | invalid message: cannot be routed, e.g. unrecognised number prefix | recipient-permanent |
/// | 7      | number barred: the recipient is on the barred list            | recipient-permanent |
/// | 8      | partner account barred (account suspended)                    | provider-permanent  |
/// | 9      | partner quota violation (not enough credit)                   | provider-permanent  |
/// | 10     | too many existing binds (connections)                         | transient           |
/// | 11     | account not enabled for HTTP                                  | provider-permanent  |
/// | 12     | message too long                                              | provider-permanent  |
/// | 14     | invalid signature                                             | provider-permanent  |
/// | 15     | invalid sender address (sender ID not allowed)                | provider-permanent  |
/// | 22     | invalid network code                                          | provider-permanent  |
/// | 23     | invalid callback URL                                          | provider-permanent  |
/// | 29     | non-whitelisted destination (account still in demo mode)      | provider-permanent  |
/// | 32     | signature and API secret disallowed                           | provider-permanent  |
/// | 33     | number de-activated: the recipient cannot receive messages    | recipient-permanent |
/// | other  | not documented                                                | provider-permanent  |
///
/// Choices made on purpose:
/// - 2 and 3 are problems of the request this adapter built from this configuration: `to` is
///   a validated E.164 number before it gets here, so the usual culprit is the configured
///   `from`. Another provider can still send the message, so they fail over.
/// - Only the statuses that name the *recipient* (6 unroutable number, 7 barred, 33
///   de-activated) fail the message; everything about the account, sender or request fails
///   over; 29 (demo-mode allow list) is a limit of this account, not of the recipient.
/// - 12: text length is capped at intake, so a refusal is this provider's own limit.
/// - Unknown statuses fail over rather than fail the message on a guess.
fn class_for_status(status: u64) -> ErrorClass {
    match status {
        1 | 5 | 10 => ErrorClass::Transient { retry_after: None },
        6 | 7 | 33 => ErrorClass::RecipientPermanent,
        _ => ErrorClass::ProviderPermanent,
    }
}

/// The classified error of a non-2xx HTTP answer (Vonage normally answers 200 even for
/// errors), by the usual status fallback.
fn classify_http(answer: &Answer) -> ProviderError {
    ProviderError {
        class: http::class_for_status(answer.status, answer.retry_after()),
        message: format!("vonage: HTTP {}", answer.status.as_u16()),
        code: None,
        outcome_unknown: false,
    }
}

/// Whether `text` fits the GSM 03.38 default alphabet (basic set plus its extension table).
fn is_gsm7(text: &str) -> bool {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "^{}\\[~]|€\u{000C}";
    text.chars()
        .all(|c| BASIC.contains(c) || EXTENSION.contains(c))
}

#[async_trait]
impl Provider for VonageProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<SendReceipt, ProviderError> {
        let Recipient::Phone(to) = message.to else {
            return Err(ProviderError::recipient(
                "vonage: sends SMS only, and the recipient is not a phone number",
            ));
        };
        let Some(body) = message
            .content
            .text
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        else {
            return Err(ProviderError::recipient("vonage: the SMS has no text"));
        };
        let to = to.as_str().trim_start_matches('+');
        let client_ref = message.id.to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("api_key", &self.api_key),
            ("api_secret", &self.api_secret),
            ("from", &self.from),
            ("to", to),
            ("text", body),
            ("client-ref", &client_ref),
        ];
        if !is_gsm7(body) {
            form.push(("type", "unicode"));
        }
        if self.signed_receipts
            && let Some(callback) = message.status_callback.as_deref()
        {
            form.push(("callback", callback));
        }

        let answer = http::call("vonage", self.http.post(&self.sms_url).form(&form)).await?;
        if !answer.is_success() {
            return Err(classify_http(&answer));
        }
        // Vonage reports refusals inside a 200, so an unreadable 200 says nothing about
        // whether the SMS was accepted; treat it as a transient failure.
        let answer = answer
            .json::<SmsResponse>()
            .ok_or_else(|| ProviderError::transient("vonage: response could not be read"))?;
        let Some(first) = answer.messages.first() else {
            return Err(ProviderError::transient(
                "vonage: response listed no messages",
            ));
        };
        // A long text is split into parts, each with its own status; the first refused part
        // decides (parts before it may already be on their way).
        if let Some(failed) = answer
            .messages
            .iter()
            .find(|part| part.status_code() != Some(0))
        {
            let Some(code) = failed.status_code() else {
                return Err(ProviderError::transient(
                    "vonage: response carried no readable status",
                ));
            };
            let class = class_for_status(code);
            let mut text = format!("vonage: status {code}");
            if let Some(error_text) = failed.error_text.as_deref() {
                let error_text = self.scrub(error_text, Some(body));
                if !error_text.is_empty() {
                    text.push_str(": ");
                    text.push_str(&error_text);
                }
            }
            return Err(ProviderError {
                class,
                message: text,
                code: None,
                outcome_unknown: false,
            }
            .with_code(code.to_string()));
        }
        Ok(SendReceipt {
            provider_message_id: first.message_id.clone().filter(|id| !id.is_empty()),
        })
    }

    async fn check(&self) -> Result<CheckReport, ProviderError> {
        // The URL carries the secret (Vonage's documented form of this call): it is never
        // logged, and transport errors are reduced to their kind by `from_transport`.
        let mut url = self.balance_url.clone();
        url.query_pairs_mut()
            .append_pair("api_key", &self.api_key)
            .append_pair("api_secret", &self.api_secret);
        let answer = http::call("vonage", self.http.get(url)).await?;
        let status = answer.status;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ProviderError::provider(format!(
                "vonage: HTTP {}: the api_key/api_secret were refused",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(classify_http(&answer));
        }
        let balance = answer
            .json::<Balance>()
            .ok_or_else(|| ProviderError::transient("vonage: balance could not be read"))?;
        let reload = match balance.auto_reload {
            Some(true) => ", auto-reload on",
            Some(false) => ", auto-reload off",
            None => "",
        };
        Ok(CheckReport {
            detail: format!(
                "vonage account {} has a balance of {:.2}{reload}",
                self.api_key, balance.value
            ),
        })
    }
}
