use super::Channel;

/// An email address checked for the syntax a mail provider will accept: one `@`, a non-empty
/// local part without spaces or control characters, a domain of dot-separated labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<EmailAddress, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err("must be an email address like name@example.com".into());
        };
        if local.is_empty() || local.len() > 64 {
            return Err("local part must be 1 to 64 characters".into());
        }
        if local.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    '<' | '>' | '(' | ')' | ',' | ';' | ':' | '\\' | '"' | '[' | ']' | '@'
                )
        }) {
            return Err("local part contains a character that is not allowed".into());
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err("local part has a misplaced dot".into());
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err("domain must contain a dot".into());
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err("domain has an empty or overlong label".into());
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err("domain label must not start or end with '-'".into());
            }
            if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
                return Err("domain contains a character that is not allowed".into());
            }
        }
        Ok(EmailAddress(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164: `+`, a country code not starting with 0, 8 to 15 digits in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<PhoneNumber, String> {
        let s = s.trim();
        let Some(digits) = s.strip_prefix('+') else {
            return Err("must be an E.164 number starting with '+', like +14155550100".into());
        };
        if digits.len() < 8 || digits.len() > 15 {
            return Err("must have 8 to 15 digits after '+' (E.164)".into());
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must contain only digits after '+' (E.164)".into());
        }
        if digits.starts_with('0') {
            return Err("country code must not start with 0 (E.164)".into());
        }
        Ok(PhoneNumber(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A recipient of either channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Email(EmailAddress),
    Phone(PhoneNumber),
}

impl Recipient {
    pub fn parse(channel: Channel, s: &str) -> Result<Recipient, String> {
        match channel {
            Channel::Email => EmailAddress::parse(s).map(Recipient::Email),
            Channel::Sms => PhoneNumber::parse(s).map(Recipient::Phone),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Recipient::Email(e) => e.as_str(),
            Recipient::Phone(p) => p.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_syntax() {
        assert!(EmailAddress::parse("ada@example.com").is_ok());
        assert!(EmailAddress::parse("ada.lovelace+otp@mail.example.co.uk").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@exa mple.com",
            "ada@-x.com",
            "ada..x@example.com",
            "ada@example..com",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn e164_numbers() {
        assert!(PhoneNumber::parse("+14155550100").is_ok());
        assert!(PhoneNumber::parse("+447700900123").is_ok());
        for bad in [
            "14155550100",
            "+0155550100",
            "+1415555",
            "+1415555010012345",
            "+1 415 555 0100",
            "+1415abc0100",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
