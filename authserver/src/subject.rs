//! End-user subject identifiers (OpenID Connect Core §8): `public` (the local user id,
//! the same for every client) or `pairwise` (different per sector, so two relying
//! parties cannot correlate a user by `sub`).
//!
//! Pairwise: `sub = base64url(SHA-256(sector || user_id || salt))`, where the salt is 32
//! random bytes generated once per tenant, sealed under `ENCRYPTION_KEY` in
//! `tenant_secrets` and never changed (changing it would change every pairwise `sub`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::crypto::kek::Kek;
use crate::crypto::{b64url, random_bytes};
use crate::domain::client::{ClientSpec, SubjectType};
use crate::store::{self, Store};

/// `tenant_secrets.name` of the pairwise salt.
pub const PAIRWISE_SALT: &str = "pairwise_salt";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read or store the pairwise salt: {0}")]
    Store(#[from] store::Error),
    #[error("failed to open the pairwise salt: {0}")]
    Sealed(String),
}

/// The AAD binding a sealed tenant secret to its row.
fn secret_aad(tenant_id: &str, name: &str) -> Vec<u8> {
    format!("{tenant_id}/{name}").into_bytes()
}

/// Re-seals every tenant secret sealed under `old` with `new` (`keys reencrypt`), in
/// one transaction; returns how many. Secrets already under `new` are left alone.
pub async fn reseal_tenant_secrets(store: &Store, old: &Kek, new: &Kek) -> Result<usize, Error> {
    let mut updates = Vec::new();
    for (tenant_id, name, sealed, kek_id) in store.list_tenant_secrets().await? {
        if kek_id == new.id() {
            continue;
        }
        let aad = secret_aad(&tenant_id, &name);
        let sealed = hex::decode(sealed).map_err(|e| Error::Sealed(e.to_string()))?;
        let plain = old
            .open(&kek_id, &sealed, &aad)
            .map_err(|e| Error::Sealed(format!("tenant {tenant_id} secret {name}: {e}")))?;
        updates.push((
            tenant_id,
            name,
            hex::encode(new.seal(&plain, &aad)),
            new.id().to_owned(),
        ));
    }
    store.reseal_tenant_secrets(&updates).await?;
    Ok(updates.len())
}

/// The pairwise subject of `user_id` for `sector` under `salt`.
pub fn pairwise(sector: &str, user_id: &str, salt: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(sector.as_bytes());
    ctx.update(user_id.as_bytes());
    ctx.update(salt);
    b64url(ctx.finish().as_ref())
}

/// Computes subjects; caches each tenant's salt in memory (it never changes).
#[derive(Debug)]
pub struct Subjects {
    store: Store,
    kek: Arc<Kek>,
    clock: Arc<dyn Clock>,
    salts: Mutex<HashMap<String, [u8; 32]>>,
}

impl Subjects {
    pub fn new(store: Store, kek: Arc<Kek>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            kek,
            clock,
            salts: Mutex::new(HashMap::new()),
        }
    }

    /// The `sub` of a user as `client` sees it.
    pub async fn subject(
        &self,
        tenant_id: &str,
        client: &ClientSpec,
        user_id: &str,
    ) -> Result<String, Error> {
        match client.subject_type {
            SubjectType::Public => Ok(user_id.to_owned()),
            SubjectType::Pairwise => {
                let salt = self.salt(tenant_id).await?;
                Ok(pairwise(&client.sector(), user_id, &salt))
            }
        }
    }

    /// The tenant's salt, created on first use. Race-safe across pods: every pod
    /// inserts with `ON CONFLICT DO NOTHING` and then uses whatever row won.
    async fn salt(&self, tenant_id: &str) -> Result<[u8; 32], Error> {
        if let Ok(salts) = self.salts.lock()
            && let Some(s) = salts.get(tenant_id)
        {
            return Ok(*s);
        }
        let aad = secret_aad(tenant_id, PAIRWISE_SALT);
        if self
            .store
            .get_tenant_secret(tenant_id, PAIRWISE_SALT)
            .await?
            .is_none()
        {
            let sealed = self.kek.seal(&random_bytes::<32>(), &aad);
            self.store
                .insert_tenant_secret(
                    tenant_id,
                    PAIRWISE_SALT,
                    &hex::encode(sealed),
                    self.kek.id(),
                    self.clock.now(),
                )
                .await?;
        }
        let (sealed, kek_id) = self
            .store
            .get_tenant_secret(tenant_id, PAIRWISE_SALT)
            .await?
            .ok_or(store::Error::NotFound)?;
        let sealed = hex::decode(sealed).map_err(|e| Error::Sealed(e.to_string()))?;
        let plain = self
            .kek
            .open(&kek_id, &sealed, &aad)
            .map_err(|e| Error::Sealed(e.to_string()))?;
        let salt: [u8; 32] = plain
            .try_into()
            .map_err(|_| Error::Sealed("the stored salt is not 32 bytes".to_owned()))?;
        if let Ok(mut salts) = self.salts.lock() {
            salts.insert(tenant_id.to_owned(), salt);
        }
        Ok(salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_subjects_are_stable_and_differ_per_sector_user_and_salt() {
        let salt = [7u8; 32];
        let a = pairwise("app.example.com", "u1", &salt);
        assert_eq!(a, pairwise("app.example.com", "u1", &salt));
        assert_eq!(a.len(), 43, "base64url of 32 bytes");
        assert_ne!(a, pairwise("other.example.com", "u1", &salt));
        assert_ne!(a, pairwise("app.example.com", "u2", &salt));
        assert_ne!(a, pairwise("app.example.com", "u1", &[8u8; 32]));
        assert_ne!(a, "u1");
    }

    #[test]
    fn pairwise_is_sha256_of_sector_user_and_salt() {
        let salt = [0u8; 32];
        let mut input = b"s.example".to_vec();
        input.extend_from_slice(b"user");
        input.extend_from_slice(&salt);
        let want = b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input).as_ref());
        assert_eq!(pairwise("s.example", "user", &salt), want);
    }
}
