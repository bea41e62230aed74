//! Where a webhook may be sent: `https` URLs of public hosts, unless the operator allows
//! private hosts (`COMMUNICATION_ALLOW_PRIVATE_HOSTS`, which also allows plain `http`). The
//! rule (`crate::address_policy`, the same as for SMTP hosts) is checked when an endpoint is
//! created or changed, and again at connect time: the sending client resolves names through
//! [`PublicOnlyResolver`], which refuses a name with any private or local address and hands
//! the client the addresses it checked, so a DNS answer that changed since (DNS rebinding)
//! cannot reach an internal service. Redirects are not followed.

use std::net::IpAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::address_policy::{self, is_private_or_local};

/// Checks a webhook URL's form (scheme, host, no credentials); no DNS.
pub fn check_form(raw: &str, allow_private: bool) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|_| "must be an absolute URL".to_owned())?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err("must be an https URL".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; verify our signature instead".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    let host = url.host().ok_or_else(|| "must have a host".to_owned())?;
    if !allow_private {
        let literal = match host {
            Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            Host::Domain(d) => {
                if d.eq_ignore_ascii_case("localhost")
                    || d.to_ascii_lowercase().ends_with(".localhost")
                {
                    return Err("must be a public host, not localhost".into());
                }
                None
            }
        };
        if literal.is_some_and(is_private_or_local) {
            return Err("must be a public address, not a private or local one".into());
        }
    }
    Ok(url)
}

/// Checks a webhook URL fully: its form, and (unless private hosts are allowed) that its
/// host resolves only to public addresses.
pub async fn check(raw: &str, allow_private: bool) -> Result<Url, String> {
    let url = check_form(raw, allow_private)?;
    if allow_private {
        return Ok(url);
    }
    if let Some(Host::Domain(domain)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        address_policy::resolve_public(domain, port, false)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(url)
}

/// A resolver for the webhook client that refuses names with any private or local address.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = address_policy::resolve_public(&host, 0, false).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_urls_pass_unless_private_hosts_are_allowed() {
        assert!(check_form("https://hooks.example.com/x?y=1", false).is_ok());
        for bad in [
            "http://hooks.example.com/x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://[::1]/x",
            "https://169.254.169.254/latest",
            "https://localhost:8443/x",
            "https://user:pw@hooks.example.com/x",
            "ftp://hooks.example.com/x",
            "hooks.example.com/x",
        ] {
            assert!(check_form(bad, false).is_err(), "{bad} should be refused");
        }
        assert!(check_form("http://127.0.0.1:9000/x", true).is_ok());
    }

    #[tokio::test]
    async fn the_connect_time_resolver_refuses_local_names() {
        let refused = PublicOnlyResolver
            .resolve("localhost".parse().expect("a name"))
            .await;
        assert!(refused.is_err());
    }
}
