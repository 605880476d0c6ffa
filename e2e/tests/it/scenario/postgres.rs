//! PostgreSQL for the local scenario: a fresh database per run from the test kit
//! ([`testkit::postgres`]: on the server `DATABASE_URL` names — `.ci/run` exports it —
//! or on an ephemeral cluster started for the test process), dropped at the end; checks
//! in SQL go through `psql`, whose text form of a row (`a|b`) the steps compare.

/// A database created for one run; dropped (best effort) with this value.
pub struct Database(testkit::postgres::Database);

impl Database {
    pub async fn create() -> Self {
        Self(testkit::postgres::Database::create("gh_e2e").await)
    }

    /// URL of the new database.
    pub fn url(&self) -> &str {
        self.0.url()
    }

    /// Runs `sql` in this database and returns psql's unaligned, tuples-only output.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        testkit::postgres::psql(self.0.url(), sql).map_err(anyhow::Error::msg)
    }
}
