//! E-mail flows: verification of a user's address, password reset by e-mail link,
//! self-service registration, and the optional notice of a sign-in from a new device.
//!
//! The request path never talks to SMTP: a flow renders its mail ([`crate::ui`]'s
//! `mail_*` templates, text and HTML parts), seals it under the ENCRYPTION_KEY (it carries
//! a single-use link) and inserts it into the outbox in the same unit of work as the
//! change that caused it; each pod's [`Outbox`] sender claims due mail with a lease,
//! sends it, and retries failures with backoff (see [`sender`]). A slow or dead relay
//! therefore costs a request nothing, and nothing queued is lost on a restart.
//!
//! Links carry a 256-bit random token; the database keeps only its SHA-256
//! (`crypto::handle_hash`), the purpose, the user and the address it was sent to. A
//! link works once (one conditional `UPDATE`), until it expires, and only while the
//! user's address is still the one it was sent to.
//!
//! The password-reset request answers the same page with the same status whether or
//! not the address belongs to an account, and does the same work either way (look-up,
//! count, token, rendering; only the inserts differ), so neither the response nor its
//! timing says which addresses exist. Mail per address and kind is capped
//! (`email.per_address_per_hour`): further requests are answered the same and send
//! nothing. Requests per source IP are limited at the edge (`rate_limits.email_per_ip`).

pub mod device;
pub mod sender;

use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::clients::Actor;
use crate::clock::{Clock, UnixTime};
use crate::config::EmailSettings;
use crate::crypto::kek::Kek;
use crate::crypto::{handle_hash, new_handle};
use crate::domain::client::{FieldError, Invalid};
use crate::domain::policy::TenantPolicy;
use crate::domain::tenant::Tenant;
use crate::domain::user::{NewUser, check_password_length};
use crate::interaction::Visit;
use crate::session::{Origin, SessionService};
use crate::store::audit::AuditEvent;
use crate::store::email::{self as outbox, NewMail};
use crate::store::users::StoredUser;
use crate::store::{self, Conn, Store};
use crate::ui::i18n::{Lang, Wishes};
use crate::ui::{MailParts, Templates};
use crate::users::{self, UserService};

pub use sender::{Outbox, backoff_seconds};

/// `GET {issuer}/email/verify?token=…`: the link in a verification mail.
pub const VERIFY_PATH: &str = "/email/verify";
/// `POST {issuer}/email/verify/resend` (`username`): a new verification link.
pub const RESEND_PATH: &str = "/email/verify/resend";
/// `GET/POST {issuer}/password/forgot` (`email`).
pub const FORGOT_PATH: &str = "/password/forgot";
/// `GET/POST {issuer}/password/reset?token=…` (`new_password`, `confirm_password`).
pub const RESET_PATH: &str = "/password/reset";
/// `GET/POST {issuer}/register`.
pub const REGISTER_PATH: &str = "/register";

/// How long a verification link works.
pub const VERIFY_SECONDS: i64 = 24 * 3600;
/// How long a password-reset link works.
pub const RESET_SECONDS: i64 = 30 * 60;
/// At most this many accounts sharing one address get a reset mail.
const MAX_ACCOUNTS_PER_ADDRESS: i64 = 3;

/// What a mail is for (`email_outbox.kind`, and the template `mail_<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    VerifyEmail,
    PasswordReset,
    NewDevice,
    /// The one-time code of new-device verification (users without a second factor).
    DeviceCode,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VerifyEmail => "verify_email",
            Kind::PasswordReset => "password_reset",
            Kind::NewDevice => "new_device",
            Kind::DeviceCode => "device_code",
        }
    }

    fn template(self) -> String {
        format!("mail_{}", self.as_str())
    }
}

/// Why an e-mail flow failed (ours, never the user's: their mistakes are pages).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Users(#[from] users::Error),
    #[error(transparent)]
    Session(#[from] crate::session::Error),
    #[error("failed to render a mail: {0}")]
    Template(#[from] crate::ui::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an e-mail page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailPage {
    /// The flow is off (no SMTP relay configured, or registration closed).
    NotFound,
    /// The "forgot your password" form.
    Forgot,
    /// The new-password form of a usable reset link.
    Reset {
        token: String,
        problem: Option<FormProblem>,
    },
    /// The registration form, refilled after a problem.
    Register {
        username: String,
        email: String,
        problem: Option<FormProblem>,
    },
    Notice(Notice),
}

/// What was wrong with a posted form of the flows. The flows know no language: the page
/// says it with the message [`FormProblem::message`] names (`email.ftl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormProblem {
    PasswordsDiffer,
    PasswordTooShort {
        min: usize,
    },
    PasswordTooLong {
        max: usize,
    },
    PasswordBreached,
    /// Refused by the password policy for another reason.
    PasswordRefused,
    UsernameMissing,
    /// Not a valid username (length, characters).
    UsernameInvalid,
    UsernameTaken,
    EmailInvalid,
    /// Another field was refused.
    Entries,
}

impl FormProblem {
    /// The message id and its arguments.
    pub fn message(self) -> (&'static str, Value) {
        match self {
            Self::PasswordsDiffer => ("problem-passwords-differ", Value::Null),
            Self::PasswordTooShort { min } => ("problem-password-too-short", json!({ "min": min })),
            Self::PasswordTooLong { max } => ("problem-password-too-long", json!({ "max": max })),
            Self::PasswordBreached => ("problem-password-breached", Value::Null),
            Self::PasswordRefused => ("problem-password-refused", Value::Null),
            Self::UsernameMissing => ("problem-username-missing", Value::Null),
            Self::UsernameInvalid => (
                "problem-username-invalid",
                json!({ "max": crate::domain::user::MAX_USERNAME_LEN }),
            ),
            Self::UsernameTaken => ("problem-username-taken", Value::Null),
            Self::EmailInvalid => ("problem-email-invalid", Value::Null),
            Self::Entries => ("problem-entries", Value::Null),
        }
    }

    /// The problem of a refused field (the user service's validation).
    fn of_field(e: &FieldError) -> Self {
        match (e.field, e.kind) {
            ("password", Invalid::TooShort { min }) => Self::PasswordTooShort { min },
            ("password", Invalid::TooLong { max }) => Self::PasswordTooLong { max },
            ("password", Invalid::Breached) => Self::PasswordBreached,
            ("password", _) => Self::PasswordRefused,
            ("username", _) => Self::UsernameInvalid,
            ("email", _) => Self::EmailInvalid,
            _ => Self::Entries,
        }
    }
}

/// The message pages of the flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// After a reset request, whatever the address.
    CheckInbox,
    /// After a request for a new verification link, whatever the account.
    LinkResent,
    /// The address is confirmed.
    Verified,
    /// The link is unknown, used, expired, or for an address the account no longer has.
    BadLink,
    /// The password was reset; every session ended.
    PasswordChanged,
    /// The account was created; `verify`: it cannot sign in before the address is
    /// confirmed.
    Registered { verify: bool },
}

/// The registration form as posted.
#[derive(Debug)]
pub struct Registration {
    pub username: String,
    pub email: String,
    pub password: SecretString,
    pub confirm_password: SecretString,
}

/// What a mail carries once sealed: its sender and its parts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Sealed {
    from: String,
    /// The mail's language (`Content-Language`); absent in mail queued before languages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lang: Option<String>,
    #[serde(flatten)]
    parts: MailParts,
}

/// The e-mail flows over the store, the user service and the templates.
#[derive(Debug)]
pub struct EmailFlows {
    store: Store,
    clock: Arc<dyn Clock>,
    kek: Arc<Kek>,
    ui: Arc<Templates>,
    users: Arc<UserService>,
    sessions: Arc<SessionService>,
    settings: EmailSettings,
}

impl EmailFlows {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        kek: Arc<Kek>,
        ui: Arc<Templates>,
        users: Arc<UserService>,
        sessions: Arc<SessionService>,
        settings: EmailSettings,
    ) -> Self {
        Self {
            store,
            clock,
            kek,
            ui,
            users,
            sessions,
            settings,
        }
    }

    /// Whether mail can be sent at all (`email.smtp_host` is set).
    pub fn enabled(&self) -> bool {
        self.settings.smtp.is_some()
    }

    /// Whether `tenant` offers self-service registration (and mail works).
    pub fn registration_open(&self, tenant: &Tenant) -> bool {
        self.enabled() && TenantPolicy::of(tenant).registration.enabled
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }

    // ---------------------------------------------------------------------------------
    // The service other flows call.

    /// Mails `user` a link that confirms their current address; `false` (nothing sent)
    /// when mail is off, the user has no address, or the address had its share of mail
    /// this hour. Call it after a self-registration and whenever a user's address
    /// changes (the account pages); an older link stops working with the change. The
    /// mail is in the user's language, else the visit's (see [`EmailFlows::mail_lang`]).
    pub async fn send_verification(&self, visit: &Visit, user: &StoredUser) -> Result<bool> {
        let tenant = &visit.tenant;
        let Some(email) = user.email.as_deref().filter(|e| !e.is_empty()) else {
            return Ok(false);
        };
        if !self.enabled() || self.over_limit(tenant, email, Kind::VerifyEmail).await? {
            return Ok(false);
        }
        let token = new_handle();
        let now = self.now();
        let link = link(&tenant.issuer, VERIFY_PATH, &token);
        let mail = self.compose(
            tenant,
            Kind::VerifyEmail,
            email,
            &self.mail_lang(tenant, Some(user), Some(&visit.lang)),
            &json!({
                "username": user.username,
                "email": email,
                "link": link,
                "valid_hours": VERIFY_SECONDS / 3600,
            }),
        )?;
        let event = AuditEvent::new(&tenant.id, now, "email.verification_sent")
            .subject(Some(&user.user_id))
            .details(json!({ "username": user.username }));
        self.queue_link(
            LinkMail {
                kind: Kind::VerifyEmail,
                mail,
                token: &token,
                user_id: &user.user_id,
                address: email,
                now,
                valid_seconds: VERIFY_SECONDS,
            },
            &event,
        )
        .await?;
        tracing::info!(tenant = %tenant.id, user_id = %user.user_id, "verification mail queued");
        Ok(true)
    }

    // ---------------------------------------------------------------------------------
    // Sign-in hooks (the interaction engine's sign-in step).

    /// Whether the tenant refuses this user's sign-in until their address is verified.
    pub fn blocks_sign_in(&self, tenant: &Tenant, user: &StoredUser) -> bool {
        TenantPolicy::of(tenant).email.require_verified
            && user.email.as_deref().is_some_and(|e| !e.is_empty())
            && !user.email_verified
    }

    /// Whether the tenant's new-device notice is on (and mail works): the sign-in must
    /// then remember devices (`devices`) so that a new one can be told apart.
    pub fn notices_new_devices(&self, tenant: &Tenant) -> bool {
        self.enabled() && TenantPolicy::of(tenant).email.new_device_notice
    }

    /// Part of the sign-in's unit of work: when the tenant asks for it, queues the
    /// new-device notice (to a verified address, and not for the first device a user is
    /// ever seen on: `seen`, from `devices`), in the user's language or else the
    /// sign-in page's (`lang`).
    pub async fn on_sign_in(
        &self,
        mut conn: Conn<'_>,
        tenant: &Tenant,
        user: &StoredUser,
        origin: &Origin,
        lang: &Lang,
        seen: Option<crate::devices::Seen>,
    ) -> Result<()> {
        let Some(seen) = seen.filter(|_| self.notices_new_devices(tenant)) else {
            return Ok(());
        };
        let now = self.now();
        let email = user.email.as_deref().filter(|_| user.email_verified);
        if let (false, true, Some(email)) = (seen.this_device, seen.any_device, email) {
            let mail = self.compose(
                tenant,
                Kind::NewDevice,
                email,
                &self.mail_lang(tenant, Some(user), Some(lang)),
                &json!({
                    "username": user.username,
                    "time": crate::clock::rfc3339(now),
                    // Missing ones are said in the mail's language.
                    "ip": origin.ip,
                    "user_agent": origin.user_agent,
                    "forgot_url": format!("{}{FORGOT_PATH}", tenant.issuer),
                }),
            )?;
            outbox::insert_mail(conn.reborrow(), &mail).await?;
            tracing::info!(tenant = %tenant.id, user_id = %user.user_id, "new-device notice queued");
        }
        Ok(())
    }

    /// Mails `code` (new-device verification) to the user's verified address, in their
    /// language or else the page's. `false`, nothing sent: mail is off, the user has no
    /// verified address, or the address had its share of these mails this hour.
    pub async fn send_device_code(
        &self,
        tenant: &Tenant,
        user: &StoredUser,
        code: &str,
        lang: &Lang,
    ) -> Result<bool> {
        let Some(email) = user
            .email
            .as_deref()
            .filter(|e| !e.is_empty() && user.email_verified)
        else {
            return Ok(false);
        };
        if !self.enabled() || self.over_limit(tenant, email, Kind::DeviceCode).await? {
            return Ok(false);
        }
        let mail = self.compose(
            tenant,
            Kind::DeviceCode,
            email,
            &self.mail_lang(tenant, Some(user), Some(lang)),
            &json!({
                "username": user.username,
                "code": code,
                "minutes": crate::session::PENDING_LOGIN_SECONDS / 60,
            }),
        )?;
        self.store.queue_mail(&mail).await?;
        tracing::info!(tenant = %tenant.id, user_id = %user.user_id, "device verification code mailed");
        Ok(true)
    }

    /// Whether a device code can be mailed to `user` at all (mail works, a verified
    /// address): the engine offers the e-mail code only then.
    pub fn can_send_device_code(&self, user: &StoredUser) -> bool {
        self.enabled()
            && user.email_verified
            && user.email.as_deref().is_some_and(|e| !e.is_empty())
    }

    // ---------------------------------------------------------------------------------
    // Page steps (`http::browser::email`).

    /// A browser session for the form's CSRF token.
    async fn ensure_browser(&self, visit: &mut Visit) -> Result<()> {
        if visit.browser.is_none() {
            visit.browser = Some(self.sessions.create(&visit.tenant, &visit.origin).await?);
        }
        Ok(())
    }

    /// `GET /password/forgot`.
    pub async fn forgot_form(&self, visit: &mut Visit) -> Result<EmailPage> {
        if !self.enabled() {
            return Ok(EmailPage::NotFound);
        }
        self.ensure_browser(visit).await?;
        Ok(EmailPage::Forgot)
    }

    /// `POST /password/forgot`: the same notice whatever the address, after the same
    /// work (see the module docs).
    pub async fn forgot(&self, visit: &Visit, email: &str) -> Result<EmailPage> {
        if !self.enabled() {
            return Ok(EmailPage::NotFound);
        }
        let tenant = &visit.tenant;
        let email = email.trim();
        let users = if plausible_address(email) {
            self.store
                .get_users_by_email(&tenant.id, email, MAX_ACCOUNTS_PER_ADDRESS)
                .await?
        } else {
            Vec::new()
        };
        let over = self.over_limit(tenant, email, Kind::PasswordReset).await?;
        let now = self.now();
        if users.is_empty() || over {
            // The work of the other branch, minus its writes: a token and a mail.
            let token = new_handle();
            let _ = handle_hash(&token);
            let _ = self.compose(
                tenant,
                Kind::PasswordReset,
                email,
                &self.mail_lang(tenant, None, Some(&visit.lang)),
                &reset_context(tenant, "", &token),
            )?;
        }
        if over {
            tracing::info!(tenant = %tenant.id, "password reset mail not sent: per-address limit");
        }
        for user in users.iter().filter(|_| !over) {
            let Some(address) = user.email.as_deref() else {
                continue;
            };
            let token = new_handle();
            let mail = self.compose(
                tenant,
                Kind::PasswordReset,
                address,
                &self.mail_lang(tenant, Some(user), Some(&visit.lang)),
                &reset_context(tenant, &user.username, &token),
            )?;
            let event = self
                .event(visit, "password.reset_requested")
                .subject(Some(&user.user_id))
                .details(json!({ "username": user.username }));
            self.queue_link(
                LinkMail {
                    kind: Kind::PasswordReset,
                    mail,
                    token: &token,
                    user_id: &user.user_id,
                    address,
                    now,
                    valid_seconds: RESET_SECONDS,
                },
                &event,
            )
            .await?;
        }
        Ok(EmailPage::Notice(Notice::CheckInbox))
    }

    /// `GET /password/reset?token=…`: the form, if the link is usable (it is used only
    /// when the form is posted).
    pub async fn reset_form(&self, visit: &mut Visit, token: &str) -> Result<EmailPage> {
        if !self.enabled() {
            return Ok(EmailPage::NotFound);
        }
        if self.usable_reset(visit, token).await?.is_none() {
            return Ok(EmailPage::Notice(Notice::BadLink));
        }
        self.ensure_browser(visit).await?;
        Ok(EmailPage::Reset {
            token: token.to_owned(),
            problem: None,
        })
    }

    /// `POST /password/reset?token=…`: checks the new password (tenant length, then the
    /// deployment's policy and breach check) and, in one unit of work, uses the link,
    /// sets the password, ends every session and live grant of the user, spends their
    /// other reset links and audits it.
    pub async fn reset(
        &self,
        visit: &Visit,
        token: &str,
        new_password: &SecretString,
        confirm_password: &SecretString,
    ) -> Result<EmailPage> {
        if !self.enabled() {
            return Ok(EmailPage::NotFound);
        }
        let Some(account) = self.usable_reset(visit, token).await? else {
            return Ok(EmailPage::Notice(Notice::BadLink));
        };
        let form = |problem: FormProblem| {
            Ok(EmailPage::Reset {
                token: token.to_owned(),
                problem: Some(problem),
            })
        };
        if new_password.expose_secret() != confirm_password.expose_secret() {
            return form(FormProblem::PasswordsDiffer);
        }
        if let Err(problem) = self
            .check_password(visit, &account.username, new_password)
            .await?
        {
            return form(problem);
        }
        let hash = self.users.hash_password(new_password).await?;
        let tenant = &visit.tenant;
        let now = self.now();
        let mut unit = self.store.begin().await?;
        let Some(used) = outbox::consume_token(
            unit.conn(),
            &tenant.id,
            &handle_hash(token),
            Kind::PasswordReset.as_str(),
            now,
        )
        .await?
        else {
            // Used meanwhile (another tab): nothing changes.
            return Ok(EmailPage::Notice(Notice::BadLink));
        };
        let ended =
            outbox::reset_password(unit.conn(), &tenant.id, &used.user_id, &hash, now).await?;
        outbox::spend_tokens(
            unit.conn(),
            &tenant.id,
            &used.user_id,
            Kind::PasswordReset.as_str(),
            now,
        )
        .await?;
        let event = self
            .event(visit, "user.password_reset")
            .subject(Some(&used.user_id))
            .details(json!({
                "username": account.username,
                "sessions_ended": ended.sessions,
                "grants_revoked": ended.grants,
            }));
        unit.audit(event);
        unit.commit().await?;
        // The user's grants were revoked in the unit: drop cached token state now.
        self.store.revoked();
        tracing::info!(
            tenant = %tenant.id,
            user_id = %used.user_id,
            sessions_ended = ended.sessions,
            grants_revoked = ended.grants,
            "password reset by e-mail link"
        );
        Ok(EmailPage::Notice(Notice::PasswordChanged))
    }

    /// `GET /email/verify?token=…`: uses the link and marks the address verified, if it
    /// is still the user's address.
    pub async fn verify(&self, visit: &Visit, token: &str) -> Result<EmailPage> {
        let tenant = &visit.tenant;
        let now = self.now();
        let mut unit = self.store.begin().await?;
        let Some(used) = outbox::consume_token(
            unit.conn(),
            &tenant.id,
            &handle_hash(token),
            Kind::VerifyEmail.as_str(),
            now,
        )
        .await?
        else {
            return Ok(EmailPage::Notice(Notice::BadLink));
        };
        if !outbox::set_email_verified(unit.conn(), &tenant.id, &used.user_id, &used.email, now)
            .await?
        {
            // The address changed since the link was sent: the link is void.
            return Ok(EmailPage::Notice(Notice::BadLink));
        }
        let event = self
            .event(visit, "user.email_verified")
            .subject(Some(&used.user_id));
        unit.audit(event);
        unit.commit().await?;
        tracing::info!(tenant = %tenant.id, user_id = %used.user_id, "e-mail address verified");
        Ok(EmailPage::Notice(Notice::Verified))
    }

    /// `POST /email/verify/resend`: a new link for an account whose address is not
    /// verified yet; the same notice whatever the account.
    pub async fn resend(&self, visit: &Visit, username: &str) -> Result<EmailPage> {
        if !self.enabled() {
            return Ok(EmailPage::NotFound);
        }
        let user = self
            .users
            .get_by_username(&visit.tenant.id, username.trim())
            .await?;
        if let Some(user) = user.filter(|u| !u.email_verified) {
            self.send_verification(visit, &user).await?;
        }
        Ok(EmailPage::Notice(Notice::LinkResent))
    }

    /// `GET /register`.
    pub async fn register_form(&self, visit: &mut Visit) -> Result<EmailPage> {
        if !self.registration_open(&visit.tenant) {
            return Ok(EmailPage::NotFound);
        }
        self.ensure_browser(visit).await?;
        Ok(EmailPage::Register {
            username: String::new(),
            email: String::new(),
            problem: None,
        })
    }

    /// `POST /register`: creates the account (unverified address) under the password
    /// policy and breach check, then mails the verification link.
    pub async fn register(&self, visit: &Visit, form: &Registration) -> Result<EmailPage> {
        let tenant = &visit.tenant;
        if !self.registration_open(tenant) {
            return Ok(EmailPage::NotFound);
        }
        let username = form.username.trim();
        let email = form.email.trim();
        let again = |problem: FormProblem| {
            Ok(EmailPage::Register {
                username: username.to_owned(),
                email: email.to_owned(),
                problem: Some(problem),
            })
        };
        if username.is_empty() {
            return again(FormProblem::UsernameMissing);
        }
        if !plausible_address(email) {
            return again(FormProblem::EmailInvalid);
        }
        if form.password.expose_secret() != form.confirm_password.expose_secret() {
            return again(FormProblem::PasswordsDiffer);
        }
        let policy = TenantPolicy::of(tenant).password;
        if let Err(e) = check_password_length(
            form.password.expose_secret(),
            policy.min_length,
            policy.max_length,
        ) {
            return again(FormProblem::of_field(&e));
        }
        let new = NewUser {
            username: username.to_owned(),
            email: Some(email.to_owned()),
            email_verified: false,
            profile: serde_json::Map::new(),
        };
        let user = match self
            .users
            .create(&tenant.id, &new, &form.password, Actor::User)
            .await
        {
            Ok(u) => u,
            Err(users::Error::AlreadyExists(_)) => {
                return again(FormProblem::UsernameTaken);
            }
            Err(users::Error::Invalid(fields)) => {
                return again(
                    fields
                        .first()
                        .map_or(FormProblem::Entries, FormProblem::of_field),
                );
            }
            Err(e) => return Err(e.into()),
        };
        let event = self
            .event(visit, "user.registered")
            .subject(Some(&user.user_id))
            .details(json!({ "username": user.username }));
        self.store.audit(event).await;
        self.send_verification(visit, &user).await?;
        Ok(EmailPage::Notice(Notice::Registered {
            verify: TenantPolicy::of(tenant).email.require_verified,
        }))
    }

    // ---------------------------------------------------------------------------------

    /// The user a reset link is for, while it is usable and the user still has the
    /// address it was sent to.
    async fn usable_reset(&self, visit: &Visit, token: &str) -> Result<Option<StoredUser>> {
        if token.is_empty() {
            return Ok(None);
        }
        let tenant = &visit.tenant;
        let Some(row) = self
            .store
            .email_token(
                &tenant.id,
                &handle_hash(token),
                Kind::PasswordReset.as_str(),
                self.now(),
            )
            .await?
        else {
            return Ok(None);
        };
        let user = self.store.get_user(&tenant.id, &row.user_id).await?;
        Ok(user.filter(|u| {
            u.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&row.email))
        }))
    }

    /// The tenant's length rule, then the deployment's policy and breach check: `Ok(Err)`
    /// is the problem to show.
    async fn check_password(
        &self,
        visit: &Visit,
        username: &str,
        password: &SecretString,
    ) -> Result<Result<(), FormProblem>> {
        let policy = TenantPolicy::of(&visit.tenant).password;
        if let Err(e) = check_password_length(
            password.expose_secret(),
            policy.min_length,
            policy.max_length,
        ) {
            return Ok(Err(FormProblem::of_field(&e)));
        }
        match self.users.check_password(username, password).await {
            Ok(()) => Ok(Ok(())),
            Err(users::Error::Invalid(fields)) => Ok(Err(fields
                .first()
                .map_or(FormProblem::PasswordRefused, FormProblem::of_field))),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `address` had its share of `kind` mail this hour.
    async fn over_limit(&self, tenant: &Tenant, address: &str, kind: Kind) -> Result<bool> {
        let since = self.now() - 3600;
        let n = self
            .store
            .count_recent_mail(&tenant.id, address, kind.as_str(), since)
            .await?;
        Ok(n >= i64::from(self.settings.per_address_per_hour))
    }

    /// Renders and seals a mail for the outbox.
    /// Queues a link mail in one unit of work: the link's token (only its hash), the
    /// sealed mail and `event` — all of it or nothing.
    async fn queue_link(&self, m: LinkMail<'_>, event: &AuditEvent) -> Result<()> {
        let mut unit = self.store.begin().await?;
        outbox::insert_token(
            unit.conn(),
            &m.mail.tenant_id,
            &handle_hash(m.token),
            m.kind.as_str(),
            m.user_id,
            m.address,
            m.now,
            m.now + m.valid_seconds,
        )
        .await?;
        outbox::insert_mail(unit.conn(), &m.mail).await?;
        unit.audit(event.clone());
        unit.commit().await?;
        Ok(())
    }

    /// The language of a mail: the recipient's preference (the `locale` claim), else
    /// the language of the page that caused it (`visit`, itself chosen from the
    /// request), else the tenant's default, else English.
    fn mail_lang(&self, tenant: &Tenant, user: Option<&StoredUser>, visit: Option<&Lang>) -> Lang {
        self.ui.catalogues().choose(&Wishes {
            ui_locales: None,
            user: user.and_then(users::preferred_locale),
            // A chosen language is a valid `Accept-Language` of one tag, in the place
            // the browser's wish has among the sources.
            accept_language: visit.map(Lang::tag),
            tenant_default: TenantPolicy::of(tenant).default_locale.as_deref(),
        })
    }

    fn compose(
        &self,
        tenant: &Tenant,
        kind: Kind,
        to: &str,
        lang: &Lang,
        ctx: &Value,
    ) -> Result<NewMail> {
        let mut ctx = ctx.clone();
        if let Value::Object(m) = &mut ctx {
            m.insert("tenant_name".into(), json!(tenant.display_name));
            m.insert("issuer".into(), json!(tenant.issuer));
            m.insert("lang".into(), json!(lang.tag()));
        }
        let parts = self.ui.render_mail(&kind.template(), &ctx)?;
        let from = TenantPolicy::of(tenant)
            .email
            .from
            .unwrap_or_else(|| self.settings.from.clone());
        let id = new_handle();
        let payload = serde_json::to_vec(&Sealed {
            from,
            lang: Some(lang.tag().to_owned()),
            parts,
        })
        .map_err(|e| store::Error::Corrupt(format!("failed to encode a mail: {e}")))?;
        Ok(NewMail {
            sealed: self.kek.seal(&payload, id.as_bytes()),
            kek_id: self.kek.id().to_owned(),
            id,
            tenant_id: tenant.id.clone(),
            kind: kind.as_str().to_owned(),
            recipient: to.to_owned(),
            created_at: self.now(),
        })
    }

    fn event(&self, visit: &Visit, name: &str) -> AuditEvent {
        AuditEvent::new(&visit.tenant.id, self.now(), name).ip(visit.origin.ip.as_deref())
    }
}

/// `{issuer}{path}?token=…`
fn link(issuer: &str, path: &str, token: &str) -> String {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    format!("{issuer}{path}?{q}")
}

fn reset_context(tenant: &Tenant, username: &str, token: &str) -> Value {
    json!({
        "username": username,
        "link": link(&tenant.issuer, RESET_PATH, token),
        "valid_minutes": RESET_SECONDS / 60,
    })
}

/// One `@` with text around it, no spaces or control characters, at most 254
/// characters (RFC 5321's path limit): enough to refuse typos before any look-up; the
/// mailer parses the address fully when it sends.
pub fn plausible_address(s: &str) -> bool {
    s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(s.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.contains('@') && !d.starts_with('.') && !d.ends_with('.'))
}

/// A mail carrying a single-use link, ready to queue ([`EmailFlows::queue_link`]).
struct LinkMail<'a> {
    kind: Kind,
    mail: NewMail,
    /// The link's token (stored only as its hash).
    token: &'a str,
    user_id: &'a str,
    address: &'a str,
    now: UnixTime,
    /// How long the link works.
    valid_seconds: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_token_url_encoded_and_the_database_only_its_hash() {
        let token = new_handle();
        let l = link("https://id.example.com/t", VERIFY_PATH, &token);
        assert_eq!(
            l,
            format!("https://id.example.com/t/email/verify?token={token}")
        );
        assert_eq!(
            link("http://i", RESET_PATH, "a+b&c"),
            "http://i/password/reset?token=a%2Bb%26c"
        );
        let hash = handle_hash(&token);
        assert_eq!(hash.len(), 64, "SHA-256, hex");
        assert_ne!(hash, token);
        assert!(!hash.contains(&token));
        assert_eq!(hash, handle_hash(&token), "a look-up is one equality");
        assert_ne!(handle_hash(&new_handle()), hash, "tokens are random");
    }

    #[test]
    fn only_plausible_addresses_are_looked_up() {
        for ok in ["a@b.example", "first.last+tag@sub.example.org"] {
            assert!(plausible_address(ok), "{ok}");
        }
        for bad in [
            "",
            "nobody",
            "a@b",
            "@b.example",
            "a@@b.example",
            "a b@c.example",
            "a@b.example\r\nBcc: x@y.example",
            "a@.example",
        ] {
            assert!(!plausible_address(bad), "{bad:?}");
        }
        assert!(!plausible_address(&format!(
            "{}@b.example",
            "a".repeat(250)
        )));
    }
}
