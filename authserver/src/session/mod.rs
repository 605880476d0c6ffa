//! Browser sessions: the cookie, its server-side row, the CSRF token, the accounts signed
//! in to the browser (each an OpenID Connect session with its `sid`), timeouts and
//! bindings from the tenant's session policy, and optional encryption of the row's data.
//!
//! A browser row is created only when one is needed (a form to protect, a sign-in), so
//! crawlers and health checks do not fill the table. Its id is rotated at every sign-in
//! (session fixation). Timeouts: every row has an idle expiry moved forward on use (at
//! most once a minute, to keep reads cheap) and never beyond its absolute end.

pub mod cookie;

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use crate::clock::{Clock, UnixTime};
use crate::config::SessionSettings;
use crate::crypto::{self, kek::Kek};
use crate::domain::policy::{SessionPolicy, TenantPolicy};
use crate::domain::tenant::Tenant;
use crate::store::audit::AuditEvent;
use crate::store::sessions::{self, AccountSession, BrowserRow};
use crate::store::{self, Store, UnitOfWork};

/// How often a session's `last_seen_at` (and idle expiry) is written at most.
pub const TOUCH_INTERVAL_SECONDS: i64 = 60;
/// How long a half-finished sign-in (password done, second factor pending) lasts.
pub const PENDING_LOGIN_SECONDS: i64 = 300;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("failed to encode session data: {0}")]
    Encode(#[source] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the browser row's `data` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserData {
    /// The CSRF token every form of this browser carries as `_csrf`.
    pub csrf: String,
    /// The account the browser uses unless told otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_sid: Option<String>,
    /// A sign-in waiting for its second factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingLogin>,
    /// Where a sign-in that is not for an authorization request ends (set by the
    /// sign-in form an account page sent the browser to; cleared by signing in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_to: Option<ReturnTo>,
    /// A passkey ceremony waiting for the authenticator's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceremony: Option<Ceremony>,
    /// The `ui_locales` of the authorization request this browser started last: the
    /// pages of its sign-in are in that language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_locales: Option<String>,
    /// The preferred language (`locale` profile claim) of the user who signed in last,
    /// or who is signing in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_locale: Option<String>,
    /// A sign-in at an upstream identity provider waiting for its callback: the
    /// `state` the callback must bring back, the `nonce` and the PKCE verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::federation::UpstreamAttempt>,
    /// An upstream account waiting for the user to prove the local account it is to
    /// be linked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<PendingLink>,
}

/// An upstream sign-in whose account matches a local user by verified e-mail address:
/// it is linked (and signs in) only once the user proves that account's password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLink {
    pub identity: crate::federation::UpstreamIdentity,
    pub user_id: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub expires_at: UnixTime,
}

/// What a passkey ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeremonyPurpose {
    /// Passwordless sign-in with a discoverable passkey.
    SignIn,
    /// The pending sign-in's second factor.
    SecondFactor,
    /// A passkey registered instead of TOTP, during enrolment.
    Enroll,
    /// A passkey added on the account pages.
    Register,
    /// The proof of the local account an upstream account is to be linked to.
    Link,
}

/// A started WebAuthn ceremony: the library's state (its challenge), kept on the server
/// and used once — taken out of the session before the answer is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ceremony {
    pub purpose: CeremonyPurpose,
    /// The user it is for (registration and second factor); `None` for sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub state: String,
    pub expires_at: UnixTime,
}

/// A page of ours a sign-in without an authorization request returns to. A closed
/// list, never a URL: nothing to turn into an open redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnTo {
    /// The account pages (`{issuer}/account`).
    Account,
}

impl ReturnTo {
    /// The `return_to` query value of the sign-in page.
    pub fn parse(value: &str) -> Option<Self> {
        (value == "account").then_some(Self::Account)
    }
}

/// The stage a pending sign-in is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingStage {
    /// Enter a TOTP or recovery code.
    Verify,
    /// MFA is required but not set up: enrol first.
    Enroll,
    /// Enrolled; the recovery codes were shown; continue to finish the sign-in.
    Enrolled,
    /// New-device verification of a user without a second factor: enter the code
    /// mailed to the verified address.
    EmailCode,
}

/// Password verified, second factor outstanding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub user_id: String,
    pub username: String,
    pub amr: Vec<String>,
    pub stage: PendingStage,
    pub expires_at: UnixTime,
    /// The authorization request handle the sign-in continues, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The request asked for phishing-resistant authentication: only a passkey will do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passkey_only: bool,
    /// At [`PendingStage::EmailCode`]: the SHA-256 of the mailed code (never the code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_code_hash: Option<String>,
    /// Wrong codes entered for it; at the limit the code is dead (`interaction`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub email_code_failures: u8,
}

// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// Where a request comes from, for binding checks and audit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The browser's device cookie (`email::device`), when it sent one.
    pub device: Option<String>,
}

impl Origin {
    /// The client's address and its `User-Agent` (cut to 512 characters).
    pub fn new(ip: Option<std::net::IpAddr>, user_agent: Option<&str>) -> Self {
        Self {
            ip: ip.map(|i| i.to_string()),
            user_agent: user_agent.map(|s| s.chars().take(512).collect()),
            device: None,
        }
    }
}

/// A loaded (or new) browser session.
#[derive(Debug, Clone)]
pub struct Browser {
    pub row: BrowserRow,
    pub data: BrowserData,
    pub https: bool,
    /// A cookie value the response must set (new or rotated session).
    pub new_cookie: Option<String>,
    /// A device cookie value the response must set (`email::device`).
    pub device_cookie: Option<String>,
}

impl Browser {
    /// The `Set-Cookie` header this response needs, if any.
    pub fn set_cookie(&self) -> Option<String> {
        self.new_cookie
            .as_deref()
            .map(|v| cookie::set(&self.row.tenant_id, self.https, v))
    }

    /// The device cookie's `Set-Cookie` header, when this response must set one.
    pub fn set_device_cookie(&self) -> Option<String> {
        self.device_cookie
            .as_deref()
            .map(|v| crate::email::device::set(&self.row.tenant_id, self.https, v))
    }
}

/// Who signs in, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub user_id: String,
    /// The user's preferred language, for the pages after the sign-in.
    pub locale: Option<String>,
    /// RFC 8176 method references (`pwd`, `otp`, `mfa`, …).
    pub amr: Vec<String>,
    pub acr: Option<String>,
}

/// A sign-in written in a unit of work: what the browser is once the unit commits.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The browser with its new id (and the cookie naming it) and its active account.
    pub browser: Browser,
    /// The new account session.
    pub session: AccountSession,
}

/// Browser sessions and their accounts.
pub struct SessionService {
    store: Store,
    clock: Arc<dyn Clock>,
    settings: SessionSettings,
    data_key: Option<LessSafeKey>,
}

impl std::fmt::Debug for SessionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

const ENC_PREFIX: &str = "enc1:";

impl SessionService {
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: SessionSettings, kek: &Kek) -> Self {
        let data_key = settings.encrypt_data.then(|| {
            let key = kek.derive("session-data");
            // A 32-byte key is always a valid AES-256 key.
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte AES-256 key"))
        });
        Self {
            store,
            clock,
            settings,
            data_key,
        }
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    fn encode(&self, tenant_id: &str, id_hash: &str, data: &BrowserData) -> Result<String> {
        let json = serde_json::to_string(data).map_err(Error::Encode)?;
        let Some(key) = &self.data_key else {
            return Ok(json);
        };
        let nonce = crypto::random_bytes::<NONCE_LEN>();
        let mut body = json.into_bytes();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(tenant_id, id_hash)),
            &mut body,
        )
        .expect("AES-GCM seal of a small buffer");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&body);
        Ok(format!("{ENC_PREFIX}{}", crypto::b64url(&out)))
    }

    /// `None` when the data cannot be read (tampered, or written under another key or
    /// encryption setting): the session is then treated as gone.
    fn decode(&self, row: &BrowserRow) -> Option<BrowserData> {
        let json = match (&self.data_key, row.data.strip_prefix(ENC_PREFIX)) {
            (Some(key), Some(b64)) => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(b64)
                    .ok()?;
                if raw.len() < NONCE_LEN {
                    return None;
                }
                let (nonce, body) = raw.split_at(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                let mut body = body.to_vec();
                let plain = key
                    .open_in_place(
                        nonce,
                        Aad::from(aad(&row.tenant_id, &row.id_hash)),
                        &mut body,
                    )
                    .ok()?;
                String::from_utf8(plain.to_vec()).ok()?
            }
            (None, None) => row.data.clone(),
            _ => return None,
        };
        serde_json::from_str(&json).ok()
    }

    /// The browser session `cookie` (the value of the tenant's session cookie) names,
    /// if it is still valid. An expired
    /// one, or one whose bound IP or User-Agent changed, is deleted.
    pub async fn load(
        &self,
        tenant: &Tenant,
        cookie: Option<&str>,
        origin: &Origin,
    ) -> Result<Option<Browser>> {
        let https = tenant.issuer.starts_with("https://");
        let Some(handle) = cookie else {
            return Ok(None);
        };
        let id_hash = crypto::handle_hash(handle);
        let Some(row) = self.store.get_browser_session(&tenant.id, &id_hash).await? else {
            return Ok(None);
        };
        let policy = TenantPolicy::of(tenant).session;
        let now = self.clock.now();
        if let Some(reason) = invalid_reason(&row, &policy, origin, now) {
            let ended = self
                .store
                .delete_browser_session(&tenant.id, &id_hash)
                .await?;
            if reason != "expired" {
                for s in ended {
                    self.audit(tenant, "session.revoked", &s.user_id, origin)
                        .details(serde_json::json!({ "sid": s.sid, "reason": reason }))
                        .record(&self.store)
                        .await;
                }
            }
            return Ok(None);
        }
        let Some(data) = self.decode(&row) else {
            tracing::warn!(tenant = %tenant.id, "unreadable browser session data; ending the session");
            self.store
                .delete_browser_session(&tenant.id, &id_hash)
                .await?;
            return Ok(None);
        };
        let mut row = row;
        // A pre-session (nobody signed in yet) keeps its short life however often it is
        // used: unauthenticated traffic must not keep rows alive (see `create`).
        if data.active_sid.is_some() && now - row.last_seen_at >= TOUCH_INTERVAL_SECONDS {
            let expires = idle_expiry(row.created_at, &policy, now);
            self.store
                .touch_browser_session(
                    &tenant.id,
                    &id_hash,
                    now,
                    expires,
                    now + secs(policy.idle_timeout_seconds),
                )
                .await?;
            row.last_seen_at = now;
            row.expires_at = expires;
        }
        Ok(Some(Browser {
            row,
            data,
            https,
            new_cookie: None,
            device_cookie: None,
        }))
    }

    /// A new browser session (and its cookie). Until someone signs in it is a
    /// pre-session: it lives [`PRE_SESSION_SECONDS`] and is not extended by use, so
    /// unauthenticated `/authorize` and `/login` traffic (rate-limited per IP) leaves at
    /// most a bounded number of rows, which `authserver purge` (target `sessions`)
    /// removes once expired.
    pub async fn create(&self, tenant: &Tenant, origin: &Origin) -> Result<Browser> {
        let policy = TenantPolicy::of(tenant).session;
        let now = self.clock.now();
        let handle = crypto::new_handle();
        let data = BrowserData {
            csrf: crypto::new_handle(),
            ..BrowserData::default()
        };
        let mut row = BrowserRow {
            tenant_id: tenant.id.clone(),
            id_hash: crypto::handle_hash(&handle),
            data: String::new(),
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: idle_expiry(now, &policy, now).min(now + PRE_SESSION_SECONDS),
        };
        row.data = self.encode(&row.tenant_id, &row.id_hash, &data)?;
        self.store.insert_browser_session(&row).await?;
        Ok(Browser {
            row,
            data,
            https: tenant.issuer.starts_with("https://"),
            new_cookie: Some(handle),
            device_cookie: None,
        })
    }

    /// Writes the browser's data back.
    pub async fn save(&self, b: &Browser) -> Result<()> {
        let text = self.encode(&b.row.tenant_id, &b.row.id_hash, &b.data)?;
        self.store
            .set_browser_session_data(&b.row.tenant_id, &b.row.id_hash, &text)
            .await?;
        Ok(())
    }

    /// The browser's accounts that are still valid, newest first; expired ones are
    /// deleted on the way.
    pub async fn accounts(&self, b: &Browser) -> Result<Vec<AccountSession>> {
        let now = self.clock.now();
        let all = self
            .store
            .list_browser_accounts(&b.row.tenant_id, &b.row.id_hash)
            .await?;
        let mut valid = Vec::with_capacity(all.len());
        for s in all {
            if s.is_valid(now) {
                valid.push(s);
            } else {
                self.store.delete_session(&s.tenant_id, &s.sid).await?;
            }
        }
        Ok(valid)
    }

    /// The active account: the one `active_sid` names when still valid, else the newest.
    pub async fn active_account(&self, b: &Browser) -> Result<Option<AccountSession>> {
        let accounts = self.accounts(b).await?;
        let active = b
            .data
            .active_sid
            .as_ref()
            .and_then(|sid| accounts.iter().find(|a| &a.sid == sid).cloned());
        Ok(active.or_else(|| accounts.into_iter().next()))
    }

    /// Signs `who` in to the browser `b`, in `unit`: rotates the browser id, creates
    /// the account session (ending the oldest beyond the tenant's per-user and the
    /// per-browser limits) and makes it the active account. Audits `session.created`
    /// and `session.evicted` in the unit too.
    ///
    /// `b` is left as it is: the browser with its new id and cookie is returned, for
    /// the caller to use once the unit commits. A unit that is dropped instead leaves
    /// the caller with the browser it had, and the database as it was.
    pub async fn sign_in(
        &self,
        unit: &mut UnitOfWork,
        tenant: &Tenant,
        b: &Browser,
        who: Authentication,
        origin: &Origin,
    ) -> Result<SignedIn> {
        let policy = TenantPolicy::of(tenant).session;
        let now = self.clock.now();
        let handle = crypto::new_handle();
        let new_hash = crypto::handle_hash(&handle);
        let session = AccountSession {
            tenant_id: tenant.id.clone(),
            sid: crypto::new_handle(),
            browser_id_hash: new_hash.clone(),
            user_id: who.user_id,
            auth_time: now,
            amr: who.amr,
            acr: who.acr,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now + secs(policy.idle_timeout_seconds),
            expires_at: now + secs(policy.absolute_timeout_seconds),
        };

        let mut browser = b.clone();
        browser.data.pending = None;
        browser.data.link = None;
        browser.data.return_to = None;
        browser.data.csrf = crypto::new_handle();
        browser.data.active_sid = Some(session.sid.clone());
        browser.data.user_locale = who.locale;
        let text = self.encode(&tenant.id, &new_hash, &browser.data)?;
        // Signed in: from a pre-session's short life to the tenant's idle timeout.
        browser.row.last_seen_at = now;
        browser.row.expires_at = idle_expiry(browser.row.created_at, &policy, now);
        sessions::rotate(unit.conn(), &browser.row, &new_hash, &text).await?;
        browser.row.id_hash = new_hash;
        browser.row.data = text;
        browser.new_cookie = Some(handle);

        let outcome = sessions::insert(
            unit.conn(),
            &session,
            policy.max_sessions_per_user,
            self.settings.max_accounts,
        )
        .await?;
        let created = self
            .audit(tenant, "session.created", &session.user_id, origin)
            .details(serde_json::json!({ "sid": session.sid, "amr": session.amr }));
        unit.audit(created.0);
        for (sid, victim) in outcome.evicted {
            let evicted = self
                .audit(tenant, "session.evicted", &victim, origin)
                .details(serde_json::json!({ "sid": sid }));
            unit.audit(evicted.0);
        }
        Ok(SignedIn { browser, session })
    }

    /// Ends one account of this browser (audit `session.revoked`, reason `logout`).
    /// When none remain the browser session is deleted too; returns whether any remain.
    pub async fn end_account(
        &self,
        tenant: &Tenant,
        b: &mut Browser,
        sid: &str,
        origin: &Origin,
    ) -> Result<bool> {
        use crate::store::sessions;
        let now = self.clock.now();
        let ending = self.store.get_session(&tenant.id, sid).await?;
        // One unit of work: the account ends, expired accounts go, and the browser
        // either names its next account or goes too; a failure keeps the browser as it
        // was, never half signed out.
        let mut unit = self.store.begin().await?;
        let ended = sessions::delete(unit.conn(), &tenant.id, sid).await?;
        let mut remaining = Vec::new();
        for s in sessions::browser_accounts(unit.conn(), &tenant.id, &b.row.id_hash).await? {
            if s.is_valid(now) {
                remaining.push(s);
            } else {
                sessions::delete(unit.conn(), &tenant.id, &s.sid).await?;
            }
        }
        let signed_in = if remaining.is_empty() {
            sessions::delete_browser(unit.conn(), &tenant.id, &b.row.id_hash).await?;
            false
        } else {
            if b.data.active_sid.as_deref() == Some(sid) {
                b.data.active_sid = remaining.first().map(|a| a.sid.clone());
                let text = self.encode(&b.row.tenant_id, &b.row.id_hash, &b.data)?;
                sessions::set_data(unit.conn(), &tenant.id, &b.row.id_hash, &text).await?;
            }
            true
        };
        unit.commit().await?;
        // After the commit and best effort: a broken audit table must not keep anyone
        // signed in (a sign-in, by contrast, fails without its audit).
        if let Some(s) = ending.filter(|_| ended) {
            self.audit(tenant, "session.revoked", &s.user_id, origin)
                .details(serde_json::json!({ "sid": sid, "reason": "logout" }))
                .record(&self.store)
                .await;
        }
        Ok(signed_in)
    }

    /// Ends the user's session `sid` in another browser (the account pages' "sign out"
    /// of one device); `false`, and nothing changed, when no such session of this user
    /// exists: a session id of someone else is treated like an unknown one. Audits
    /// `session.revoked`, reason `account_page`.
    pub async fn revoke_user_session(
        &self,
        tenant: &Tenant,
        user_id: &str,
        sid: &str,
        origin: &Origin,
    ) -> Result<bool> {
        let ended = self
            .store
            .delete_user_session(&tenant.id, user_id, sid)
            .await?;
        if ended {
            self.audit(tenant, "session.revoked", user_id, origin)
                .details(serde_json::json!({ "sid": sid, "reason": "account_page" }))
                .record(&self.store)
                .await;
        }
        Ok(ended)
    }

    /// Ends every session of the user but `keep` (the account pages' "sign out
    /// everywhere else"); how many. Audits `session.revoked` for each.
    pub async fn revoke_other_user_sessions(
        &self,
        tenant: &Tenant,
        user_id: &str,
        keep: &str,
        origin: &Origin,
    ) -> Result<usize> {
        let ended = self
            .store
            .delete_other_user_sessions(&tenant.id, user_id, keep)
            .await?;
        for sid in &ended {
            self.audit(tenant, "session.revoked", user_id, origin)
                .details(serde_json::json!({ "sid": sid, "reason": "account_page" }))
                .record(&self.store)
                .await;
        }
        Ok(ended.len())
    }

    fn audit(&self, tenant: &Tenant, event: &str, user_id: &str, origin: &Origin) -> Audit {
        Audit(
            AuditEvent::new(&tenant.id, self.clock.now(), event)
                .actor(Some("user"))
                .subject(Some(user_id))
                .ip(origin.ip.as_deref()),
        )
    }
}

/// An audit event being built (keeps call sites short).
struct Audit(AuditEvent);

impl Audit {
    fn details(self, d: serde_json::Value) -> Self {
        Self(self.0.details(d))
    }

    async fn record(self, store: &Store) {
        store.audit(self.0).await;
    }
}

/// Compares a submitted `_csrf` with the browser's token in constant time.
pub fn csrf_matches(b: &Browser, submitted: Option<&str>) -> bool {
    let Some(submitted) = submitted else {
        return false;
    };
    let expected = b.data.csrf.as_bytes();
    !expected.is_empty() && bool::from(expected.ct_eq(submitted.as_bytes()))
}

fn aad(tenant_id: &str, id_hash: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(tenant_id.len() + id_hash.len() + 1);
    v.extend_from_slice(tenant_id.as_bytes());
    v.push(0);
    v.extend_from_slice(id_hash.as_bytes());
    v
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX / 2)
}

/// The idle expiry after activity at `now`: never past the absolute end.
/// How long a browser session lives before anyone signs in: longer than an
/// authorization request (10 minutes) so a slow sign-in still completes.
pub const PRE_SESSION_SECONDS: UnixTime = 15 * 60;

pub fn idle_expiry(created_at: UnixTime, policy: &SessionPolicy, now: UnixTime) -> UnixTime {
    (now + secs(policy.idle_timeout_seconds))
        .min(created_at + secs(policy.absolute_timeout_seconds))
}

/// Why a stored browser session may not be used any more, if it may not.
pub fn invalid_reason(
    row: &BrowserRow,
    policy: &SessionPolicy,
    origin: &Origin,
    now: UnixTime,
) -> Option<&'static str> {
    if now >= row.expires_at || now >= row.created_at + secs(policy.absolute_timeout_seconds) {
        return Some("expired");
    }
    if policy.bind_ip && row.ip != origin.ip {
        return Some("ip_changed");
    }
    if policy.bind_user_agent && row.user_agent != origin.user_agent {
        return Some("user_agent_changed");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(created: i64, expires: i64) -> BrowserRow {
        BrowserRow {
            tenant_id: "t".into(),
            id_hash: "h".into(),
            data: "{}".into(),
            ip: Some("192.0.2.1".into()),
            user_agent: Some("UA".into()),
            created_at: created,
            last_seen_at: created,
            expires_at: expires,
        }
    }

    fn origin(ip: &str, ua: &str) -> Origin {
        Origin {
            ip: Some(ip.into()),
            user_agent: Some(ua.into()),
            device: None,
        }
    }

    #[test]
    fn idle_expiry_moves_forward_but_never_past_the_absolute_end() {
        let p = SessionPolicy::default();
        assert_eq!(idle_expiry(1000, &p, 1000), 1000 + 1800);
        assert_eq!(idle_expiry(1000, &p, 5000), 5000 + 1800);
        assert_eq!(idle_expiry(1000, &p, 1000 + 86_000), 1000 + 86_400);
    }

    #[test]
    fn sessions_end_at_idle_and_absolute_timeouts() {
        let p = SessionPolicy::default();
        let clock = crate::clock::FixedClock::new(1000);
        let r = row(1000, idle_expiry(1000, &p, clock.now()));
        let o = origin("192.0.2.1", "UA");
        assert_eq!(invalid_reason(&r, &p, &o, clock.now()), None);
        clock.advance(1799);
        assert_eq!(invalid_reason(&r, &p, &o, clock.now()), None);
        clock.advance(1);
        assert_eq!(invalid_reason(&r, &p, &o, clock.now()), Some("expired"));
        // Kept alive by activity, it still ends at the absolute timeout.
        let kept = row(1000, 1000 + 86_400 + 500);
        assert_eq!(
            invalid_reason(&kept, &p, &o, 1000 + 86_400),
            Some("expired")
        );
    }

    #[test]
    fn bindings_end_a_session_when_ip_or_user_agent_change() {
        let mut p = SessionPolicy::default();
        let r = row(0, 100);
        assert_eq!(
            invalid_reason(&r, &p, &origin("198.51.100.1", "X"), 1),
            None
        );
        p.bind_ip = true;
        assert_eq!(
            invalid_reason(&r, &p, &origin("198.51.100.1", "UA"), 1),
            Some("ip_changed")
        );
        p.bind_ip = false;
        p.bind_user_agent = true;
        assert_eq!(
            invalid_reason(&r, &p, &origin("198.51.100.1", "Other"), 1),
            Some("user_agent_changed")
        );
        assert_eq!(invalid_reason(&r, &p, &origin("192.0.2.1", "UA"), 1), None);
    }

    #[test]
    fn csrf_is_compared_exactly() {
        let b = Browser {
            row: row(0, 100),
            data: BrowserData {
                csrf: "token-abc".into(),
                ..BrowserData::default()
            },
            https: false,
            new_cookie: None,
            device_cookie: None,
        };
        assert!(csrf_matches(&b, Some("token-abc")));
        assert!(!csrf_matches(&b, Some("token-abd")));
        assert!(!csrf_matches(&b, Some("token-ab")));
        assert!(!csrf_matches(&b, Some("")));
        assert!(!csrf_matches(&b, None));
        let empty = Browser {
            data: BrowserData::default(),
            ..b
        };
        assert!(!csrf_matches(&empty, Some("")));
    }

    #[test]
    fn encrypted_data_round_trips_and_is_bound_to_its_row() {
        let kek = Kek::from_hex(&secrecy::SecretString::from("11".repeat(32))).unwrap();
        let store_settings = crate::config::DatabaseSettings {
            url: secrecy::SecretString::from("sqlite::memory:"),
            max_connections: 1,
            connect_timeout_seconds: 1,
            startup_timeout_seconds: 1,
            acquire_timeout_ms: crate::config::DEFAULT_ACQUIRE_TIMEOUT_MS,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(Store::connect(&store_settings)).unwrap();
        let svc = SessionService::new(
            store,
            crate::clock::FixedClock::new(0),
            SessionSettings {
                encrypt_data: true,
                ..SessionSettings::default()
            },
            &kek,
        );
        let data = BrowserData {
            csrf: "c".into(),
            active_sid: Some("s".into()),
            pending: None,
            ceremony: None,
            return_to: Some(ReturnTo::Account),
            ui_locales: Some("de".into()),
            user_locale: None,
            upstream: None,
            link: None,
        };
        let mut r = row(0, 100);
        r.data = svc.encode("t", "h", &data).unwrap();
        assert!(r.data.starts_with(ENC_PREFIX));
        assert!(!r.data.contains("\"csrf\""));
        assert_eq!(svc.decode(&r), Some(data));
        r.id_hash = "other".into();
        assert_eq!(svc.decode(&r), None);
        r.data = "{\"csrf\":\"c\"}".into();
        assert_eq!(
            svc.decode(&r),
            None,
            "plain data is not accepted when encryption is on"
        );
    }
}
