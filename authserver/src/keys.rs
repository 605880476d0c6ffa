//! The signing key service: bootstrap, rotation, JWKS, loading private keys for signing,
//! and re-encryption under a new key-encryption key. Ties the pure rules of
//! `domain::signing_key` to storage and crypto.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cache::{Cached, DEFAULT_TTL, Epoch};
use crate::clock::{Clock, UnixTime};
use crate::crypto::kek::{self, Kek};
use crate::crypto::signing::{self, SigningKey};
use crate::domain::signing_key::{
    Algorithm, KeyMeta, KeyPolicy, RotationMode, RotationPlan, plan_rotation,
};
use crate::store::{self, Store, signing_keys::NewStoredKey, signing_keys::StoredKey};

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("failed to decrypt signing key {kid} of tenant {tenant}: {source}")]
    Decrypt {
        tenant: String,
        kid: String,
        #[source]
        source: kek::Error,
    },
    #[error(transparent)]
    Crypto(#[from] signing::Error),
    #[error("key generation task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("tenant {0:?} does not exist")]
    UnknownTenant(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Additional authenticated data for a sealed private key: binds it to its row.
fn aad(tenant_id: &str, kid: &str) -> Vec<u8> {
    format!("signing_key/{tenant_id}/{kid}").into_bytes()
}

/// Signing keys of all tenants, backed by the store, cached per pod.
#[derive(Debug)]
pub struct KeyService {
    store: Store,
    kek: Arc<Kek>,
    policy: KeyPolicy,
    clock: Arc<dyn Clock>,
    published: Cached<String, Arc<Vec<StoredKey>>>,
    signers: Cached<(String, String), Arc<SigningKey>>,
}

impl KeyService {
    pub fn new(
        store: Store,
        kek: Arc<Kek>,
        policy: KeyPolicy,
        clock: Arc<dyn Clock>,
        epoch: &Epoch,
    ) -> Self {
        Self {
            store,
            kek,
            policy,
            clock,
            published: Cached::new(epoch.clone(), DEFAULT_TTL),
            signers: Cached::new(epoch.clone(), DEFAULT_TTL),
        }
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// Creates keys for algorithms that have none; returns the new kids (empty: nothing
    /// to do).
    pub async fn bootstrap(&self, tenant_id: &str) -> Result<Vec<KeyMeta>> {
        self.rotate(tenant_id, RotationMode::Bootstrap).await
    }

    /// Plans and applies a rotation under the configured policy; returns the new keys.
    pub async fn rotate(&self, tenant_id: &str, mode: RotationMode) -> Result<Vec<KeyMeta>> {
        self.rotate_with(tenant_id, mode, &self.policy).await
    }

    /// Plans and applies a rotation in one transaction under `policy` (a tenant's own,
    /// e.g. from its SigningKeySet); returns the new keys.
    pub async fn rotate_with(
        &self,
        tenant_id: &str,
        mode: RotationMode,
        policy: &KeyPolicy,
    ) -> Result<Vec<KeyMeta>> {
        if self.store.get_tenant(tenant_id).await?.is_none() {
            return Err(Error::UnknownTenant(tenant_id.to_owned()));
        }
        let now = self.clock.now();
        let new = self
            .store
            .rotate_keys(tenant_id, |existing| async move {
                let plan = plan_rotation(&existing, policy, mode, now);
                let new = self
                    .generate(tenant_id, &plan, policy.rsa_bits, now)
                    .await?;
                Ok::<_, Error>((new, plan.supersede))
            })
            .await?;
        for k in &new {
            tracing::info!(tenant = tenant_id, kid = %k.meta.kid, alg = %k.meta.alg,
                activates_at = k.meta.activates_at, "signing key created");
        }
        Ok(new.into_iter().map(|k| k.meta).collect())
    }

    async fn generate(
        &self,
        tenant_id: &str,
        plan: &RotationPlan,
        rsa_bits: u32,
        now: UnixTime,
    ) -> Result<Vec<NewStoredKey>> {
        let mut out = Vec::with_capacity(plan.new.len());
        for n in &plan.new {
            let (alg, bits) = (n.alg, rsa_bits);
            // RSA generation takes tens of milliseconds: keep it off the async workers.
            let generated =
                tokio::task::spawn_blocking(move || signing::generate(alg, bits)).await??;
            let kid = generated.key.kid().to_owned();
            out.push(NewStoredKey {
                public_jwk: generated.key.public_jwk(),
                sealed_private_key: self.kek.seal(&generated.pkcs8, &aad(tenant_id, &kid)),
                kek_id: self.kek.id().to_owned(),
                source: "generated".to_owned(),
                meta: KeyMeta {
                    kid,
                    alg,
                    created_at: now,
                    activates_at: n.activates_at,
                    superseded_at: None,
                    retires_at: None,
                },
            });
        }
        Ok(out)
    }

    /// Imports a PKCS#8 private key as the next key for its algorithm: it activates
    /// after the promotion delay and supersedes the current key, like a rotation.
    /// Returns the kid and whether it was new (importing the same key twice is a no-op).
    pub async fn import(
        &self,
        tenant_id: &str,
        alg: Algorithm,
        pkcs8: &[u8],
        policy: &KeyPolicy,
    ) -> Result<(String, bool)> {
        if self.store.get_tenant(tenant_id).await?.is_none() {
            return Err(Error::UnknownTenant(tenant_id.to_owned()));
        }
        let key = SigningKey::from_pkcs8(alg, pkcs8)?;
        let kid = key.kid().to_owned();
        let now = self.clock.now();
        let only_alg = KeyPolicy {
            algorithms: vec![alg],
            ..policy.clone()
        };
        let new = self
            .store
            .rotate_keys(tenant_id, |existing| {
                let kid = kid.clone();
                async move {
                    if existing.iter().any(|k| k.kid == kid) {
                        return Ok::<_, Error>((Vec::new(), Vec::new()));
                    }
                    let plan = plan_rotation(&existing, &only_alg, RotationMode::Force, now);
                    let activates_at = plan.new.first().map_or(now, |n| n.activates_at);
                    let stored = NewStoredKey {
                        public_jwk: key.public_jwk(),
                        sealed_private_key: self.kek.seal(pkcs8, &aad(tenant_id, &kid)),
                        kek_id: self.kek.id().to_owned(),
                        source: "imported".to_owned(),
                        meta: KeyMeta {
                            kid,
                            alg,
                            created_at: now,
                            activates_at,
                            superseded_at: None,
                            retires_at: None,
                        },
                    };
                    Ok((vec![stored], plan.supersede))
                }
            })
            .await?;
        if !new.is_empty() {
            tracing::info!(tenant = tenant_id, kid = %kid, alg = %alg, "signing key imported");
        }
        Ok((kid, !new.is_empty()))
    }

    async fn published_keys(&self, tenant_id: &str) -> Result<Arc<Vec<StoredKey>>> {
        if let Some(keys) = self.published.get(&tenant_id.to_owned()) {
            return Ok(keys);
        }
        let epoch = self.published.begin_load();
        let keys = Arc::new(
            self.store
                .list_published_keys(tenant_id, self.clock.now())
                .await?,
        );
        self.published
            .insert(tenant_id.to_owned(), epoch, Arc::clone(&keys));
        Ok(keys)
    }

    /// The tenant's JWK Set: pending, active and retiring keys, public members only.
    pub async fn jwks(&self, tenant_id: &str) -> Result<Value> {
        let now = self.clock.now();
        let keys: Vec<Value> = self
            .published_keys(tenant_id)
            .await?
            .iter()
            .filter(|k| k.meta.state(now).published())
            .map(|k| k.public_jwk.clone())
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// The published public JWK with `kid` (for verifying our own tokens).
    pub async fn public_jwk(&self, tenant_id: &str, kid: &str) -> Result<Option<Value>> {
        let now = self.clock.now();
        Ok(self
            .published_keys(tenant_id)
            .await?
            .iter()
            .find(|k| k.meta.kid == kid && k.meta.state(now).published())
            .map(|k| k.public_jwk.clone()))
    }

    /// The key that signs with `alg` for the tenant right now, decrypted.
    pub async fn signer(&self, tenant_id: &str, alg: Algorithm) -> Result<Option<Arc<SigningKey>>> {
        let now = self.clock.now();
        let keys = self.published_keys(tenant_id).await?;
        // The hot path of every token: no copies of the key list, one map lookup.
        let Some(meta) =
            crate::domain::signing_key::signing_key(keys.iter().map(|k| &k.meta), alg, now)
        else {
            return Ok(None);
        };
        let cache_key = (tenant_id.to_owned(), meta.kid.clone());
        if let Some(k) = self.signers.get(&cache_key) {
            return Ok(Some(k));
        }
        let epoch = self.signers.begin_load();
        let Some(stored) = keys.iter().find(|k| k.meta.kid == meta.kid) else {
            return Ok(None);
        };
        let key = Arc::new(self.open(stored)?);
        self.signers.insert(cache_key, epoch, Arc::clone(&key));
        Ok(Some(key))
    }

    fn open(&self, stored: &StoredKey) -> Result<SigningKey> {
        let pkcs8 = self
            .kek
            .open(
                &stored.kek_id,
                &stored.sealed_private_key,
                &aad(&stored.tenant_id, &stored.meta.kid),
            )
            .map_err(|source| Error::Decrypt {
                tenant: stored.tenant_id.clone(),
                kid: stored.meta.kid.clone(),
                source,
            })?;
        Ok(SigningKey::from_pkcs8(stored.meta.alg, &pkcs8)?)
    }

    /// Decrypts every published key of every tenant: run at start so a wrong
    /// `ENCRYPTION_KEY` stops the process with a clear error instead of failing (or
    /// worse, being papered over with new keys) at the first token.
    pub async fn check_decryptable(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut count = 0;
        for k in self.store.list_all_keys().await? {
            if k.meta.state(now).published() {
                self.open(&k)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Re-encrypts every private key sealed under `old` with this service's KEK, in one
    /// transaction. Keys already under the current KEK are left as they are. Returns how
    /// many were re-encrypted.
    pub async fn reencrypt(&self, old: &Kek) -> Result<usize> {
        let mut updates = Vec::new();
        for k in self.store.list_all_keys().await? {
            if k.kek_id == self.kek.id() {
                continue;
            }
            let aad = aad(&k.tenant_id, &k.meta.kid);
            let plain = old
                .open(&k.kek_id, &k.sealed_private_key, &aad)
                .map_err(|source| Error::Decrypt {
                    tenant: k.tenant_id.clone(),
                    kid: k.meta.kid.clone(),
                    source,
                })?;
            updates.push((
                k.tenant_id.clone(),
                k.meta.kid.clone(),
                self.kek.seal(&plain, &aad),
                self.kek.id().to_owned(),
            ));
        }
        self.store.reseal_keys(&updates).await?;
        Ok(updates.len())
    }
}
