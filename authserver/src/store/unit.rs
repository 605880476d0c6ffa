//! Units of work: a transaction the caller owns across several store calls, so a step
//! that writes more than one thing (a code, its grant, the request it used up, the
//! audit event) commits all of it or none. SQLite transactions always start with
//! `BEGIN IMMEDIATE` (a deferred one that reads and then writes fails with
//! `SQLITE_BUSY` when another writer got there first; IMMEDIATE waits its turn).
//!
//! Store functions that can take part in a unit are written once against a [`Conn`]:
//! the pool's connection for a single call, the unit's for a unit of work.

use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

use super::audit::{self, AuditEvent};
use super::{Pool, Result, Store};

/// A connection of either backend, from the pool or from a [`UnitOfWork`].
pub enum Conn<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl Conn<'_> {
    /// The same connection for one more call (a function that makes several).
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Postgres(c) => Conn::Postgres(c),
            Conn::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

impl<'c> From<&'c mut PgConnection> for Conn<'c> {
    fn from(c: &'c mut PgConnection) -> Self {
        Conn::Postgres(c)
    }
}

impl<'c> From<&'c mut SqliteConnection> for Conn<'c> {
    fn from(c: &'c mut SqliteConnection) -> Self {
        Conn::Sqlite(c)
    }
}

/// Runs the same body on whichever connection `$conn` ([`Conn`]) holds; `$c` is bound
/// to a `&mut PgConnection` or `&mut SqliteConnection` (reborrow with `&mut *$c` to use
/// it twice). The body must be valid for both drivers.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::Conn::Postgres($c) => $body,
            $crate::store::Conn::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_conn;

/// An open transaction; committed by [`UnitOfWork::commit`], rolled back when dropped.
pub struct UnitOfWork {
    tx: Tx,
    /// Events of the unit ([`UnitOfWork::audit`]), written at its commit.
    audits: Vec<AuditEvent>,
}

enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl std::fmt::Debug for UnitOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnitOfWork")
    }
}

impl Store {
    /// Opens a unit of work. On PostgreSQL the connection is gated like every other
    /// (refused at once during an outage, bounded wait otherwise).
    pub async fn begin(&self) -> Result<UnitOfWork> {
        let tx = match &self.pool {
            Pool::Postgres(pool) => Tx::Postgres(self.pg_begin(pool).await?),
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(UnitOfWork {
            tx,
            audits: Vec::new(),
        })
    }
}

impl UnitOfWork {
    /// The unit's connection, for the store functions that take a [`Conn`].
    pub fn conn(&mut self) -> Conn<'_> {
        match &mut self.tx {
            Tx::Postgres(t) => Conn::Postgres(t),
            Tx::Sqlite(t) => Conn::Sqlite(t),
        }
    }

    /// Records `event` with the unit: written at [`UnitOfWork::commit`], all of the
    /// unit's events in one statement just before the `COMMIT`, and never if the unit
    /// is dropped (rolled back).
    pub fn audit(&mut self, event: AuditEvent) {
        self.audits.push(event);
    }

    /// Writes the unit's events, then commits.
    pub async fn commit(mut self) -> Result<()> {
        let events = std::mem::take(&mut self.audits);
        audit::insert_all(self.conn(), &events).await?;
        match self.tx {
            Tx::Postgres(t) => Store::pg_commit(t).await?,
            Tx::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::audit::AuditEvent;
    use crate::store::consents;
    use crate::store::testing;

    /// A consent and its audit event, in `unit`.
    async fn write(
        unit: &mut super::UnitOfWork,
        user_id: &str,
        scopes: &[String],
    ) -> crate::store::Result<()> {
        consents::record(unit.conn(), "t", user_id, "rp", scopes, 2_000).await?;
        unit.audit(AuditEvent::new("t", 2_000, "consent.granted"));
        Ok(())
    }

    #[tokio::test]
    async fn a_units_events_are_written_in_one_statement_at_its_commit() {
        for db in testing::both().await {
            db.user("t", "alice").await;
            let mut unit = db.store.begin().await.expect("begin");
            for (i, name) in ["session.created", "session.evicted", "login.succeeded"]
                .into_iter()
                .enumerate()
            {
                unit.audit(
                    AuditEvent::new("t", 3_000, name)
                        .subject(Some(&format!("s{i}")))
                        .details(serde_json::json!({ "n": i })),
                );
            }
            // Nothing is written before the commit.
            let before = db.store.list_audit("t", 10).await.expect("audit");
            assert!(before.iter().all(|e| e.at != 3_000), "{}", db.name());
            let logs = crate::testing::CapturedLogs::start();
            unit.commit().await.expect("commit");
            // One INSERT for the three events.
            logs.assert_postgres_statements(db.name(), &["INSERT INTO audit_events", "COMMIT"]);
            let mut written: Vec<_> = db
                .store
                .list_audit("t", 10)
                .await
                .expect("audit")
                .into_iter()
                .filter(|e| e.at == 3_000)
                .map(|e| (e.event, e.subject, e.details))
                .collect();
            written.sort_by(|a, b| a.1.cmp(&b.1));
            assert_eq!(
                written,
                [
                    (
                        "session.created".into(),
                        Some("s0".into()),
                        serde_json::json!({ "n": 0 })
                    ),
                    (
                        "session.evicted".into(),
                        Some("s1".into()),
                        serde_json::json!({ "n": 1 })
                    ),
                    (
                        "login.succeeded".into(),
                        Some("s2".into()),
                        serde_json::json!({ "n": 2 })
                    ),
                ],
                "{}",
                db.name()
            );
        }
    }

    #[tokio::test]
    async fn a_unit_commits_all_of_its_writes_or_none() {
        for db in testing::both().await {
            let user = db.user("t", "alice").await;
            let store = &db.store;
            let scopes = vec!["openid".to_owned()];
            // Dropped without commit: nothing was written.
            let mut unit = store.begin().await.expect("begin");
            write(&mut unit, &user.user_id, &scopes)
                .await
                .expect("writes");
            drop(unit);
            let consent = store
                .consent_scopes("t", &user.user_id, "rp")
                .await
                .expect("read");
            assert_eq!(consent, None, "{}", db.name());
            let events = store.list_audit("t", 10).await.expect("audit");
            assert!(
                events.iter().all(|e| e.event != "consent.granted"),
                "{}",
                db.name()
            );

            // Committed: both.
            let mut unit = store.begin().await.expect("begin");
            write(&mut unit, &user.user_id, &scopes)
                .await
                .expect("writes");
            unit.commit().await.expect("commit");
            let consent = store
                .consent_scopes("t", &user.user_id, "rp")
                .await
                .expect("read");
            assert_eq!(consent, Some(scopes.clone()), "{}", db.name());
            let events = store.list_audit("t", 10).await.expect("audit");
            assert!(
                events.iter().any(|e| e.event == "consent.granted"),
                "{}",
                db.name()
            );
        }
    }

    #[tokio::test]
    async fn sqlite_units_take_the_write_lock_up_front() {
        let db = testing::sqlite().await;
        let user = db.user("t", "alice").await;
        // Two units that read then write: with deferred transactions the second would
        // fail with SQLITE_BUSY; IMMEDIATE makes it wait for the first.
        let mut first = db.store.begin().await.expect("begin");
        consents::record(
            first.conn(),
            "t",
            &user.user_id,
            "rp",
            &["a".to_owned()],
            2_000,
        )
        .await
        .expect("first writes");
        let store = db.store.clone();
        let user_id = user.user_id.clone();
        let second = tokio::spawn(async move {
            let mut unit = store.begin().await?;
            consents::record(unit.conn(), "t", &user_id, "rp", &["b".to_owned()], 2_001).await?;
            unit.commit().await
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        first.commit().await.expect("first commits");
        second
            .await
            .expect("joined")
            .expect("second waits, then commits");
        let consent = db
            .store
            .consent_scopes("t", &user.user_id, "rp")
            .await
            .expect("read");
        assert_eq!(consent, Some(vec!["a".to_owned(), "b".to_owned()]));
    }

    /// A request that goes away while its unit waits for SQLite's write lock (a client
    /// that disconnects, a deadline). Its `BEGIN IMMEDIATE` still runs once the lock is
    /// free, and nothing is left to end that transaction: it must not keep the lock
    /// (sqlx's SQLite worker rolls back a `BEGIN` nobody took; on PostgreSQL the store
    /// does it, see `Store::pg_begin`). Every later unit gets the lock at once.
    #[tokio::test]
    async fn a_sqlite_unit_given_up_while_waiting_for_the_write_lock_leaves_it_free() {
        use std::time::Duration;

        let db = testing::sqlite().await;
        let user = db.user("t", "alice").await;
        let first = db.store.begin().await.expect("begin");
        let gave_up = tokio::time::timeout(Duration::from_millis(100), db.store.begin()).await;
        assert!(gave_up.is_err(), "the second unit waits for the first");
        first.commit().await.expect("first commits");

        for n in 0..3_i64 {
            let mut unit = tokio::time::timeout(Duration::from_secs(2), db.store.begin())
                .await
                .expect("the write lock is free")
                .expect("begin");
            consents::record(
                unit.conn(),
                "t",
                &user.user_id,
                "rp",
                &[format!("s{n}")],
                2_000 + n,
            )
            .await
            .expect("writes");
            unit.commit().await.expect("commits");
        }
        let consent = db
            .store
            .consent_scopes("t", &user.user_id, "rp")
            .await
            .expect("read");
        let all: Vec<String> = (0..3).map(|n| format!("s{n}")).collect();
        assert_eq!(consent, Some(all), "every unit committed");
    }
}
