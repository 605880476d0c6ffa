//! The signing key service: bootstrap, rotation, JWKS, loading private keys for signing,
//! and re-encryption under a new key-encryption key. Ties the pure rules of
//! `domain::signing_key` to storage and crypto.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cache::{Cached, DEFAULT_TTL, Epoch};
use crate::clock::{Clock, UnixTime};
use crate::crypto::kek::{self, Kek};
use crate::crypto::signing::{self, SigningKey};
use crate::domain::policy::TenantPolicy;
use crate::domain::signing_key::{
    Algorithm, KeyMeta, KeyPolicy, KeyState, RotationMode, RotationPlan, plan_rotation,
};
use crate::domain::tenant::Tenant;
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
    /// How many keys of all tenants are in each state now (pending, active, retiring,
    /// retired), for the metrics.
    pub async fn count_by_state(&self) -> Result<Vec<(KeyState, usize)>, Error> {
        let keys = self.store.list_all_keys().await?;
        let now = self.clock.now();
        Ok([
            KeyState::Pending,
            KeyState::Active,
            KeyState::Retiring,
            KeyState::Retired,
        ]
        .into_iter()
        .map(|s| (s, keys.iter().filter(|k| k.meta.state(now) == s).count()))
        .collect())
    }

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
        let longest_token = self.longest_token_seconds(tenant_id).await?;
        let now = self.clock.now();
        let new = self
            .store
            .rotate_keys(tenant_id, |existing| async move {
                let plan = plan_rotation(&existing, policy, mode, now, longest_token);
                let new = self
                    .generate(tenant_id, &plan, policy.rsa_bits, now)
                    .await?;
                Ok::<_, Error>((new, plan.supersede))
            })
            .await?;
        for k in &new {
            tracing::info!(tenant = tenant_id, kid = %k.meta.kid, alg = %k.meta.alg,
                activates_at = k.meta.activates_at, mode = mode.as_str(), "signing key created");
        }
        if mode == RotationMode::Now && !new.is_empty() {
            tracing::warn!(
                tenant = tenant_id,
                "emergency key rotation: new keys sign now and the previous keys left the JWKS"
            );
        }
        Ok(new.into_iter().map(|k| k.meta).collect())
    }

    /// The longest lifetime of a token the tenant's keys sign: its access and ID token
    /// lifetimes and every client's own access token lifetime. A superseded key stays
    /// published at least that long, so no token outlives its key in the JWKS.
    async fn longest_token_seconds(&self, tenant_id: &str) -> Result<u64> {
        let tenant: Tenant = self
            .store
            .get_tenant(tenant_id)
            .await?
            .ok_or_else(|| Error::UnknownTenant(tenant_id.to_owned()))?;
        let tokens = TenantPolicy::of(&tenant).tokens;
        // A client on the registration default uses the tenant's lifetime; counting the
        // default too only errs on the long side.
        let clients = self.store.list_clients(tenant_id).await?;
        Ok(clients
            .iter()
            .map(|c| c.spec.access_token_lifetime_seconds)
            .chain([tokens.access_token_seconds, tokens.id_token_seconds])
            .max()
            .unwrap_or(0))
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
        let longest_token = self.longest_token_seconds(tenant_id).await?;
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
                    let plan = plan_rotation(
                        &existing,
                        &only_alg,
                        RotationMode::Force,
                        now,
                        longest_token,
                    );
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
        // Boxed: the query's future would otherwise be part of every caller's future,
        // copied whole each time a request's future is boxed, hit or miss.
        Box::pin(self.load_published_keys(tenant_id)).await
    }

    async fn load_published_keys(&self, tenant_id: &str) -> Result<Arc<Vec<StoredKey>>> {
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
        Ok(self.jwks_version(tenant_id).await?.jwks())
    }

    /// What the tenant's JWK Set is made of right now, to build it or to tell whether a
    /// copy built earlier is still current.
    pub async fn jwks_version(&self, tenant_id: &str) -> Result<JwksVersion> {
        let now = self.clock.now();
        let keys = self.published_keys(tenant_id).await?;
        let published = keys.iter().map(|k| k.meta.state(now).published()).collect();
        Ok(JwksVersion { keys, published })
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

/// A tenant's key list as cached, and which of its keys are published at one moment
/// (a pending key becomes published, a retired one stops being, as time passes).
#[derive(Debug, Clone)]
pub struct JwksVersion {
    keys: Arc<Vec<StoredKey>>,
    published: Vec<bool>,
}

impl JwksVersion {
    /// Whether both describe the same JWK Set: the same cached list (the cache reloads
    /// it after every key change) with the same keys published.
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.keys, &other.keys) && self.published == other.published
    }

    /// The JWK Set: the public members of the published keys.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .zip(&self.published)
            .filter(|(_, published)| **published)
            .map(|(k, _)| k.public_jwk.clone())
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;
    use crate::clock::FixedClock;
    use crate::domain::client::ClientSpec;
    use crate::store::clients::SecretChange;
    use crate::store::testing::{self, TestStore};

    const T0: UnixTime = 1_700_000_000;

    /// ES256 only: RSA key generation would make the cases slow, not more telling.
    fn service(db: &TestStore, clock: Arc<FixedClock>, epoch: &Epoch) -> KeyService {
        let kek = Kek::from_hex(&SecretString::from(
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".to_owned(),
        ))
        .unwrap();
        let policy = KeyPolicy {
            algorithms: vec![Algorithm::Es256],
            ..KeyPolicy::default()
        };
        KeyService::new(db.store.clone(), Arc::new(kek), policy, clock, epoch)
    }

    async fn jwks_kids(keys: &KeyService) -> Vec<String> {
        let set = keys.jwks("t").await.unwrap();
        let mut kids: Vec<String> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.sort();
        kids
    }

    async fn signing_kid(keys: &KeyService) -> String {
        keys.signer("t", Algorithm::Es256)
            .await
            .unwrap()
            .expect("an active ES256 key")
            .kid()
            .to_owned()
    }

    fn sorted(kids: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = kids.iter().map(|k| (*k).to_owned()).collect();
        v.sort();
        v
    }

    /// A store with tenant `t` and a key service whose clock starts at T0, bootstrapped;
    /// returns the first kid.
    async fn bootstrapped(db: &TestStore) -> (KeyService, Arc<FixedClock>, Epoch, String) {
        db.user("t", "alice").await;
        let clock = FixedClock::new(T0);
        let epoch = Epoch::default();
        let keys = service(db, clock.clone(), &epoch);
        let first = keys.bootstrap("t").await.unwrap();
        assert_eq!(first.len(), 1);
        let kid = first[0].kid.clone();
        (keys, clock, epoch, kid)
    }

    /// Rotates and drops the caches, as the change listener does in `serve`.
    async fn rotate(keys: &KeyService, epoch: &Epoch, mode: RotationMode) -> String {
        let new = keys.rotate("t", mode).await.unwrap();
        epoch.bump();
        assert_eq!(new.len(), 1);
        new[0].kid.clone()
    }

    #[tokio::test]
    async fn a_scheduled_rotation_publishes_the_new_key_and_signs_with_it_after_the_delay() {
        for db in testing::both().await {
            let (keys, clock, epoch, old) = bootstrapped(&db).await;
            clock.advance(1000);
            let new = rotate(&keys, &epoch, RotationMode::Force).await;
            let delay = i64::try_from(keys.policy().promotion_delay_seconds).unwrap();
            assert_eq!(delay, 960, "{}", db.name());

            // Published at once, so relying parties have it before it signs.
            assert_eq!(
                jwks_kids(&keys).await,
                sorted(&[&old, &new]),
                "{}",
                db.name()
            );
            assert_eq!(signing_kid(&keys).await, old, "{}", db.name());
            clock.advance(delay - 1);
            assert_eq!(signing_kid(&keys).await, old, "{}", db.name());
            clock.advance(1);
            assert_eq!(signing_kid(&keys).await, new, "{}", db.name());

            // The old key stays published for the overlap window (longer than the
            // default token lifetimes), then leaves the JWKS.
            clock.advance(7_199);
            assert_eq!(
                jwks_kids(&keys).await,
                sorted(&[&old, &new]),
                "{}",
                db.name()
            );
            clock.advance(1);
            assert_eq!(jwks_kids(&keys).await, vec![new.clone()], "{}", db.name());
        }
    }

    #[tokio::test]
    async fn now_signs_with_the_new_key_at_once_and_withdraws_the_others() {
        for db in testing::both().await {
            let (keys, clock, epoch, old) = bootstrapped(&db).await;
            clock.advance(1000);
            let pending = rotate(&keys, &epoch, RotationMode::Force).await;
            clock.advance(10);
            let now = rotate(&keys, &epoch, RotationMode::Now).await;
            assert_eq!(signing_kid(&keys).await, now, "{}", db.name());
            assert_eq!(jwks_kids(&keys).await, vec![now.clone()], "{}", db.name());
            assert_eq!(keys.public_jwk("t", &old).await.unwrap(), None);
            // The withdrawn pending key never comes back.
            clock.advance(3600);
            assert_eq!(signing_kid(&keys).await, now, "{}", db.name());
            assert_eq!(keys.public_jwk("t", &pending).await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn a_superseded_key_stays_published_until_its_longest_lived_token_expired() {
        for db in testing::both().await {
            let (keys, clock, epoch, old) = bootstrapped(&db).await;
            db.store
                .set_tenant_settings("t", &json!({"tokens": {"idTokenSeconds": 43_200}}), T0)
                .await
                .unwrap();
            let long = ClientSpec {
                client_id: "batch".to_owned(),
                access_token_lifetime_seconds: 86_400,
                ..ClientSpec::default()
            };
            db.store
                .upsert_client("t", &long, &SecretChange::Set(vec![1; 32]), T0)
                .await
                .unwrap();
            let new = rotate(&keys, &epoch, RotationMode::Force).await;
            let delay = i64::try_from(keys.policy().promotion_delay_seconds).unwrap();
            // The old key signed until the new one activated; its last token lives a day.
            clock.advance(delay + 86_399);
            assert_eq!(
                jwks_kids(&keys).await,
                sorted(&[&old, &new]),
                "{}",
                db.name()
            );
            clock.advance(1);
            assert_eq!(jwks_kids(&keys).await, vec![new.clone()], "{}", db.name());
        }
    }
}
