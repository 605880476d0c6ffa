//! The outbox sender every `serve` pod runs: claims due mail with a lease (a conditional
//! `UPDATE`, so two pods never send one message at once), opens it (it is sealed under
//! the ENCRYPTION_KEY), sends it over SMTP (`lettre`: STARTTLS, implicit TLS, or plain
//! for a local relay and tests), and marks it sent, or schedules the next attempt with
//! exponential backoff ([`backoff_seconds`]) until `email.max_attempts`, then gives it
//! up. A permanent SMTP refusal (5xx) or an address that does not parse is given up at
//! once. A pod that dies mid-send leaves a lease that runs out; the message is claimed
//! again (at worst sent twice, never lost).
//!
//! DESIGN.md keeps scheduled work out of the pods; this loop is the exception the outbox
//! needs (mail must leave within seconds, not at the next CronJob run), and it is safe
//! with any number of replicas because of the lease.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::ExposeSecret as _;
use tokio::sync::watch;

use super::Sealed;
use crate::clock::Clock;
use crate::config::{EmailSettings, SmtpSecurity, SmtpSettings};
use crate::crypto::kek::Kek;
use crate::store::Store;
use crate::store::email::OutboxRow;

/// Seconds before attempt `attempts + 1`, after `attempts` failed ones: 30 s doubling
/// up to an hour (30 s, 1 min, 2 min, … 1 h).
pub fn backoff_seconds(attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(16);
    (30_i64 << exp).min(3600)
}

/// Why one delivery failed.
#[derive(Debug)]
struct Failure {
    /// Retrying cannot help (refused for good, or unreadable).
    permanent: bool,
    message: String,
}

impl Failure {
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
    }
}

/// What one pass over the due mail did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub sent: u32,
    pub retried: u32,
    pub given_up: u32,
}

/// The sender of one pod.
pub struct Outbox {
    store: Store,
    kek: Arc<Kek>,
    clock: Arc<dyn Clock>,
    settings: EmailSettings,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
    /// This sender's lease owner name (random per process).
    owner: String,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// The SMTP transport for `smtp`.
fn transport(
    smtp: &SmtpSettings,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let builder = match smtp.security {
        SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?,
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
        SmtpSecurity::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
    if let Some((user, password)) = &smtp.credentials {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

impl Outbox {
    /// The sender for `settings`; `Ok(None)` when no SMTP relay is configured.
    pub fn new(
        store: Store,
        kek: Arc<Kek>,
        clock: Arc<dyn Clock>,
        settings: &EmailSettings,
    ) -> Result<Option<Self>, lettre::transport::smtp::Error> {
        let Some(smtp) = &settings.smtp else {
            return Ok(None);
        };
        Ok(Some(Self {
            transport: transport(smtp)?,
            timeout: smtp.timeout,
            store,
            kek,
            clock,
            settings: settings.clone(),
            owner: crate::crypto::new_handle(),
        }))
    }

    /// Sends due mail every `email.poll_interval` until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(
            poll_ms = u64::try_from(self.settings.poll_interval.as_millis()).unwrap_or(u64::MAX),
            "e-mail sender started"
        );
        loop {
            if *stop.borrow() {
                return;
            }
            let _ = self.deliver_due().await;
            tokio::select! {
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Claims and sends due mail until none is left (or the database fails: the next
    /// pass tries again).
    pub async fn deliver_due(&self) -> Pass {
        let mut pass = Pass::default();
        loop {
            let now = self.clock.now();
            let lease = i64::try_from(self.timeout.as_secs()).unwrap_or(60) * 2 + 30;
            let row = match self.store.claim_mail(&self.owner, now, now + lease).await {
                Ok(Some(row)) => row,
                Ok(None) => return pass,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the e-mail outbox; retrying later");
                    return pass;
                }
            };
            let outcome = self.deliver(&row).await;
            let now = self.clock.now();
            let marked = match outcome {
                Ok(()) => {
                    pass.sent += 1;
                    tracing::info!(tenant = %row.tenant_id, mail_id = %row.id, kind = %row.kind, "mail sent");
                    self.store.mark_mail_sent(&row.id, &self.owner, now).await
                }
                Err(f) => {
                    let attempts = u32::try_from(row.attempts).unwrap_or(0) + 1;
                    let give_up = f.permanent || attempts >= self.settings.max_attempts;
                    let retry_at = (!give_up).then(|| now + backoff_seconds(attempts));
                    if give_up {
                        pass.given_up += 1;
                        tracing::error!(
                            tenant = %row.tenant_id, mail_id = %row.id, kind = %row.kind,
                            attempts, error = %f.message,
                            "mail given up"
                        );
                    } else {
                        pass.retried += 1;
                        tracing::warn!(
                            tenant = %row.tenant_id, mail_id = %row.id, kind = %row.kind,
                            attempts, retry_in_seconds = backoff_seconds(attempts), error = %f.message,
                            "mail not sent; retrying later"
                        );
                    }
                    self.store
                        .mark_mail_failed(&row.id, &self.owner, now, retry_at, &f.message)
                        .await
                }
            };
            if let Err(e) = marked {
                tracing::warn!(error = %e, mail_id = %row.id, "failed to record a mail's delivery");
                return pass;
            }
        }
    }

    async fn deliver(&self, row: &OutboxRow) -> Result<(), Failure> {
        let plain = self
            .kek
            .open(&row.kek_id, &row.sealed, row.id.as_bytes())
            .map_err(|e| Failure::permanent(format!("cannot open the sealed mail: {e}")))?;
        let sealed: Sealed = serde_json::from_slice(&plain)
            .map_err(|e| Failure::permanent(format!("sealed mail is not readable: {e}")))?;
        let message = build(&sealed, &row.recipient)?;
        // lettre's own timeout covers each SMTP command; this bounds the whole exchange.
        match tokio::time::timeout(self.timeout * 3, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Failure {
                permanent: e.is_permanent(),
                message: format!("SMTP: {e}"),
            }),
            Err(_) => Err(Failure {
                permanent: false,
                message: "SMTP: timed out".to_owned(),
            }),
        }
    }
}

/// The MIME message: `multipart/alternative` with the text part first.
fn build(sealed: &Sealed, recipient: &str) -> Result<Message, Failure> {
    let from: Mailbox = sealed
        .from
        .parse()
        .map_err(|e| Failure::permanent(format!("invalid sender {:?}: {e}", sealed.from)))?;
    let to: Mailbox = recipient
        .parse()
        .map_err(|e| Failure::permanent(format!("invalid recipient: {e}")))?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(sealed.parts.subject.clone());
    // Our own tags (BCP 47: letters, digits, `-`), checked again: a header value.
    if let Some(tag) = sealed
        .lang
        .as_deref()
        .filter(|t| !t.is_empty() && t.len() <= 35)
        .filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Content-Language"),
            tag.to_owned(),
        ));
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            sealed.parts.text.clone(),
            sealed.parts.html.clone(),
        ))
        .map_err(|e| Failure::permanent(format!("cannot build the message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::MailParts;

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let waits: Vec<i64> = (1..=9).map(backoff_seconds).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff_seconds(0), 30);
        assert_eq!(backoff_seconds(u32::MAX), 3600);
    }

    #[test]
    fn messages_have_both_parts_and_refuse_bad_addresses_for_good() {
        let sealed = Sealed {
            from: "Acme <id@acme.example>".into(),
            lang: Some("de".into()),
            parts: MailParts {
                subject: "Hi".into(),
                text: "plain body\n".into(),
                html: "<p>html body</p>".into(),
            },
        };
        let m = build(&sealed, "bob@example.com").expect("builds");
        let raw = String::from_utf8(m.formatted()).expect("utf-8");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("text/plain") && raw.contains("text/html"),
            "{raw}"
        );
        assert!(raw.contains("Subject: Hi"), "{raw}");
        assert!(raw.contains("Content-Language: de\r\n"), "{raw}");
        let injected = Sealed {
            lang: Some("de\r\nBcc: x@y.example".into()),
            ..Sealed {
                from: sealed.from.clone(),
                lang: None,
                parts: sealed.parts.clone(),
            }
        };
        let raw = String::from_utf8(build(&injected, "bob@example.com").unwrap().formatted())
            .expect("utf-8");
        assert!(
            !raw.contains("Content-Language") && !raw.contains("Bcc"),
            "{raw}"
        );
        let f = build(&sealed, "not an address").unwrap_err();
        assert!(f.permanent, "{f:?}");
        let bad_from = Sealed {
            from: "nobody".into(),
            ..sealed
        };
        assert!(build(&bad_from, "bob@example.com").unwrap_err().permanent);
    }
}
