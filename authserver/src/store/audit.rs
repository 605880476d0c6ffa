//! Audit events: who did what to which object, when, from where. Never a secret: callers
//! pass identifiers and outcome classes only.

use serde_json::Value;

use super::{Conn, Result, Store, on_conn, with_pool};
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

impl AuditEvent {
    /// An event of `tenant_id` at `at`; add who, what and details with the builders.
    pub fn new(tenant_id: &str, at: UnixTime, event: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            at,
            event: event.to_owned(),
            actor: None,
            subject: None,
            ip: None,
            details: Value::Object(serde_json::Map::new()),
        }
    }

    #[must_use]
    pub fn actor(mut self, actor: Option<&str>) -> Self {
        self.actor = actor.map(str::to_owned);
        self
    }

    #[must_use]
    pub fn subject(mut self, subject: Option<&str>) -> Self {
        self.subject = subject.map(str::to_owned);
        self
    }

    #[must_use]
    pub fn ip(mut self, ip: Option<&str>) -> Self {
        self.ip = ip.map(str::to_owned);
        self
    }

    #[must_use]
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Whether an event records something that was refused or failed, by its name: the
/// `outcome` of the audit search and export.
pub fn outcome_of(event: &str) -> &'static str {
    let last = event.rsplit('.').next().unwrap_or(event);
    if last.ends_with("failed") || last.ends_with("denied") || last.contains("reuse") {
        "failure"
    } else {
        "success"
    }
}

/// What the audit search selects in the database (the caller filters further, e.g. by
/// address range). Every condition present must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditSelection {
    /// Event names, any of them (empty: all).
    pub events: Vec<String>,
    /// The event's subject (a user id).
    pub subject: Option<String>,
    /// Acted on or by this id (a client id): actor or subject.
    pub party: Option<String>,
    /// `at >= from`.
    pub from: Option<UnixTime>,
    /// `at < to`.
    pub to: Option<UnixTime>,
    /// Only events older than this position (the `id` of the last one seen).
    pub before: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    tenant_id: String,
    at: i64,
    event: String,
    actor: Option<String>,
    subject: Option<String>,
    ip: Option<String>,
    details: String,
}

/// Records `e` on `conn`: in a unit of work, the event commits with the change it
/// describes, or not at all (a unit's own events: [`super::UnitOfWork::audit`]).
pub async fn insert(conn: Conn<'_>, e: &AuditEvent) -> Result<()> {
    insert_all(conn, std::slice::from_ref(e)).await
}

/// Records `events` on `conn` in one statement (the events of a unit of work, at its
/// commit: one round trip however many it has).
pub async fn insert_all(conn: Conn<'_>, events: &[AuditEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = insert_sql(events.len());
    on_conn!(conn, c => {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for e in events {
            query = query
                .bind(&e.tenant_id)
                .bind(e.at)
                .bind(&e.event)
                .bind(&e.actor)
                .bind(&e.subject)
                .bind(&e.ip)
                .bind(e.details.to_string());
        }
        query.execute(c).await.map(|_| ())
    })?;
    Ok(())
}

/// `INSERT` of `n` events, seven parameters each.
fn insert_sql(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let p: Vec<String> = (1..=7).map(|f| format!("${}", i * 7 + f)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO audit_events (tenant_id, at, event, actor, subject, ip, details) VALUES {}",
        rows.join(", ")
    )
}

impl Store {
    #[tracing::instrument(name = "db.record_audit", skip_all)]
    pub async fn record_audit(&self, e: &AuditEvent) -> Result<()> {
        with_pool!(self, c => insert(c.into(), e).await)
    }

    /// Records an event, best effort: a failed insert is logged, never returned, so it
    /// cannot fail (or undo) the change the event describes.
    pub async fn audit(&self, e: AuditEvent) {
        if let Err(err) = self.record_audit(&e).await {
            tracing::warn!(error = %err, event = %e.event, "failed to record audit event");
        }
    }

    /// A tenant's most recent events, newest first.
    pub async fn list_audit(&self, tenant_id: &str, limit: i64) -> Result<Vec<AuditEvent>> {
        let rows = self
            .search_audit(tenant_id, &AuditSelection::default(), limit)
            .await?;
        Ok(rows.into_iter().map(|(_, e)| e).collect())
    }

    /// Up to `limit` of a tenant's events that `selection` selects, newest first, each
    /// with its position (for [`AuditSelection::before`]).
    pub async fn search_audit<'a>(
        &self,
        tenant_id: &'a str,
        selection: &'a AuditSelection,
        limit: i64,
    ) -> Result<Vec<(i64, AuditEvent)>> {
        enum Bind<'a> {
            Text(&'a str),
            Int(i64),
        }
        let mut binds = vec![Bind::Text(tenant_id)];
        let mut sql = String::from(
            "SELECT id, tenant_id, at, event, actor, subject, ip, details FROM audit_events \
             WHERE tenant_id = $1",
        );
        // Adds a bind value and returns its placeholder.
        let mut bind = |b: Bind<'a>| {
            binds.push(b);
            format!("${}", binds.len())
        };
        let mut conditions = Vec::new();
        if !selection.events.is_empty() {
            let names: Vec<String> = selection
                .events
                .iter()
                .map(|e| bind(Bind::Text(e)))
                .collect();
            conditions.push(format!("event IN ({})", names.join(", ")));
        }
        if let Some(subject) = &selection.subject {
            conditions.push(format!("subject = {}", bind(Bind::Text(subject))));
        }
        if let Some(party) = &selection.party {
            let p = bind(Bind::Text(party));
            conditions.push(format!("(actor = {p} OR subject = {p})"));
        }
        for (column_op, value) in [
            ("at >=", selection.from),
            ("at <", selection.to),
            ("id <", selection.before),
        ] {
            if let Some(v) = value {
                conditions.push(format!("{column_op} {}", bind(Bind::Int(v))));
            }
        }
        for c in conditions {
            sql.push_str(" AND ");
            sql.push_str(&c);
        }
        sql.push_str(" ORDER BY id DESC LIMIT ");
        sql.push_str(&bind(Bind::Int(limit)));
        let rows = with_pool!(self, pool => {
            // Safe: the text is ours; every value is a bind parameter, only their
            // numbers are formatted in.
            let mut q = sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(sql.as_str()));
            for b in &binds {
                q = match b {
                    Bind::Text(t) => q.bind(*t),
                    Bind::Int(i) => q.bind(*i),
                };
            }
            q.fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    AuditEvent {
                        tenant_id: r.tenant_id,
                        at: r.at,
                        event: r.event,
                        actor: r.actor,
                        subject: r.subject,
                        ip: r.ip,
                        details: serde_json::from_str(&r.details).unwrap_or(Value::Null),
                    },
                )
            })
            .collect())
    }
}
