//! The one bounded fetcher for everything the server downloads: clients' `jwks_uri`, the
//! breached-password range API, sector identifier documents, and upstream identity
//! providers (discovery, keys, userinfo, and the token endpoint's POST).
//!
//! A URL a client registers is attacker-controlled input, so every fetch is bounded:
//! the body is streamed and cut off at a hard byte cap (a 400 MiB `jwks_uri` must cost
//! kilobytes, not gigabytes), connect and total timeouts end a slow peer, redirects are
//! not followed (a redirect is a second, unchecked destination), plain `http` is refused
//! outside development, and the destination policy refuses loopback, private,
//! link-local (including the cloud metadata address 169.254.169.254), CGNAT, multicast
//! and unspecified addresses unless `outbound.allowed_networks` lists them. The policy
//! is applied to the addresses DNS returns and the connection uses only those, so a name
//! that resolves to an internal address (or re-resolves to one) cannot slip through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{IpNet, OutboundSettings};

/// Why a fetch failed. Messages name the destination's host at most, never a query
/// (which may carry a secret such as a password hash prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    BadUrl(String),
    #[error("plain http is not allowed (outbound.allow_http)")]
    InsecureScheme,
    #[error(
        "destination {0} is not allowed: it is a loopback, private, link-local or otherwise internal address (outbound.allowed_networks)"
    )]
    Forbidden(String),
    #[error("timed out")]
    Timeout,
    /// With what the connection failed on: the I/O error's kind (`connection
    /// refused`) or the TLS error (`invalid peer certificate: UnknownIssuer`).
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("request failed: {0}")]
    Other(String),
}

/// A fetched body and what the server said about caching it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub body: Vec<u8>,
    /// `Cache-Control: max-age` (or `None`: no usable directive; `no-store`/`no-cache`
    /// give `Some(0)`).
    pub max_age: Option<Duration>,
    /// The `Link` header (RFC 8288), for paged lists.
    pub link: Option<String>,
}

/// Which destinations may be fetched.
#[derive(Debug, Clone)]
pub struct DestinationPolicy {
    allowed: Vec<IpNet>,
    allow_http: bool,
}

impl DestinationPolicy {
    pub fn new(settings: &OutboundSettings) -> Self {
        Self {
            allowed: settings.allowed_networks.clone(),
            allow_http: settings.allow_http,
        }
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|n| n.contains(ip))
    }
}

/// Addresses that are routable on the public internet. Everything internal to a host,
/// a cluster or a cloud network is not (RFC 6890's special-purpose registries, in the
/// parts that matter for server-side request forgery).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // 100.64.0.0/10, carrier-grade NAT (and many clusters' pod networks).
                || (a == 100 && (64..128).contains(&b))
                // 192.0.0.0/24 protocol assignments, 198.18.0.0/15 benchmarking.
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
                // 240.0.0.0/4 reserved.
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                // fc00::/7 unique local (AWS's metadata fd00:ec2::254 among them).
                || (first & 0xfe00) == 0xfc00
                // fe80::/10 link-local.
                || (first & 0xffc0) == 0xfe80
                // 64:ff9b::/96 NAT64 can reach any IPv4 address, internal ones included.
                || (first == 0x0064 && v6.segments()[1] == 0xff9b)
                // 2001:db8::/32 documentation.
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// Resolves names with the system resolver and keeps only allowed addresses, so the
/// connection can only go where the policy allows.
struct PolicyResolver {
    policy: Arc<DestinationPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The resolver's refusal, recognised again in [`classify`].
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "destination {} is not allowed", self.0)
    }
}

impl std::error::Error for Refused {}

/// The bounded HTTP client. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Fetcher {
    http: reqwest::Client,
    policy: Arc<DestinationPolicy>,
    timeout: Duration,
}

impl Fetcher {
    pub fn new(settings: &OutboundSettings) -> Result<Self, FetchError> {
        let policy = Arc::new(DestinationPolicy::new(settings));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(settings.connect_timeout_seconds))
            .timeout(Duration::from_secs(settings.timeout_seconds))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gatehouse-authserver/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PolicyResolver {
                policy: Arc::clone(&policy),
            }))
            .build()
            .map_err(|e| FetchError::Other(e.to_string()))?;
        Ok(Self {
            http,
            policy,
            timeout: Duration::from_secs(settings.timeout_seconds),
        })
    }

    /// GETs `url` with `headers`, reading at most `limit` bytes of body within
    /// `timeout` (capped by `outbound.timeout_seconds`).
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        limit: usize,
        timeout: Option<Duration>,
    ) -> Result<Fetched, FetchError> {
        let parsed = self.destination(url)?;
        let budget = timeout.map_or(self.timeout, |t| t.min(self.timeout));
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let req = self.http.get(parsed);
        tokio::time::timeout(budget, self.fetch(req, &host, headers, limit))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    /// POSTs `form` (`application/x-www-form-urlencoded`) to `url` with `headers`,
    /// bounded like [`Fetcher::get`] (an upstream's token endpoint). A non-2xx answer
    /// still returns its body, capped, for the caller to read an OAuth error from:
    /// `Err(FetchError::Status)` only when there is none.
    pub async fn post_form(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
        limit: usize,
    ) -> Result<(u16, Fetched), FetchError> {
        let parsed = self.destination(url)?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = self
            .http
            .post(parsed)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        tokio::time::timeout(self.timeout, self.send(req, &host, headers, limit))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    /// The URL, if its scheme and (literal) address are allowed.
    fn destination(&self, url: &str) -> Result<url::Url, FetchError> {
        let parsed = url::Url::parse(url).map_err(|e| FetchError::BadUrl(e.to_string()))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.policy.allow_http => {}
            "http" => return Err(FetchError::InsecureScheme),
            other => return Err(FetchError::BadUrl(format!("unsupported scheme {other:?}"))),
        }
        // An address literal never reaches the resolver: check it here.
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) if !self.policy.allows(IpAddr::V4(ip)) => {
                return Err(FetchError::Forbidden(ip.to_string()));
            }
            Some(url::Host::Ipv6(ip)) if !self.policy.allows(IpAddr::V6(ip)) => {
                return Err(FetchError::Forbidden(ip.to_string()));
            }
            None => return Err(FetchError::BadUrl("no host".to_owned())),
            _ => {}
        }
        Ok(parsed)
    }

    async fn fetch(
        &self,
        req: reqwest::RequestBuilder,
        host: &str,
        headers: &[(&str, &str)],
        limit: usize,
    ) -> Result<Fetched, FetchError> {
        match self.send(req, host, headers, limit).await? {
            (status, fetched) if (200..300).contains(&status) => Ok(fetched),
            (status, _) => Err(FetchError::Status(status)),
        }
    }

    /// Sends `req` and reads its body up to `limit` bytes, whatever the status.
    async fn send(
        &self,
        mut req: reqwest::RequestBuilder,
        host: &str,
        headers: &[(&str, &str)],
        limit: usize,
    ) -> Result<(u16, Fetched), FetchError> {
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let mut resp = req.send().await.map_err(|e| classify(&e, host))?;
        let status = resp.status().as_u16();
        if resp
            .content_length()
            .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
        {
            return Err(FetchError::TooLarge(limit));
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let link = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, host))? {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((
            status,
            Fetched {
                body,
                max_age,
                link,
            },
        ))
    }
}

fn classify(e: &reqwest::Error, host: &str) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<Refused>().is_some() {
            return FetchError::Forbidden(host.to_owned());
        }
        source = s.source();
    }
    if e.is_timeout() {
        FetchError::Timeout
    } else if e.is_connect() {
        FetchError::Connect(connect_failure(e))
    } else {
        // Without the URL: it may carry a secret in its path or query.
        let mut text = e.to_string();
        if let Some(url) = e.url() {
            text = text.replace(url.as_str(), "<url>");
        }
        FetchError::Other(text)
    }
}

/// Why a connection failed, without the URL: the innermost I/O error's kind, or the
/// error it wraps (rustls reports certificate problems as an I/O error around its own).
fn connect_failure(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut io = None;
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<std::io::Error>() {
            io = Some(e);
        }
        source = s.source();
    }
    match io {
        Some(e) => e
            .get_ref()
            .map_or_else(|| e.kind().to_string(), ToString::to_string),
        None => "no connection".to_owned(),
    }
}

/// `max-age` of a `Cache-Control` value; `no-store`/`no-cache` count as 0.
pub fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allowed: &[&str], allow_http: bool) -> OutboundSettings {
        OutboundSettings {
            allowed_networks: allowed.iter().filter_map(|c| IpNet::parse(c)).collect(),
            allow_http,
            connect_timeout_seconds: 2,
            timeout_seconds: 3,
        }
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn allowed_networks_open_exactly_their_range() {
        let policy = DestinationPolicy::new(&settings(&["10.0.0.0/8"], false));
        assert!(policy.allows("10.9.9.9".parse().unwrap()));
        assert!(!policy.allows("172.16.0.1".parse().unwrap()));
        assert!(!policy.allows("127.0.0.1".parse().unwrap()));
        assert!(!policy.allows("169.254.169.254".parse().unwrap()));
    }

    #[test]
    fn cache_control_max_age_is_read_and_no_store_means_zero() {
        assert_eq!(
            max_age("public, max-age=900"),
            Some(Duration::from_mins(15))
        );
        assert_eq!(max_age("Max-Age=60"), Some(Duration::from_mins(1)));
        assert_eq!(max_age("no-store, max-age=900"), Some(Duration::ZERO));
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[tokio::test]
    async fn refused_destinations_and_schemes_are_never_contacted() {
        let strict = Fetcher::new(&settings(&[], false)).unwrap();
        for (url, want) in [
            ("http://example.com/jwks", FetchError::InsecureScheme),
            (
                "https://169.254.169.254/latest/meta-data",
                FetchError::Forbidden("169.254.169.254".into()),
            ),
            ("https://[::1]/jwks", FetchError::Forbidden("::1".into())),
            (
                "https://127.0.0.1:9/jwks",
                FetchError::Forbidden("127.0.0.1".into()),
            ),
        ] {
            assert_eq!(
                strict.get(url, &[], 1024, None).await.unwrap_err(),
                want,
                "{url}"
            );
        }
        // A name that resolves to loopback is refused by the resolver.
        let lenient_scheme = Fetcher::new(&settings(&[], true)).unwrap();
        assert_eq!(
            lenient_scheme
                .get("http://localhost:9/jwks", &[], 1024, None)
                .await
                .unwrap_err(),
            FetchError::Forbidden("localhost".into())
        );
        assert!(matches!(
            strict.get("ftp://example.com/x", &[], 1024, None).await,
            Err(FetchError::BadUrl(_))
        ));
    }

    #[tokio::test]
    async fn a_refused_connection_says_so_without_the_url() {
        let loopback = Fetcher::new(&settings(&["127.0.0.0/8"], true)).unwrap();
        // Bound and dropped: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = loopback
            .get(
                &format!("http://127.0.0.1:{port}/x?secret=1"),
                &[],
                1024,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::Connect("connection refused".into()));
        assert_eq!(err.to_string(), "cannot connect: connection refused");
    }

    /// A local server that streams `size` bytes (with or without Content-Length).
    async fn serve_bytes(size: usize, announce: bool) -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = sock.read(&mut buf).await;
                    let head = if announce {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nCache-Control: max-age=120\r\n\r\n"
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned()
                    };
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut left = size;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if sock.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn bodies_are_cut_off_at_the_cap_whatever_the_server_announces() {
        let loopback = Fetcher::new(&settings(&["127.0.0.0/8"], true)).unwrap();
        let small = serve_bytes(1000, true).await;
        let got = loopback
            .get(&format!("http://127.0.0.1:{small}/"), &[], 1024, None)
            .await
            .unwrap();
        assert_eq!(got.body.len(), 1000);
        assert_eq!(got.max_age, Some(Duration::from_mins(2)));
        // Announced too large: refused before reading.
        let big = serve_bytes(64 * 1024 * 1024, true).await;
        assert_eq!(
            loopback
                .get(&format!("http://127.0.0.1:{big}/"), &[], 256 * 1024, None)
                .await
                .unwrap_err(),
            FetchError::TooLarge(256 * 1024)
        );
        // Streamed without a length: cut off once past the cap.
        let endless = serve_bytes(64 * 1024 * 1024, false).await;
        assert_eq!(
            loopback
                .get(
                    &format!("http://127.0.0.1:{endless}/"),
                    &[],
                    256 * 1024,
                    None
                )
                .await
                .unwrap_err(),
            FetchError::TooLarge(256 * 1024)
        );
    }
}
