//! A scripted browser for the HTML pages: a cookie jar, no automatic redirects (each
//! hop is asserted), and forms posted by field name the way a person's browser would.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::cookie::CookieStore as _;
use reqwest::header::{self, HeaderMap};

use super::{Cli, TestDb};

/// One HTTP answer, body read.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> Option<String> {
        self.header("location").map(str::to_owned)
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// The `value` of the input named `name` (HTML entities decoded).
    pub fn input(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\""))?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = at + self.body[at..].find('>')?;
        attr(&self.body[tag_start..tag_end], "value")
    }

    /// The `action` of the first form.
    pub fn form_action(&self) -> Option<String> {
        let at = self.body.find("<form")?;
        let end = at + self.body[at..].find('>')?;
        attr(&self.body[at..end], "action")
    }

    /// Asserts the status, showing the body when it differs.
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        self
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = start + tag[start..].find('"')?;
    Some(decode_entities(&tag[start..end]))
}

/// Undoes MiniJinja's HTML escaping.
pub fn decode_entities(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A browser with its own cookie jar.
#[derive(Debug, Clone)]
pub struct Browser {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    user_agent: String,
    /// The `Accept-Language` it sends, if any.
    accept_language: Option<String>,
    /// Sends requests for one origin to another server (same cookies, the original
    /// `Host`): a load balancer picking another pod.
    route: Option<(String, String)>,
    /// The client address it claims through a trusted proxy (`X-Forwarded-For`).
    forwarded_for: Option<String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self::with_user_agent("gatehouse-it-browser/1")
    }

    pub fn with_user_agent(ua: &str) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Self {
            http: reqwest::Client::builder()
                .cookie_provider(Arc::clone(&jar))
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            jar,
            user_agent: ua.to_owned(),
            accept_language: None,
            route: None,
            forwarded_for: None,
        }
    }

    /// The same browser (cookie jar) reaching the server from `ip`, as a trusted proxy
    /// in front of it reports (`X-Forwarded-For`; the server must trust loopback).
    pub fn at_ip(&self, ip: &str) -> Self {
        Self {
            forwarded_for: Some(ip.to_owned()),
            ..self.clone()
        }
    }

    /// Puts `cookie` (`name=value`) into the jar for `url`, as a browser that was handed
    /// it (a replayed or forged cookie).
    pub fn add_cookie(&self, url: &str, cookie: &str) {
        self.jar.add_cookie_str(cookie, &url.parse().unwrap());
    }

    /// A new browser that asks for pages in `languages` (an `Accept-Language` value).
    pub fn with_accept_language(languages: &str) -> Self {
        Self::new().speaking(languages)
    }

    /// The same browser (cookie jar) sending `Accept-Language: value` from now on.
    pub fn speaking(&self, value: &str) -> Self {
        Self {
            accept_language: Some(value.to_owned()),
            ..self.clone()
        }
    }

    /// The same browser (cookie jar) reaching `origin` through the server at `via`
    /// (`http://127.0.0.1:PORT`), as when a load balancer sends it to another replica.
    pub fn via(&self, origin: &str, via: &str) -> Self {
        Self {
            route: Some((origin.to_owned(), via.to_owned())),
            ..self.clone()
        }
    }

    /// The URL to connect to and the `Host` to send.
    fn target(&self, url: &str) -> (String, Option<String>) {
        match &self.route {
            Some((origin, via)) if url.starts_with(origin.as_str()) => (
                format!("{via}{}", &url[origin.len()..]),
                Some(origin.split("://").nth(1).unwrap_or(origin).to_owned()),
            ),
            _ => (url.to_owned(), None),
        }
    }

    /// The cookies the jar would send to `url`.
    pub fn cookies(&self, url: &str) -> Option<String> {
        self.jar
            .cookies(&url.parse().unwrap())
            .map(|v| v.to_str().unwrap().to_owned())
    }

    async fn read(r: reqwest::Response) -> Page {
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        let (target, host) = self.target(url);
        let mut req = self.http.get(&target);
        if let Some(h) = host {
            req = req.header(header::HOST, h);
        }
        if let Some(l) = &self.accept_language {
            req = req.header(header::ACCEPT_LANGUAGE, l);
        }
        if let Some(ip) = &self.forwarded_for {
            req = req.header("x-forwarded-for", ip);
        }
        Self::read(
            req.header(header::USER_AGENT, &self.user_agent)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}")),
        )
        .await
    }

    pub async fn post(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let (target, host) = self.target(url);
        let mut req = self.http.post(&target);
        if let Some(h) = host {
            req = req.header(header::HOST, h);
        }
        if let Some(l) = &self.accept_language {
            req = req.header(header::ACCEPT_LANGUAGE, l);
        }
        if let Some(ip) = &self.forwarded_for {
            req = req.header("x-forwarded-for", ip);
        }
        Self::read(
            req.header(header::USER_AGENT, &self.user_agent)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {url}: {e}")),
        )
        .await
    }

    /// Posts `page`'s form to its action with its `_csrf` and `fields`.
    pub async fn submit(&self, page: &Page, fields: &[(&str, &str)]) -> Page {
        let action = page
            .form_action()
            .unwrap_or_else(|| panic!("no form on the page: {}", page.body));
        let csrf = page.input("_csrf").expect("the form carries _csrf");
        let mut all = vec![("_csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(&action, &all).await
    }

    /// Follows `Location` of `page` with a GET.
    pub async fn follow(&self, page: &Page) -> Page {
        let loc = page
            .location()
            .unwrap_or_else(|| panic!("no redirect: {} {}", page.status, page.body));
        self.get(&loc).await
    }

    /// Opens `{issuer}/login` and signs in; returns the page after the POST.
    pub async fn sign_in(&self, issuer: &str, username: &str, password: &str) -> Page {
        let form = self.get(&format!("{issuer}/login")).await;
        form.assert_status(200);
        self.submit(&form, &[("username", username), ("password", password)])
            .await
    }
}

/// Creates user `username` with `password` (breach check off: no network in tests), as
/// `authserver users create` does but in-process ([`TestDb::commands`]).
pub async fn create_user(db: &TestDb, username: &str, password: &str) {
    user_cli(db)
        .commands()
        .await
        .create_user(&["--username", username, "--password-stdin"], password)
        .await
        .unwrap_or_else(|e| panic!("users create {username}: {e:#}"));
}

/// `db.cli()` with cheap Argon2 parameters and the breach check failing open at once.
pub fn user_cli(db: &TestDb) -> Cli {
    fast(db.cli())
}

/// Settings that keep password work small in tests.
pub fn fast(cli: Cli) -> Cli {
    cli.env("GATEHOUSE_PASSWORDS_BREACHED", "warn")
        .env("GATEHOUSE_PASSWORDS_HIBP_BASE_URL", "http://127.0.0.1:1")
        .env("GATEHOUSE_PASSWORDS_HIBP_TIMEOUT_SECONDS", "1")
        .env("GATEHOUSE_PASSWORDS_ARGON2_MEMORY_KIB", "8192")
        .env("GATEHOUSE_PASSWORDS_ARGON2_ITERATIONS", "1")
}
