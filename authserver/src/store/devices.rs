//! Remembered devices (`known_devices`): per user, the browsers (device cookies, kept as
//! their SHA-256 only) they signed in from, with first and last sighting, what and where
//! the last sighting was, and until when the device is trusted (no second factor asked
//! on it, where the tenant asks one on new devices). Every query names the tenant and
//! the user: a device is only ever a device *of this user*, so another user's cookie
//! (or its hash) finds nothing here.

use super::{Conn, Result, Store, on_conn, with_pool};
use crate::clock::UnixTime;

/// One remembered device of a user.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KnownDevice {
    /// SHA-256 (hex) of the device cookie.
    pub device_hash: String,
    pub first_seen_at: UnixTime,
    pub last_seen_at: UnixTime,
    /// No second factor is asked on this device before this time (`None`: never trusted).
    pub trusted_until: Option<UnixTime>,
    /// A short summary ("Firefox on Linux"), not the header.
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// ISO 3166-1 alpha-2, from the GeoIP database.
    pub country: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

impl KnownDevice {
    /// Whether the device is trusted at `now`.
    pub fn trusted(&self, now: UnixTime) -> bool {
        self.trusted_until.is_some_and(|t| t > now)
    }
}

/// A sign-in seen on a device, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub device_hash: &'a str,
    pub now: UnixTime,
    /// A new trust deadline; `None` keeps the one the device has (a sign-in that
    /// needed no second factor does not extend the trust it relied on).
    pub trusted_until: Option<UnixTime>,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub country: Option<&'a str>,
    pub coordinates: Option<(f64, f64)>,
}

/// `SELECT <every column of KnownDevice> FROM known_devices <rest>`, as one literal.
macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT device_hash, first_seen_at, last_seen_at, trusted_until, user_agent, ip, ",
            "country, latitude, longitude FROM known_devices ",
            $rest
        )
    };
}

/// The user's device with `device_hash`, if remembered.
pub async fn get(
    conn: Conn<'_>,
    tenant_id: &str,
    user_id: &str,
    device_hash: &str,
) -> Result<Option<KnownDevice>> {
    let sql = select!("WHERE tenant_id = $1 AND user_id = $2 AND device_hash = $3");
    Ok(on_conn!(conn, c => {
        sqlx::query_as::<_, KnownDevice>(sql)
            .bind(tenant_id)
            .bind(user_id)
            .bind(device_hash)
            .fetch_optional(&mut *c)
            .await?
    }))
}

/// The user's most recent sighting that has coordinates: the previous sign-in of the
/// impossible-travel check.
pub async fn last_located(
    conn: Conn<'_>,
    tenant_id: &str,
    user_id: &str,
) -> Result<Option<KnownDevice>> {
    let sql = select!(
        "WHERE tenant_id = $1 AND user_id = $2 AND latitude IS NOT NULL AND longitude IS NOT \
         NULL ORDER BY last_seen_at DESC LIMIT 1"
    );
    Ok(on_conn!(conn, c => {
        sqlx::query_as::<_, KnownDevice>(sql)
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(&mut *c)
            .await?
    }))
}

/// How many devices the user has been seen on.
pub async fn count(conn: Conn<'_>, tenant_id: &str, user_id: &str) -> Result<i64> {
    Ok(on_conn!(conn, c => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM known_devices WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant_id)
        .bind(user_id)
        .fetch_one(&mut *c)
        .await?
    }))
}

/// Records a sighting: a new row, or the last sighting of a known one.
pub async fn record(conn: Conn<'_>, s: &Sighting<'_>) -> Result<()> {
    let (lat, lon) = s.coordinates.unzip();
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO known_devices (tenant_id, user_id, device_hash, first_seen_at, \
             last_seen_at, trusted_until, user_agent, ip, country, latitude, longitude) \
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (tenant_id, user_id, device_hash) DO UPDATE SET last_seen_at = $4, \
             trusted_until = COALESCE($5, known_devices.trusted_until), user_agent = $6, \
             ip = $7, country = $8, latitude = $9, longitude = $10",
        )
        .bind(s.tenant_id)
        .bind(s.user_id)
        .bind(s.device_hash)
        .bind(s.now)
        .bind(s.trusted_until)
        .bind(s.user_agent)
        .bind(s.ip)
        .bind(s.country)
        .bind(lat)
        .bind(lon)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

impl Store {
    /// The user's device with `device_hash` (outside a unit of work).
    #[tracing::instrument(name = "db.get_known_device", skip_all)]
    pub async fn get_known_device(
        &self,
        tenant_id: &str,
        user_id: &str,
        device_hash: &str,
    ) -> Result<Option<KnownDevice>> {
        with_pool!(self, c => get(c.into(), tenant_id, user_id, device_hash).await)
    }

    /// The user's most recent located sighting (outside a unit of work).
    #[tracing::instrument(name = "db.last_located_device", skip_all)]
    pub async fn last_located_device(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Option<KnownDevice>> {
        with_pool!(self, c => last_located(c.into(), tenant_id, user_id).await)
    }

    /// The user's remembered devices, most recently seen first.
    #[tracing::instrument(name = "db.list_known_devices", skip_all)]
    pub async fn list_known_devices(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<KnownDevice>> {
        let sql = select!(
            "WHERE tenant_id = $1 AND user_id = $2 ORDER BY last_seen_at DESC, device_hash"
        );
        Ok(with_pool!(self, c => {
            sqlx::query_as::<_, KnownDevice>(sql)
                .bind(tenant_id)
                .bind(user_id)
                .fetch_all(&mut *c)
                .await?
        }))
    }

    /// Forgets the user's device `device_hash`; whether there was one. Another user's
    /// device is not found: the user is part of the key.
    #[tracing::instrument(name = "db.delete_known_device", skip_all)]
    pub async fn delete_known_device(
        &self,
        tenant_id: &str,
        user_id: &str,
        device_hash: &str,
    ) -> Result<bool> {
        let n = with_pool!(self, c => {
            sqlx::query(
                "DELETE FROM known_devices WHERE tenant_id = $1 AND user_id = $2 AND \
                 device_hash = $3",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(device_hash)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }
}
