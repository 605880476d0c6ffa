//! Upstream tokens kept for a link (`providers[].storeTokens`), so that applications can
//! call the upstream's APIs on the user's behalf: the token response of the link's last
//! sign-in, sealed with AES-256-GCM under the ENCRYPTION_KEY before it leaves the
//! callback (the browser session holding a pending link sees only the sealed form),
//! bound to its tenant, provider and upstream subject (a sealed value moved to another
//! row does not open), re-sealed by `authserver keys reencrypt`.
//!
//! Reading is `GET {issuer}/upstream/{provider}/token` with an access token of ours
//! issued to one of the provider's `tokenReaders`: the upstream access token only —
//! the refresh and ID tokens stay here.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::clock::UnixTime;
use crate::crypto::b64url;
use crate::crypto::kek::{self, Kek};
use crate::store::federation::{FederatedIdentity, SealedTokens};
use crate::store::{self, Store};

/// Longest token response kept: larger ones are not tokens we know how to use.
const MAX_KEPT_BYTES: usize = 32 * 1024;

/// What is kept of an upstream token response. No `Debug`: it holds bearer tokens.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
pub struct Kept {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When the access token expires (`expires_in` counted from the sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<UnixTime>,
    /// The sign-in that obtained them.
    pub obtained_at: UnixTime,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("expires_at", &self.expires_at)
            .field("obtained_at", &self.obtained_at)
            .finish_non_exhaustive()
    }
}

impl Kept {
    /// What a token reader gets: the access token and what it is for, never the
    /// refresh or ID token.
    pub fn for_reader(&self, provider_id: &str, now: UnixTime) -> Value {
        let mut out = json!({
            "provider": provider_id,
            "access_token": self.access_token,
            "token_type": self.token_type.as_deref().unwrap_or("Bearer"),
        });
        if let Some(scope) = &self.scope {
            out["scope"] = scope.clone().into();
        }
        if let Some(at) = self.expires_at {
            out["expires_at"] = at.into();
            out["expires_in"] = (at - now).max(0).into();
        }
        out
    }

    /// The access token has expired (by the upstream's `expires_in`).
    pub fn expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Binds a sealed value to its row.
fn aad(tenant_id: &str, provider_id: &str, subject: &str) -> Vec<u8> {
    format!("gatehouse upstream tokens\0{tenant_id}\0{provider_id}\0{subject}").into_bytes()
}

/// The token response `response` of a sign-in at `now`, sealed for the link (tenant,
/// provider, upstream subject); `None` when it has no access token or is too large.
pub fn seal(
    kek: &Kek,
    tenant_id: &str,
    provider_id: &str,
    subject: &str,
    response: &Map<String, Value>,
    now: UnixTime,
) -> Option<SealedTokens> {
    let text = |k: &str| response.get(k).and_then(Value::as_str).map(str::to_owned);
    let kept = Kept {
        access_token: text("access_token").filter(|t| !t.is_empty())?,
        token_type: text("token_type"),
        refresh_token: text("refresh_token"),
        id_token: text("id_token"),
        scope: text("scope"),
        expires_at: response
            .get("expires_in")
            .and_then(Value::as_i64)
            .filter(|s| *s > 0)
            .map(|s| now.saturating_add(s)),
        obtained_at: now,
    };
    let plain = serde_json::to_vec(&kept).ok()?;
    if plain.len() > MAX_KEPT_BYTES {
        return None;
    }
    Some(SealedTokens {
        kek_id: kek.id().to_owned(),
        sealed: b64url(&kek.seal(&plain, &aad(tenant_id, provider_id, subject))),
    })
}

/// Opens the tokens kept for `link` (`None` when none are).
pub fn open(kek: &Kek, link: &FederatedIdentity) -> Result<Option<Kept>, kek::Error> {
    let Some(t) = &link.tokens else {
        return Ok(None);
    };
    let corrupt = || kek::Error::Corrupt {
        kek_id: t.kek_id.clone(),
    };
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&t.sealed)
        .map_err(|_| corrupt())?;
    let plain = kek.open(
        &t.kek_id,
        &sealed,
        &aad(&link.tenant_id, &link.provider_id, &link.subject),
    )?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|_| corrupt())
}

/// Why tokens could not be re-sealed.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error("upstream tokens of provider {provider:?} (tenant {tenant:?}) do not open: {source}")]
    Open {
        tenant: String,
        provider: String,
        #[source]
        source: kek::Error,
    },
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Re-seals every link's kept tokens not under `current`, opening them with `old`
/// (`authserver keys reencrypt`). All or nothing: tokens that do not open fail the run
/// before anything is written. Returns how many were re-sealed.
pub async fn reseal(store: &Store, old: &Kek, current: &Kek) -> Result<u64, ResealError> {
    let mut updates = Vec::new();
    for link in store.links_sealed_elsewhere(current.id()).await? {
        let Some(t) = &link.tokens else { continue };
        let old_kek_id = t.kek_id.clone();
        let kept = open(old, &link).map_err(|source| ResealError::Open {
            tenant: link.tenant_id.clone(),
            provider: link.provider_id.clone(),
            source,
        })?;
        let Some(plain) = kept.and_then(|k| serde_json::to_vec(&k).ok()) else {
            continue;
        };
        let sealed = SealedTokens {
            kek_id: current.id().to_owned(),
            sealed: b64url(&current.seal(
                &plain,
                &aad(&link.tenant_id, &link.provider_id, &link.subject),
            )),
        };
        updates.push((
            FederatedIdentity {
                tokens: Some(sealed),
                ..link
            },
            old_kek_id,
        ));
    }
    Ok(store.reseal_upstream_tokens(&updates).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn kek(byte: u8) -> Kek {
        Kek::from_hex(&SecretString::from(format!("{byte:02x}").repeat(32))).unwrap()
    }

    fn link(tokens: Option<SealedTokens>) -> FederatedIdentity {
        FederatedIdentity {
            tenant_id: "main".into(),
            provider_id: "corp".into(),
            subject: "ann".into(),
            user_id: "u1".into(),
            email: None,
            claims: Map::new(),
            created_at: 0,
            last_sign_in_at: 0,
            tokens,
        }
    }

    fn response() -> Map<String, Value> {
        json!({"access_token": "at-secret", "refresh_token": "rt-secret", "id_token": "idt",
               "token_type": "Bearer", "expires_in": 300, "scope": "openid email"})
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn sealed_tokens_open_only_for_their_own_row_and_key() {
        let k = kek(1);
        let sealed = seal(&k, "main", "corp", "ann", &response(), 1000).unwrap();
        assert!(!sealed.sealed.contains("at-secret"));
        let kept = open(&k, &link(Some(sealed.clone()))).unwrap().unwrap();
        assert_eq!(kept.access_token, "at-secret");
        assert_eq!(kept.refresh_token.as_deref(), Some("rt-secret"));
        assert_eq!(kept.expires_at, Some(1300));
        assert!(!format!("{kept:?}").contains("secret"));
        // Moved to another user's link, or opened under another key: refused.
        let other = FederatedIdentity {
            subject: "mallory".into(),
            ..link(Some(sealed.clone()))
        };
        assert!(matches!(open(&k, &other), Err(kek::Error::Corrupt { .. })));
        assert!(matches!(
            open(&kek(2), &link(Some(sealed))),
            Err(kek::Error::WrongKey { .. })
        ));
        assert!(open(&k, &link(None)).unwrap().is_none());
    }

    #[test]
    fn a_reader_gets_the_access_token_only() {
        let k = kek(1);
        let sealed = seal(&k, "main", "corp", "ann", &response(), 1000).unwrap();
        let kept = open(&k, &link(Some(sealed))).unwrap().unwrap();
        let out = kept.for_reader("corp", 1100);
        assert_eq!(out["access_token"], "at-secret");
        assert_eq!(out["expires_in"], 200);
        assert!(!out.to_string().contains("rt-secret"), "{out}");
        assert!(!out.to_string().contains("idt"), "{out}");
        assert!(!kept.expired(1299) && kept.expired(1300));
    }

    #[test]
    fn responses_without_an_access_token_or_too_large_are_not_kept() {
        let k = kek(1);
        let mut r = response();
        r.remove("access_token");
        assert!(seal(&k, "main", "corp", "ann", &r, 0).is_none());
        let mut r = response();
        r.insert("id_token".into(), "x".repeat(MAX_KEPT_BYTES).into());
        assert!(seal(&k, "main", "corp", "ann", &r, 0).is_none());
    }
}
