//! Where deliveries may go: the subscription URL's rules, and the guard against server-side
//! request forgery.
//!
//! A subscription URL is `http://` or `https://` with a host, at most [`MAX_URL_LEN`] bytes.
//! Unless WEBHOOK_ALLOW_PRIVATE=true, no delivery reaches a loopback, private, link-local
//! (cloud metadata `169.254.169.254` included), shared (CGNAT), unspecified, multicast or
//! otherwise reserved address; an IPv6 address must be global unicast, and one that carries an
//! IPv4 address (mapped, NAT64, 6to4) is judged by it. The check runs **at delivery time,
//! after DNS resolution**: the HTTP client's resolver ([`GuardedResolver`]) drops such
//! addresses, so a name that resolves to `127.0.0.1` (or is changed to after the subscription
//! was made) is refused, and the connection goes to an address that was checked (no second
//! lookup to rebind). IP literals, which no resolver sees, are checked before the request
//! ([`refused_literal`]). Redirects are never followed and no proxy is used.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

/// Longest subscription URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Why `ip` may not be a delivery target, or `None` when it is a public address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            let first = s[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a private (unique local) address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // NAT64's well-known prefix (64:ff9b::/96) embeds an IPv4 address.
                forbidden_v4(Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32))
            } else if first & 0xe000 != 0x2000 {
                // Only global unicast (2000::/3) is public: this also refuses IPv4-compatible
                // (::/96), site-local (fec0::/10) and local-use NAT64 (64:ff9b:1::/48).
                Some("not a global unicast address")
            } else if first == 0x2001 && s[1] == 0x0db8 {
                Some("a documentation address")
            } else if first == 0x2001 && s[1] < 0x0200 {
                // 2001::/23: IETF protocol assignments, Teredo (2001::/32) among them, which
                // tunnels to an IPv4 address.
                Some("a special-purpose address (Teredo and others)")
            } else if first == 0x2002 {
                // 6to4 (2002::/16) embeds the IPv4 address it reaches.
                forbidden_v4(Ipv4Addr::from(((s[1] as u32) << 16) | s[2] as u32))
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address (cloud metadata lives there)")
    } else if ip.is_unspecified() || a == 0 {
        Some("the unspecified address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("a broadcast, multicast or reserved address")
    } else if ip.is_documentation() || (a == 192 && b == 0 && ip.octets()[2] == 0) {
        Some("a documentation or protocol-assignment address")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("a benchmarking address")
    } else {
        None
    }
}

/// Parses a subscription URL: `http(s)://host[:port]/...`, at most [`MAX_URL_LEN`] bytes. With
/// `allow_private` false, a host that is a forbidden IP literal or `localhost` is refused here
/// already (names are checked again at every delivery).
pub fn parse_url(text: &str, allow_private: bool) -> Result<Url, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} bytes"));
    }
    let url = Url::parse(text)
        .map_err(|e| format!("must be an absolute http:// or https:// URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.host().is_none() {
        return Err("must name a host".into());
    }
    if !allow_private && let Some(why) = refused_literal(&url) {
        return Err(format!(
            "points to {why}; deliveries go to public addresses only unless WEBHOOK_ALLOW_PRIVATE=true"
        ));
    }
    Ok(url)
}

/// Why the URL's host, taken literally (an IP address, or `localhost` and its subdomains), may
/// not be a target; `None` when it is a public IP or a name (names are checked after DNS).
pub fn refused_literal(url: &Url) -> Option<&'static str> {
    match url.host()? {
        Host::Ipv4(ip) => forbidden(IpAddr::V4(ip)),
        Host::Ipv6(ip) => forbidden(IpAddr::V6(ip)),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then_some("a loopback name")
        }
    }
}

/// The URL as it may appear in logs, events and error texts: scheme, host, port and path, without
/// user info, query or fragment (which may carry a receiver's token).
pub fn displayable(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// The HTTP client's DNS resolver: the system's lookup, minus forbidden addresses. A name with
/// only forbidden addresses fails with a text that names the reason (it ends up in the delivery's
/// attempt log).
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow_private {
                return Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match forbidden(a.ip()) {
                    Some(why) => {
                        refused.get_or_insert((a.ip(), why));
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let text = match refused {
                    Some((ip, why)) => format!(
                        "target refused: {host} resolves to {ip}, {why} (set WEBHOOK_ALLOW_PRIVATE=true to allow)"
                    ),
                    None => format!("{host} has no address"),
                };
                return Err(text.into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client deliveries go out with: guarded resolver, no redirects, no proxy, `timeout` per
/// attempt (connect included).
pub fn client(allow_private: bool, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!(
            "whatsapp-gateway/",
            env!("CARGO_PKG_VERSION"),
            " (webhooks)"
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden_and_public_ones_not() {
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "ff02::1",
            "2001:db8::1",
            "::a9fe:a9fe",
            "::7f00:1",
            "fec0::1",
            "64:ff9b:1::a9fe:a9fe",
            "2001::a9fe:a9fe",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2002:a9fe:a9fe::",
            "2002:7f00:1::1",
            "2002:0a00:0001::",
        ] {
            assert!(forbidden(bad.parse().unwrap()).is_some(), "{bad}");
        }
        for good in [
            "8.8.8.8",
            "157.240.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2a03:2880::1",
            "2001:4860:4860::8888",
            "2002:808:808::1",
            "64:ff9b::808:808",
        ] {
            assert_eq!(forbidden(good.parse().unwrap()), None, "{good}");
        }
    }

    #[test]
    fn urls_are_checked_literally_at_creation() {
        assert!(parse_url("https://example.com/hook?token=x", false).is_ok());
        assert!(parse_url("http://127.0.0.1:9000/h", true).is_ok());
        for (bad, says) in [
            ("ftp://example.com", "http"),
            ("example.com/hook", "absolute"),
            ("http://127.0.0.1:9000/h", "loopback"),
            ("http://[::1]/h", "loopback"),
            ("http://169.254.169.254/latest", "link-local"),
            ("http://LocalHost./x", "loopback name"),
            ("http://a.localhost/x", "loopback name"),
            ("http://10.0.0.1/", "private"),
        ] {
            let e = parse_url(bad, false).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(parse_url(&format!("https://e.com/{}", "a".repeat(MAX_URL_LEN)), true).is_err());
    }

    #[test]
    fn displayable_urls_drop_credentials_and_queries() {
        let url = Url::parse("https://user:pw@hooks.example.com:8443/in?token=s3cret#f").unwrap();
        assert_eq!(displayable(&url), "https://hooks.example.com:8443/in");
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_loopback_addresses() {
        use reqwest::dns::Resolve;
        let guarded = GuardedResolver {
            allow_private: false,
        };
        let error = match guarded.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved through the guard"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains("target refused") && error.contains("loopback"),
            "{error}"
        );
        let open = GuardedResolver {
            allow_private: true,
        };
        let addrs: Vec<_> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
