//! The one scrubber of provider text (error messages, SMTP replies) before it is stored in
//! events or shown to callers: secrets and message bodies replaced, control characters
//! dropped, length bounded. Redaction happens before truncation, so no prefix of a secret
//! survives a cut.

/// Provider text kept in errors and events is cut to this many characters.
pub const MAX_DETAIL_CHARS: usize = 300;

/// Values shorter than this are not searched for: replacing every "a" would say more about the
/// secret than leaving it.
const MIN_SCRUBBED_CHARS: usize = 4;

/// Makes `text` safe to store: each of `secrets` becomes `[redacted]`, each of `bodies` (the
/// message's text or html, trimmed) `[message text]`.
pub fn scrub(text: &str, secrets: &[&str], bodies: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if secret.chars().count() >= MIN_SCRUBBED_CHARS {
            out = out.replace(secret, "[redacted]");
        }
    }
    for body in bodies.iter().map(|b| b.trim()) {
        if body.chars().count() >= MIN_SCRUBBED_CHARS {
            out = out.replace(body, "[message text]");
        }
    }
    let cleaned: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.chars().count() > MAX_DETAIL_CHARS {
        let cut: String = cleaned.chars().take(MAX_DETAIL_CHARS).collect();
        format!("{}…", cut.trim_end())
    } else {
        cleaned.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_bodies_and_control_characters_are_removed() {
        let s = scrub(
            "key re_secret_123 is bad\r\nreally: Your code is 1234",
            &["re_secret_123"],
            &[" Your code is 1234 "],
        );
        assert_eq!(s, "key [redacted] is bad  really: [message text]");
    }

    #[test]
    fn long_text_is_cut_after_redaction() {
        let secret = "s3cr3t-value";
        let text = format!("{}{secret}", "x".repeat(295));
        let s = scrub(&text, &[secret], &[]);
        assert!(!s.contains("s3cr"), "{s}");
        assert_eq!(s.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn very_short_values_are_left_alone() {
        assert_eq!(scrub("a b c", &["a"], &["b"]), "a b c");
    }
}
