//! Outbound safety: which webhook URLs latch may call.
//!
//! An administrator names a webhook endpoint's URL, and the worker then makes requests to
//! it from inside the network latch runs in. Without a check, an endpoint at
//! `http://169.254.169.254/…` (a cloud metadata service), `http://10.0.0.5/admin` or
//! `http://127.0.0.1:5432` would make latch a proxy into that network. So:
//!
//! - the scheme is `https` (or `http` when [`ALLOW_HTTP`] says so); no user name or
//!   password in the URL;
//! - every address the host resolves to must be public: loopback, private (RFC 1918, IPv6
//!   unique-local and site-local), link-local (which holds the metadata addresses), shared
//!   (RFC 6598), unspecified, multicast, broadcast and other reserved addresses are refused
//!   — IPv4 addresses inside IPv6 ones (mapped, compatible, NAT64, 6to4) by the IPv4
//!   address, Teredo altogether — all of a name's addresses, so a name cannot slip one in
//!   beside public ones;
//! - [`ALLOW_ADDRESSES`] names ranges to allow anyway (`loopback`, `private`,
//!   `link_local`, `shared`): the local stack and the tests deliver to loopback.
//!
//! The API checks at creation and at every change of the URL; the worker checks at every
//! call, because a name can resolve elsewhere tomorrow, and connects to the very addresses
//! it checked (its HTTP client resolves through [`Policy::resolve`], so no second lookup
//! can be answered differently). Redirects are never followed (the worker's client has
//! them off).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{ConfigError, Setting, Source};

pub const ALLOW_HTTP: Setting = Setting {
    key: "webhooks.allow_http",
    default: Some("false"),
    meaning: "webhook endpoints may be plain http:// URLs (https only otherwise)",
};
pub const ALLOW_ADDRESSES: Setting = Setting {
    key: "webhooks.allow_addresses",
    default: None,
    meaning: "address ranges webhook endpoints may resolve to although they are not public: any of loopback, private, link_local, shared (none by default)",
};

/// How long a name may take to resolve.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The settings this module reads.
pub const SETTINGS: &[Setting] = &[ALLOW_HTTP, ALLOW_ADDRESSES];

/// A range of addresses that is not the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 169.254/16 (metadata services live here), fe80::/10.
    LinkLocal,
    /// 100.64/10 (carrier-grade NAT).
    Shared,
    /// 0.0.0.0, ::, multicast, broadcast: never allowed.
    Reserved,
}

impl Range {
    pub fn name(self) -> &'static str {
        match self {
            Range::Loopback => "loopback",
            Range::Private => "private",
            Range::LinkLocal => "link_local",
            Range::Shared => "shared",
            Range::Reserved => "reserved",
        }
    }

    /// The range an address belongs to; `None` for a public address.
    pub fn of(ip: IpAddr) -> Option<Range> {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::of_v4(v4),
                None => Self::of_v6(v6),
            },
        }
    }

    fn of_v4(ip: Ipv4Addr) -> Option<Range> {
        let [a, b, c, _] = ip.octets();
        if ip.is_loopback() {
            Some(Range::Loopback)
        } else if ip.is_private() {
            Some(Range::Private)
        } else if ip.is_link_local() {
            Some(Range::LinkLocal)
        } else if a == 100 && (64..128).contains(&b) {
            Some(Range::Shared)
        } else if ip.is_unspecified()
            || ip.is_multicast()
            || ip.is_broadcast()
            || a == 0
            // 240/4 (reserved), 192.0.0/24 (IETF protocol assignments), 198.18/15
            // (benchmarking)
            || a >= 240
            || (a, b, c) == (192, 0, 0)
            || (a == 198 && (b == 18 || b == 19))
        {
            Some(Range::Reserved)
        } else {
            None
        }
    }

    fn of_v6(ip: Ipv6Addr) -> Option<Range> {
        let segments = ip.segments();
        let first = segments[0];
        let embedded = |high: u16, low: u16| {
            let [a, b] = high.to_be_bytes();
            let [c, d] = low.to_be_bytes();
            Ipv4Addr::new(a, b, c, d)
        };
        if ip.is_loopback() {
            Some(Range::Loopback)
        } else if ip.is_unspecified() || ip.is_multicast() {
            Some(Range::Reserved)
        } else if segments[..6] == [0; 6] {
            // IPv4-compatible ::a.b.c.d (deprecated, but still routed by some stacks).
            Self::of_v4(embedded(segments[6], segments[7])).or(Some(Range::Reserved))
        } else if segments[..2] == [0x64, 0xff9b] {
            // NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48): an IPv4 address
            // behind a translator, in the last 32 bits.
            Self::of_v4(embedded(segments[6], segments[7]))
        } else if first == 0x2002 {
            // 6to4: the IPv4 address in the next 32 bits.
            Self::of_v4(embedded(segments[1], segments[2]))
        } else if first == 0x2001 && segments[1] == 0 {
            // Teredo: a tunnel to anywhere.
            Some(Range::Reserved)
        } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
            // Unique-local, and the deprecated site-local.
            Some(Range::Private)
        } else if first & 0xffc0 == 0xfe80 {
            Some(Range::LinkLocal)
        } else {
            None
        }
    }
}

/// Why a URL may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a valid absolute URL: {0}")]
    Invalid(String),
    #[error("the URL must use https")]
    NotHttps,
    #[error("the scheme must be https or http")]
    Scheme,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("the URL has no host")]
    NoHost,
    #[error("{host} resolves to {ip}, a {} address, which webhooks may not reach", .range.name())]
    Address {
        host: String,
        ip: IpAddr,
        range: Range,
    },
    #[error("{host} does not resolve: {reason}")]
    Unresolved { host: String, reason: String },
}

impl Refused {
    /// A short class for attempt records and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Refused::Address { .. } => "address_refused",
            Refused::Unresolved { .. } => "dns_failed",
            _ => "url_refused",
        }
    }
}

/// What outbound calls may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub allow_http: bool,
    pub allowed: Vec<Range>,
}

impl Policy {
    pub fn from_source(source: &Source) -> Result<Policy, ConfigError> {
        let allow_http = source.value(&ALLOW_HTTP)?;
        let mut allowed = Vec::new();
        if let Some(text) = source.optional::<String>(&ALLOW_ADDRESSES)? {
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let range = [
                    Range::Loopback,
                    Range::Private,
                    Range::LinkLocal,
                    Range::Shared,
                ]
                .into_iter()
                .find(|r| r.name() == name)
                .ok_or_else(|| {
                    Source::invalid_setting(
                        &ALLOW_ADDRESSES,
                        format!(
                            "unknown range {name:?}: use loopback, private, link_local or shared"
                        ),
                    )
                })?;
                allowed.push(range);
            }
        }
        Ok(Policy {
            allow_http,
            allowed,
        })
    }

    /// Everything allowed that can be: for tests and the local stack.
    pub fn local() -> Policy {
        Policy {
            allow_http: true,
            allowed: vec![
                Range::Loopback,
                Range::Private,
                Range::LinkLocal,
                Range::Shared,
            ],
        }
    }

    /// Checks the URL's form (not where it resolves).
    pub fn check_url(&self, text: &str) -> Result<url::Url, Refused> {
        let url = url::Url::parse(text).map_err(|e| Refused::Invalid(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(Refused::NotHttps),
            _ => return Err(Refused::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Refused::NoHost);
        }
        Ok(url)
    }

    /// Refuses an address outside the public internet and the allowed ranges.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        match Range::of(ip) {
            Some(range) if range == Range::Reserved || !self.allowed.contains(&range) => {
                Err(Refused::Address {
                    host: host.to_owned(),
                    ip,
                    range,
                })
            }
            _ => Ok(()),
        }
    }

    /// Resolves `host` and checks every address; the addresses to connect to.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_ip(host, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let unresolved = |reason: String| Refused::Unresolved {
            host: host.to_owned(),
            reason,
        };
        let addresses: Vec<SocketAddr> =
            tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((bare, port)))
                .await
                .map_err(|_| unresolved(format!("no answer within {LOOKUP_TIMEOUT:?}")))?
                .map_err(|e| unresolved(e.to_string()))?
                .collect();
        if addresses.is_empty() {
            return Err(unresolved("no address".into()));
        }
        for address in &addresses {
            self.check_ip(host, address.ip())?;
        }
        Ok(addresses)
    }

    /// The whole check of a URL: its form, and where it resolves now.
    pub async fn check(&self, text: &str) -> Result<url::Url, Refused> {
        let url = self.check_url(text)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        self.resolve(&host, port).await?;
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_recognised() {
        for (ip, range) in [
            ("127.0.0.1", Some(Range::Loopback)),
            ("::1", Some(Range::Loopback)),
            ("::ffff:127.0.0.1", Some(Range::Loopback)),
            ("10.1.2.3", Some(Range::Private)),
            ("172.16.0.1", Some(Range::Private)),
            ("192.168.1.1", Some(Range::Private)),
            ("fd00:ec2::254", Some(Range::Private)),
            ("169.254.169.254", Some(Range::LinkLocal)),
            ("fe80::1", Some(Range::LinkLocal)),
            ("100.64.0.1", Some(Range::Shared)),
            ("0.0.0.0", Some(Range::Reserved)),
            ("255.255.255.255", Some(Range::Reserved)),
            ("224.0.0.1", Some(Range::Reserved)),
            ("::", Some(Range::Reserved)),
            ("::10.0.0.1", Some(Range::Private)),
            ("64:ff9b::a00:1", Some(Range::Private)),
            ("64:ff9b::5db8:d70e", None),
            ("2002:a00:1::1", Some(Range::Private)),
            ("2001:0:4136:e378::1", Some(Range::Reserved)),
            ("fec0::1", Some(Range::Private)),
            ("240.0.0.1", Some(Range::Reserved)),
            ("198.18.0.1", Some(Range::Reserved)),
            ("192.0.0.8", Some(Range::Reserved)),
            ("93.184.215.14", None),
            ("2606:4700::1111", None),
            ("172.32.0.1", None),
        ] {
            assert_eq!(Range::of(ip.parse().expect("ip")), range, "{ip}");
        }
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let strict = Policy::default();
        for url in [
            "https://127.0.0.1/hook",
            "https://10.0.0.5/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]:8443/hook",
            "https://localhost/hook",
        ] {
            let refused = strict.check(url).await.expect_err(url);
            assert_eq!(refused.class(), "address_refused", "{url}: {refused}");
        }
        let loopback = Policy {
            allow_http: false,
            allowed: vec![Range::Loopback],
        };
        assert!(loopback.check("https://127.0.0.1:9/hook").await.is_ok());
        assert!(loopback.check("https://10.0.0.5/hook").await.is_err());
        // Reserved addresses stay refused whatever is allowed.
        assert!(Policy::local().check("https://0.0.0.0/hook").await.is_err());
    }

    #[test]
    fn url_forms_are_checked() {
        let strict = Policy::default();
        assert_eq!(
            strict.check_url("http://example.com/"),
            Err(Refused::NotHttps)
        );
        assert_eq!(strict.check_url("ftp://example.com/"), Err(Refused::Scheme));
        assert_eq!(
            strict.check_url("https://user:pw@example.com/"),
            Err(Refused::Credentials)
        );
        assert!(matches!(
            strict.check_url("not a url"),
            Err(Refused::Invalid(_))
        ));
        assert!(strict.check_url("https://example.com/hook?a=1").is_ok());
        assert!(Policy::local().check_url("http://example.com/").is_ok());
    }
}
