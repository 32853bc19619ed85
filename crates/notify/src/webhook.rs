//! Webhook delivery: a signed JSON POST. The body is signed with
//! HMAC-SHA256 under the subscription's secret (`X-Keel-Signature:
//! sha256=<hex>`). Targets that resolve to loopback, private, link-local,
//! unique-local or cloud-metadata addresses are refused unless allowed:
//! checked after DNS resolution (a custom resolver) and for literal IPs,
//! on the first request and on every redirect.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;
use sha2::Sha256;

/// Installs ring as the process's TLS crypto provider (idempotent). Every
/// HTTP client in the process needs one; Keel uses ring, not aws-lc, to
/// avoid a C build.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether an address is one a webhook must not reach by default.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 0
                // Carrier-grade NAT 100.64.0.0/10.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
                // Cloud metadata services (169.254.169.254 is link-local already).
                || v4.octets() == [100, 100, 100, 200]
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link local fe80::/10
                || s == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] // AWS metadata over IPv6
        }
    }
}

/// A resolver that drops internal addresses (when they are not allowed).
struct GuardedResolver {
    allow_internal: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_internal;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow || !is_internal(a.ip()))
                .collect();
            if kept.is_empty() {
                return Err(format!(
                    "{host} resolves only to internal addresses, which webhooks may not reach"
                )
                .into());
            }
            let it: Addrs = Box::new(kept.into_iter());
            Ok(it)
        })
    }
}

/// Checks a URL's scheme and, when its host is a literal IP, that address.
pub fn check_url(url: &str, allow_internal: bool) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("only http and https URLs can receive webhooks".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("put credentials in the secret, not the URL".into());
    }
    let host = u.host_str().ok_or("the URL has no host")?;
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if !allow_internal
        && (literal.is_some_and(is_internal) || host.eq_ignore_ascii_case("localhost"))
    {
        return Err(format!(
            "{host} is an internal address, which webhooks may not reach"
        ));
    }
    Ok(u)
}

/// The signature header value for a body.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// What a delivery attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status, when a response came back.
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl Attempt {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends webhooks.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    allow_internal: bool,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("allow_internal", &self.allow_internal)
            .finish()
    }
}

impl WebhookSender {
    pub fn new(allow_internal: bool) -> Result<WebhookSender, String> {
        install_crypto_provider();
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let redirect = Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("too many redirects");
            }
            match check_url(attempt.url().as_str(), allow_internal) {
                Ok(_) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(GuardedResolver { allow_internal })
            .redirect(redirect)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent("Keel-Webhooks/1")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookSender {
            client,
            allow_internal,
        })
    }

    /// POSTs `body` to `url`, signed with `secret`.
    pub async fn send(
        &self,
        url: &str,
        secret: &str,
        event: &str,
        delivery: uuid::Uuid,
        body: &[u8],
    ) -> Attempt {
        let start = Instant::now();
        let elapsed = |s: Instant| i64::try_from(s.elapsed().as_millis()).unwrap_or(i64::MAX);
        let url = match check_url(url, self.allow_internal) {
            Ok(u) => u,
            Err(e) => {
                return Attempt {
                    status: None,
                    latency_ms: 0,
                    error: Some(e),
                };
            }
        };
        let res = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Keel-Event", event)
            .header("X-Keel-Delivery", delivery.to_string())
            .header("X-Keel-Signature", signature(secret, body))
            .body(body.to_vec())
            .send()
            .await;
        match res {
            Ok(r) => {
                let status = r.status().as_u16();
                Attempt {
                    status: Some(status),
                    latency_ms: elapsed(start),
                    error: (!(200..300).contains(&status))
                        .then(|| format!("the receiver answered {status}")),
                }
            }
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    src = s.source();
                }
                Attempt {
                    status: None,
                    latency_ms: elapsed(start),
                    error: Some(msg),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
        ] {
            assert!(
                is_internal(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                "{ip}"
            );
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(
                !is_internal(ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))),
                "{ip}"
            );
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_literal_internal_hosts() {
        assert!(check_url("https://hooks.example.com/keel", false).is_ok());
        for bad in [
            "ftp://x.example/",
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://localhost/",
            "http://user:pw@x.example/",
            "http://169.254.169.254/latest/meta-data",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:8080/", true).is_ok());
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

#[cfg(test)]
mod resolver_tests {
    use super::*;
    use std::str::FromStr;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap_or_else(|_| panic!("bad name {s}"))
    }

    // The address check happens after DNS: a name that resolves only to
    // loopback is refused by the resolver itself, whatever it is called.
    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_dropped_after_dns() {
        let guarded = GuardedResolver {
            allow_internal: false,
        };
        let err = guarded
            .resolve(name("localhost"))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("internal addresses"), "{err}");
        let open = GuardedResolver {
            allow_internal: true,
        };
        let addrs: Vec<SocketAddr> = open
            .resolve(name("localhost"))
            .await
            .map(|a| a.collect())
            .unwrap_or_default();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    // The sender applies the URL check too: a literal internal address never
    // leaves the process.
    #[tokio::test]
    async fn the_sender_refuses_a_literal_internal_target() {
        let Ok(sender) = WebhookSender::new(false) else {
            panic!("sender")
        };
        let a = sender
            .send(
                "http://127.0.0.1:9/hook",
                "secret",
                "incident.created",
                uuid::Uuid::new_v4(),
                b"{}",
            )
            .await;
        assert!(!a.delivered());
        assert!(a.status.is_none());
        assert!(
            a.error
                .as_deref()
                .is_some_and(|e| e.contains("internal address")),
            "{a:?}"
        );
    }
}
