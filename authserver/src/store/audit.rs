//! Audit events: who did what to which object, when, from where. Never a secret: callers
//! pass identifiers and outcome classes only.

use serde_json::Value;

use super::{Result, Store, with_pool};
use crate::clock::UnixTime;

/// One audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub tenant_id: String,
    pub at: UnixTime,
    /// Dotted event name, e.g. `client.created`, `client.auth_failed`.
    pub event: String,
    /// Who acted: a client id, `admin-api`, `cli`.
    pub actor: Option<String>,
    /// What it concerns: a client id, a kid.
    pub subject: Option<String>,
    pub ip: Option<String>,
    pub details: Value,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    tenant_id: String,
    at: i64,
    event: String,
    actor: Option<String>,
    subject: Option<String>,
    ip: Option<String>,
    details: String,
}

impl Store {
    #[tracing::instrument(name = "db.record_audit", skip_all)]
    pub async fn record_audit(&self, e: &AuditEvent) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO audit_events (tenant_id, at, event, actor, subject, ip, details) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&e.tenant_id)
            .bind(e.at)
            .bind(&e.event)
            .bind(&e.actor)
            .bind(&e.subject)
            .bind(&e.ip)
            .bind(e.details.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A tenant's most recent events, newest first.
    pub async fn list_audit(&self, tenant_id: &str, limit: i64) -> Result<Vec<AuditEvent>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, AuditRow>(
                "SELECT tenant_id, at, event, actor, subject, ip, details FROM audit_events \
                 WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(tenant_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| AuditEvent {
                tenant_id: r.tenant_id,
                at: r.at,
                event: r.event,
                actor: r.actor,
                subject: r.subject,
                ip: r.ip,
                details: serde_json::from_str(&r.details).unwrap_or(Value::Null),
            })
            .collect())
    }
}
