//! DPoP proofs (RFC 9449): validation of the `DPoP` header and server nonces.
//!
//! Nonces are random values stored in the database with an expiry, so a nonce handed out
//! by one pod is accepted by every other; each pod reuses its current nonce for half its
//! lifetime, so issuing costs one insert per pod per half-lifetime, not per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::error::{ErrorCode, OAuthError};
use crate::clock::{Clock, UnixTime};
use crate::config::DpopSettings;
use crate::crypto::{b64url, jws, random_bytes};
use crate::store::replay::ReplayCache;
use crate::store::{self, Store};

/// A validated proof: the thumbprint of the key it was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jkt: String,
}

/// What a proof must match.
#[derive(Debug)]
pub struct Expectation<'a> {
    pub method: &'a str,
    /// The endpoint URL (no query, no fragment).
    pub url: &'a str,
    /// An access token presented alongside (resource requests): `ath` must match.
    pub access_token: Option<&'a str>,
}

/// Validates proofs and issues nonces.
#[derive(Debug)]
pub struct Dpop {
    settings: DpopSettings,
    store: Store,
    clock: Arc<dyn Clock>,
    /// This pod's current nonce per tenant: (nonce, issued at, expires at).
    current: Mutex<HashMap<String, (String, UnixTime, UnixTime)>>,
    /// Nonces known valid (ours or seen in the database), with expiry.
    known: Mutex<HashMap<(String, String), UnixTime>>,
}

fn invalid(d: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, d)
}

/// `htu` comparison ignores query and fragment (RFC 9449 §4.3 check 9) and the case of
/// scheme and host, and default ports.
fn same_url(htu: &str, expected: &str) -> bool {
    let norm = |s: &str| {
        url::Url::parse(s).ok().map(|mut u| {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        })
    };
    matches!((norm(htu), norm(expected)), (Some(a), Some(b)) if a == b)
}

impl Dpop {
    pub fn new(settings: DpopSettings, store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            store,
            clock,
            current: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &DpopSettings {
        &self.settings
    }

    /// The proof algorithms accepted, by their JOSE names (discovery, metadata, the
    /// `algs` of a DPoP challenge).
    pub fn algorithm_names(&self) -> Vec<&'static str> {
        self.settings
            .algorithms
            .iter()
            .map(|a| a.as_str())
            .collect()
    }

    /// The nonce to hand out now for the tenant (creating one when due).
    pub async fn nonce(&self, tenant_id: &str) -> Result<String, store::Error> {
        let now = self.clock.now();
        let lifetime = i64::try_from(self.settings.nonce_lifetime_seconds).unwrap_or(300);
        if let Ok(cur) = self.current.lock()
            && let Some((nonce, issued, _)) = cur.get(tenant_id)
            && now < issued + lifetime / 2
        {
            return Ok(nonce.clone());
        }
        let nonce = b64url(&random_bytes::<16>());
        let expires = now + lifetime;
        self.store
            .insert_dpop_nonce(tenant_id, &nonce, expires)
            .await?;
        if let Ok(mut cur) = self.current.lock() {
            cur.insert(tenant_id.to_owned(), (nonce.clone(), now, expires));
        }
        self.remember(tenant_id, &nonce, expires);
        Ok(nonce)
    }

    fn remember(&self, tenant_id: &str, nonce: &str, expires: UnixTime) {
        if let Ok(mut known) = self.known.lock() {
            let now = self.clock.now();
            if known.len() > 10_000 {
                known.retain(|_, e| *e > now);
            }
            known.insert((tenant_id.to_owned(), nonce.to_owned()), expires);
        }
    }

    async fn nonce_valid(&self, tenant_id: &str, nonce: &str) -> Result<bool, store::Error> {
        let now = self.clock.now();
        let key = (tenant_id.to_owned(), nonce.to_owned());
        if let Ok(known) = self.known.lock()
            && let Some(exp) = known.get(&key)
        {
            return Ok(*exp > now);
        }
        match self.store.dpop_nonce_expiry(tenant_id, nonce, now).await? {
            Some(exp) => {
                self.remember(tenant_id, nonce, exp);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// An error asking for a (new) nonce.
    async fn use_nonce(&self, tenant_id: &str, d: &str) -> OAuthError {
        let mut e = OAuthError::new(ErrorCode::UseDpopNonce, d);
        match self.nonce(tenant_id).await {
            Ok(n) => e.dpop_nonce = Some(n),
            Err(err) => return err.into(),
        }
        e
    }

    /// Validates the `DPoP` header values of a request (RFC 9449 §4.3). `None` when no
    /// proof was sent.
    pub async fn validate(
        &self,
        tenant_id: &str,
        headers: &[&str],
        expect: &Expectation<'_>,
    ) -> Result<Option<Proof>, OAuthError> {
        let proof = match headers {
            [] => return Ok(None),
            [one] => *one,
            _ => return Err(invalid("more than one DPoP header")),
        };
        let now = self.clock.now();
        let window = i64::try_from(self.settings.proof_max_age_seconds).unwrap_or(60);
        let checked = check_proof(proof, &self.settings.algorithms, expect, now, window)?;
        let (parsed, jti, iat) = (&checked.parsed, checked.jti.as_str(), checked.iat);
        let nonce_ok = match parsed.claim_str("nonce") {
            Some(n) => self.nonce_valid(tenant_id, n).await?,
            None => !self.settings.require_nonce,
        };
        if !nonce_ok {
            let why = if parsed.claim_str("nonce").is_some() {
                "DPoP nonce is invalid or expired"
            } else {
                "a DPoP nonce is required"
            };
            return Err(self.use_nonce(tenant_id, why).await);
        }
        // Checked last, so a proof rejected above can be corrected and resent.
        let fresh = self
            .store
            .use_jti(ReplayCache::Dpop, tenant_id, "", jti, iat + 2 * window)
            .await?;
        if !fresh {
            return Err(invalid("DPoP proof jti has already been used"));
        }
        Ok(Some(Proof { jkt: checked.jkt }))
    }
}

/// A proof that passed every check that needs no state (nonce and replay remain).
#[derive(Debug)]
pub struct CheckedProof {
    pub parsed: jws::Parsed,
    pub jti: String,
    pub iat: UnixTime,
    pub jkt: String,
}

/// The stateless checks of RFC 9449 §4.3: a JWS of `typ` `dpop+jwt` signed by the public
/// key it embeds, with one of `algorithms`, a `jti`, `htm` and `htu` of this request, an
/// `iat` within `window` seconds of `now`, and `ath` when a token is presented. Pure, so
/// it is unit-tested and fuzzed on its own.
pub fn check_proof(
    proof: &str,
    algorithms: &[crate::domain::signing_key::Algorithm],
    expect: &Expectation<'_>,
    now: UnixTime,
    window: i64,
) -> Result<CheckedProof, OAuthError> {
    let parsed = jws::parse(proof).map_err(|_| invalid("DPoP proof is not a JWS"))?;
    if parsed.header_str("typ") != Some("dpop+jwt") {
        return Err(invalid("DPoP proof typ must be dpop+jwt"));
    }
    let jwk = parsed
        .header
        .get("jwk")
        .filter(|j| j.is_object())
        .ok_or_else(|| invalid("DPoP proof has no embedded jwk"))?;
    if jws::has_private_members(jwk) {
        return Err(invalid("DPoP proof jwk contains a private key"));
    }
    parsed
        .verify(jwk, algorithms)
        .map_err(|e| invalid(&format!("DPoP proof signature rejected: {e}")))?;
    let jti = parsed
        .claim_str("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| invalid("DPoP proof has no valid jti"))?
        .to_owned();
    if parsed.claim_str("htm") != Some(expect.method) {
        return Err(invalid("DPoP proof htm does not match the request method"));
    }
    if !parsed
        .claim_str("htu")
        .is_some_and(|htu| same_url(htu, expect.url))
    {
        return Err(invalid("DPoP proof htu does not match the request URL"));
    }
    let iat = parsed
        .claim_i64("iat")
        .ok_or_else(|| invalid("DPoP proof has no iat"))?;
    if iat > now.saturating_add(window) || iat < now.saturating_sub(window) {
        return Err(invalid("DPoP proof iat is outside the acceptable window"));
    }
    if let Some(token) = expect.access_token {
        let ath = b64url(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
        );
        if parsed.claim_str("ath") != Some(ath.as_str()) {
            return Err(invalid("DPoP proof ath does not match the access token"));
        }
    }
    let jkt = jws::thumbprint(jwk).map_err(|_| invalid("DPoP proof jwk is not usable"))?;
    Ok(CheckedProof {
        parsed,
        jti,
        iat,
        jkt,
    })
}

/// The `cnf` claim for a bound token (RFC 9449 §6).
pub fn cnf(proof: &Proof) -> Value {
    serde_json::json!({ "jkt": proof.jkt })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_ignores_query_fragment_and_case() {
        assert!(same_url(
            "https://ID.example.com/token?x=1",
            "https://id.example.com/token"
        ));
        assert!(same_url(
            "https://id.example.com:443/token",
            "https://id.example.com/token"
        ));
        assert!(!same_url(
            "https://id.example.com/other",
            "https://id.example.com/token"
        ));
        assert!(!same_url("not a url", "https://id.example.com/token"));
    }
}
