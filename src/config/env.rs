//! Reading variables: each reader takes the area's default for an unset variable, and records
//! a problem (one line naming the variable) instead of stopping, so start-up can report every
//! missing or malformed variable at once.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

/// Reads one variable; `None` when unset or empty.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The environment being read, and the problems found so far.
pub struct Env<'a> {
    get: Lookup<'a>,
    pub(super) problems: Vec<ConfigError>,
}

impl<'a> Env<'a> {
    pub fn new(get: Lookup<'a>) -> Env<'a> {
        Env {
            get,
            problems: Vec::new(),
        }
    }

    /// Records a problem with `name`.
    pub fn problem(&mut self, name: &'static str, reason: impl Into<String>) {
        self.problems.push(ConfigError {
            name,
            reason: reason.into(),
        });
    }

    /// Whether a problem with `name` was recorded (later checks that combine it skip).
    pub fn has_problem(&self, name: &str) -> bool {
        self.problems.iter().any(|p| p.name == name)
    }

    /// The raw value, trimmed of surrounding whitespace.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.get)(name).map(|v| v.trim().to_owned())
    }

    /// A variable that must be set.
    pub fn required(&mut self, name: &'static str, why: &str) -> Option<String> {
        let value = self.get(name);
        if value.is_none() {
            self.problem(name, why.to_owned());
        }
        value
    }

    /// A number, or `default` when unset (also when malformed, with the problem recorded).
    pub fn number<T: FromStr>(&mut self, name: &'static str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                self.problem(name, format!("must be a number, got {v:?}"));
                default
            }),
        }
    }

    /// A number that must lie in `range`.
    pub fn number_in<T>(
        &mut self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
        reason: &str,
    ) -> T
    where
        T: FromStr + PartialOrd + Copy,
    {
        let n = self.number(name, default);
        if !self.has_problem(name) && !range.contains(&n) {
            self.problem(name, reason.to_owned());
            return default;
        }
        n
    }

    /// Milliseconds, or `default` when unset.
    pub fn millis(&mut self, name: &'static str, default: Duration) -> Duration {
        Duration::from_millis(self.number(name, default.as_millis() as u64))
    }

    /// `true`/`1` or `false`/`0`.
    pub fn flag(&mut self, name: &'static str, default: bool) -> bool {
        match self.get(name).as_deref() {
            None => default,
            Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(_) => {
                self.problem(name, "must be true or false");
                default
            }
        }
    }

    /// A `host:port` address.
    pub fn address(&mut self, name: &'static str) -> Option<SocketAddr> {
        let v = self.get(name)?;
        match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(name, format!("must be host:port, got {v:?}"));
                None
            }
        }
    }

    /// A URL whose scheme is one of `schemes` (the value is kept as given).
    pub fn url(&mut self, name: &'static str, default: &str, schemes: &[&str]) -> String {
        let v = self.get(name).unwrap_or_else(|| default.to_owned());
        let scheme = v.split_once("://").map(|(s, _)| s);
        if !scheme.is_some_and(|s| schemes.contains(&s)) {
            self.problem(
                name,
                format!("must be a {}:// URL", schemes.join(":// or ")),
            );
        }
        v
    }

    /// An absolute http(s) URL without its trailing `/`.
    pub fn http_url(&mut self, name: &'static str) -> Option<String> {
        let v = self.get(name)?;
        match url::Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                Some(v.trim_end_matches('/').to_owned())
            }
            Ok(_) => {
                self.problem(name, "must be http or https");
                None
            }
            Err(_) => {
                self.problem(name, "must be an absolute http(s) URL");
                None
            }
        }
    }
}
