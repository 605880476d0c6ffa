//! End-user grants at the token endpoint: `authorization_code` (RFC 6749 §4.1.3 with
//! PKCE, RFC 7636) and `refresh_token` (§6) with rotation and reuse detection, and the
//! tokens they issue: access token (RFC 9068), ID token (OIDC Core §2, §3.1.3.6) and
//! refresh token (opaque, stored hashed).

use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use super::OAuthService;
use super::dpop::Proof;
use super::error::{ErrorCode, OAuthError};
use super::token::{
    AccessTokenId, AccessTokenRequest, EndpointRequest, requested_audiences, require_dpop_if_bound,
};
use crate::crypto::{b64url, handle_hash, new_handle};
use crate::domain::client::{ClientSpec, ClientType, GrantType, SubjectType};
use crate::domain::policy::TenantPolicy;
use crate::domain::signing_key::Algorithm;
use crate::domain::tenant::Tenant;
use crate::domain::user::PROFILE_CLAIMS;
use crate::store::audit::AuditEvent;
use crate::store::clients::StoredClient;
use crate::store::grants::{GrantRow, NewRefresh, Redeemed, RefreshRedemption, RefreshRefusal};
use crate::store::users::StoredUser;

/// JOSE `typ` of ID tokens.
pub const ID_TOKEN_TYP: &str = "JWT";

fn invalid_grant(d: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
}

/// Checks a PKCE `code_verifier` against what the authorization request stored
/// (RFC 7636 §4.6). Only S256 challenges are ever stored; anything else fails.
pub fn verify_pkce(
    challenge: Option<&str>,
    method: Option<&str>,
    verifier: Option<&str>,
) -> Result<(), &'static str> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (Some(_), None) => Err("code_verifier is required"),
        (None, Some(_)) => {
            Err("code_verifier sent, but the authorization request had no code_challenge")
        }
        (Some(challenge), Some(verifier)) => {
            if method.is_some_and(|m| m != "S256") {
                return Err("unsupported code_challenge_method");
            }
            // RFC 7636 §4.1: 43 to 128 unreserved characters.
            if !(43..=128).contains(&verifier.len())
                || !verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
            {
                return Err("code_verifier must be 43 to 128 unreserved characters");
            }
            let computed = b64url(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
            );
            if bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                Ok(())
            } else {
                Err("code_verifier does not match the code_challenge")
            }
        }
    }
}

/// `at_hash` (OIDC Core §3.1.3.6): base64url of the left half of the hash of the
/// access token, with the hash of the ID token's algorithm (SHA-512 for Ed25519).
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let digest = match alg {
        Algorithm::EdDsa => &aws_lc_rs::digest::SHA512,
        Algorithm::Rs256 | Algorithm::Es256 => &aws_lc_rs::digest::SHA256,
    };
    let h = aws_lc_rs::digest::digest(digest, access_token.as_bytes());
    let bytes = h.as_ref();
    b64url(&bytes[..bytes.len() / 2])
}

fn has(scopes: &[String], s: &str) -> bool {
    scopes.iter().any(|x| x == s)
}

/// The user's claims a set of scopes releases (OIDC Core §5.4): profile claims with
/// `profile`, `email`/`email_verified` with `email`. Shared by ID token and userinfo,
/// which add the claims an upstream provider forwards with `profile`
/// (`Store::forwarded_claims`).
pub fn user_claims(user: &StoredUser, scopes: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    if has(scopes, "profile") {
        out.insert("preferred_username".into(), user.username.clone().into());
        for name in PROFILE_CLAIMS {
            if let Some(v) = user.profile.get(*name) {
                out.insert((*name).to_owned(), v.clone());
            }
        }
        out.insert("updated_at".into(), user.updated_at.into());
    }
    if has(scopes, "email")
        && let Some(email) = &user.email
    {
        out.insert("email".into(), email.clone().into());
        out.insert("email_verified".into(), user.email_verified.into());
    }
    out
}

/// How the refresh token of a response comes about.
enum RefreshIssue {
    /// None for this response.
    None,
    /// A new family member, stored by the caller already.
    Issued(String),
    /// The successor of a redeemed token, stored by the rotation
    /// (`Store::redeem_refresh_token`) together with the record of the access token
    /// `access` names: that is the access token to mint.
    Rotated {
        token: String,
        access: AccessTokenId,
    },
}

impl OAuthService {
    /// The `sub` a client sees for a user; a pairwise client of a tenant that no longer
    /// offers pairwise subjects gets nothing (its `sub` values would change meaning).
    pub(crate) async fn user_subject(
        &self,
        tenant: &Tenant,
        spec: &ClientSpec,
        user_id: &str,
    ) -> Result<String, OAuthError> {
        self.require_subject_type(tenant, spec).await?;
        Ok(self.subjects.subject(&tenant.id, spec, user_id).await?)
    }

    /// Whether the client may be given subjects at all: a pairwise client needs a
    /// tenant that offers them and a sector document that lists its redirect URIs.
    async fn require_subject_type(
        &self,
        tenant: &Tenant,
        spec: &ClientSpec,
    ) -> Result<(), OAuthError> {
        if spec.subject_type != SubjectType::Pairwise {
            return Ok(());
        }
        if !TenantPolicy::of(tenant).allows_subject_type(SubjectType::Pairwise) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client uses pairwise subjects, which this tenant does not offer",
            ));
        }
        if let Some(uri) = &spec.sector_identifier_uri {
            self.verify_sector(uri, &spec.redirect_uris).await?;
        }
        Ok(())
    }

    /// OpenID Connect Registration §5: the document at `sector_identifier_uri` must list
    /// every redirect URI of the client; until it does (or while it cannot be fetched),
    /// the client gets no pairwise subject — otherwise any client could name another's
    /// host as its sector and receive the same `sub` values.
    async fn verify_sector(&self, uri: &str, redirect_uris: &[String]) -> Result<(), OAuthError> {
        let unusable = |why: String| {
            OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("pairwise subjects are unavailable: {why}"),
            )
        };
        let listed = self.sectors.get(uri, false).await.map_err(unusable)?;
        let listed: Vec<&str> = listed
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match redirect_uris.iter().find(|r| !listed.contains(&r.as_str())) {
            Some(missing) => Err(unusable(format!(
                "the sector_identifier_uri does not list the redirect URI {missing}"
            ))),
            None => Ok(()),
        }
    }

    /// Revokes a grant after a replayed code or reused refresh token, and records why.
    async fn revoke_family(
        &self,
        tenant: &Tenant,
        grant: &GrantRow,
        event: &str,
        ip: Option<&str>,
    ) -> Result<(), OAuthError> {
        let now = self.clock.now();
        self.store
            .revoke_grant(&tenant.id, &grant.grant_id, now)
            .await?;
        tracing::warn!(tenant = %tenant.id, client_id = %grant.client_id, event, "grant revoked");
        self.store
            .audit(
                AuditEvent::new(&tenant.id, now, event)
                    .actor(Some(&grant.client_id))
                    .subject(Some(&grant.user_id))
                    .ip(ip)
                    .details(json!({ "grant_id": grant.grant_id, "client_id": grant.client_id })),
            )
            .await;
        Ok(())
    }

    /// A live grant of `client` and its user: `invalid_grant` when the grant was revoked
    /// or ran out, or the user is gone.
    async fn live_grant(
        &self,
        tenant: &Tenant,
        grant_id: &str,
    ) -> Result<(GrantRow, StoredUser), OAuthError> {
        let grant = self
            .store
            .get_grant(&tenant.id, grant_id)
            .await?
            .ok_or_else(|| invalid_grant("the grant no longer exists"))?;
        let user = self.grant_user(tenant, &grant).await?;
        Ok((grant, user))
    }

    /// The user of `grant` if the grant is live: `invalid_grant` when it was revoked or
    /// ran out, or the user is gone.
    async fn grant_user(
        &self,
        tenant: &Tenant,
        grant: &GrantRow,
    ) -> Result<StoredUser, OAuthError> {
        self.require_live(grant)?;
        self.store
            .get_user(&tenant.id, &grant.user_id)
            .await?
            .ok_or_else(|| invalid_grant("the user no longer exists"))
    }

    /// `invalid_grant` when `grant` was revoked or ran out.
    fn require_live(&self, grant: &GrantRow) -> Result<(), OAuthError> {
        grant
            .refusal(self.clock.now())
            .map_or(Ok(()), |r| Err(refusal_error(r)))
    }

    /// `grant_type=authorization_code`.
    #[allow(clippy::too_many_lines)] // the checks of RFC 6749 §4.1.3, in order
    pub(super) async fn authorization_code_grant(
        &self,
        tenant: &Tenant,
        client: &StoredClient,
        req: &EndpointRequest<'_>,
    ) -> Result<(Value, Option<Proof>), OAuthError> {
        let spec = &client.spec;
        if !spec.allows_grant(GrantType::AuthorizationCode) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client is not allowed to use authorization_code",
            ));
        }
        let code = req.form.require("code")?;
        let redirect_uri = req.form.get("redirect_uri");
        let code_hash = handle_hash(code);
        let now = self.clock.now();
        let row = self
            .store
            .find_code(&tenant.id, &code_hash)
            .await?
            .ok_or_else(|| invalid_grant("the code is invalid, expired or already used"))?;
        // Another client presenting this code learns nothing and changes nothing.
        if row.client_id != spec.client_id {
            return Err(invalid_grant(
                "the code is invalid, expired or already used",
            ));
        }
        if row.used_at.is_some() {
            // RFC 6749 §4.1.2: a code used twice revokes what it issued.
            if let Some(grant) = self.store.get_grant(&tenant.id, &row.grant_id).await? {
                self.revoke_family(
                    tenant,
                    &grant,
                    "authorization_code.replayed",
                    req.ip.as_deref(),
                )
                .await?;
            }
            return Err(invalid_grant(
                "the code is invalid, expired or already used",
            ));
        }
        if row.expires_at <= now {
            return Err(invalid_grant(
                "the code is invalid, expired or already used",
            ));
        }
        // RFC 6749 §4.1.3: required when the authorization request had it. It may only
        // have been left out for a client with exactly one registered URI (non-OIDC
        // requests, see `authorize::request`), which is then what the code is bound to.
        let implied = spec.redirect_uris.len() == 1 && spec.redirect_uris[0] == row.redirect_uri;
        match redirect_uri {
            Some(uri) if uri == row.redirect_uri => {}
            None if implied => {}
            None => {
                return Err(OAuthError::invalid_request(
                    "missing parameter \"redirect_uri\"",
                ));
            }
            Some(_) => {
                return Err(invalid_grant(
                    "redirect_uri differs from the authorization request",
                ));
            }
        }
        verify_pkce(
            row.code_challenge.as_deref(),
            row.code_challenge_method.as_deref(),
            req.form.get("code_verifier"),
        )
        .map_err(invalid_grant)?;
        let (grant, user) = self.live_grant(tenant, &row.grant_id).await?;
        let scopes = grant.scopes();
        let sub = self.user_subject(tenant, spec, &user.user_id).await?;
        let audiences = requested_audiences(spec, &req.form)?;
        require_dpop_if_bound(spec, req)?;
        if row.dpop_jkt.is_some() && req.dpop.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the code is bound to a DPoP key: send a DPoP proof",
            ));
        }
        let proof = self.token_proof(tenant, req).await?;
        if let Some(jkt) = &row.dpop_jkt
            && proof.as_ref().is_none_or(|p| &p.jkt != jkt)
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the DPoP proof key differs from the dpop_jkt of the authorization request",
            ));
        }
        if !self.store.use_code(&tenant.id, &code_hash, now).await? {
            // Lost a race with another redemption of the same code: a replay.
            self.revoke_family(
                tenant,
                &grant,
                "authorization_code.replayed",
                req.ip.as_deref(),
            )
            .await?;
            return Err(invalid_grant(
                "the code is invalid, expired or already used",
            ));
        }
        let refresh = if (has(&scopes, "offline_access") || spec.refresh_without_offline_access)
            && spec.allows_grant(GrantType::RefreshToken)
        {
            // RFC 9449 §5: a public client's refresh tokens are bound to its DPoP key
            // (a confidential client's are bound by its authentication already).
            let jkt = match (spec.client_type, &proof) {
                (ClientType::Public, Some(p)) => Some(p.jkt.as_str()),
                _ => None,
            };
            let token = new_handle();
            let hash = handle_hash(&token);
            self.store
                .insert_refresh_token(
                    &tenant.id,
                    &NewRefresh {
                        token_hash: &hash,
                        grant_id: &grant.grant_id,
                        dpop_jkt: jkt,
                        created_at: now,
                        expires_at: refresh_expiry(spec, &grant, now),
                    },
                )
                .await?;
            RefreshIssue::Issued(token)
        } else {
            RefreshIssue::None
        };
        let body = self
            .user_tokens(
                tenant,
                spec,
                &grant,
                &user,
                UserTokens {
                    sub: &sub,
                    scopes: &scopes,
                    audiences: &audiences,
                    nonce: row.nonce.as_deref(),
                    proof: proof.as_ref(),
                    refresh,
                },
            )
            .await?;
        Ok((body, proof))
    }

    /// `grant_type=refresh_token`: everything that needs no stored row is checked first,
    /// then one statement redeems the token (`Store::redeem_refresh_token`: read,
    /// checked and rotated in one round trip), then the tokens are signed.
    pub(super) async fn refresh_token_grant(
        &self,
        tenant: &Tenant,
        client: &StoredClient,
        req: &EndpointRequest<'_>,
    ) -> Result<(Value, Option<Proof>), OAuthError> {
        let spec = &client.spec;
        if !spec.allows_grant(GrantType::RefreshToken) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client is not allowed to use refresh_token",
            ));
        }
        let presented = req.form.require("refresh_token")?;
        let requested = req.form.list("scope");
        let audiences = requested_audiences(spec, &req.form)?;
        require_dpop_if_bound(spec, req)?;
        let proof = self.token_proof(tenant, req).await?;
        self.require_subject_type(tenant, spec).await?;
        // The access token is signed after the rotation: a missing key must refuse
        // before it, or the client would lose its refresh token to our failure.
        let alg = spec
            .access_token_alg
            .unwrap_or(self.tokens.access_token_alg);
        self.active_signer(tenant, alg).await?;
        let now = self.clock.now();
        let access = AccessTokenId::new(tenant, spec, now);
        let token = new_handle();
        let hash = handle_hash(&token);
        let redemption = RefreshRedemption {
            token_hash: &handle_hash(presented),
            client_id: &spec.client_id,
            now,
            scopes: &requested,
            proof_jkt: proof.as_ref().map(|p| p.jkt.as_str()),
            successor_hash: &hash,
            successor_expires_at: now + refresh_lifetime(spec),
            access: (&access.jti, access.expires_at()),
        };
        let unknown = || invalid_grant("the refresh token is invalid, expired or revoked");
        let Redeemed {
            token: row,
            grant,
            user,
            rotated,
        } = self
            .store
            .redeem_refresh_token(&tenant.id, &redemption)
            .await?
            .ok_or_else(unknown)?;
        // A rotated token presented again, or one rotated meanwhile: reuse.
        let reuse_detected = || {
            self.revoke_family(
                tenant,
                &grant,
                "refresh_token.reuse_detected",
                req.ip.as_deref(),
            )
        };
        match redemption.refusal(&row, &grant) {
            Some(RefreshRefusal::Rotated) => {
                if grant.revoked_at.is_none() {
                    reuse_detected().await?;
                }
                return Err(unknown());
            }
            Some(refusal) => return Err(refusal_error(refusal)),
            None if !rotated => {
                // Rotated by a concurrent request between this one's read and its
                // write (reuse), or the grant was revoked meanwhile.
                reuse_detected().await?;
                return Err(unknown());
            }
            None => {}
        }
        let scopes = if requested.is_empty() {
            grant.scopes()
        } else {
            requested
        };
        let sub = self
            .subjects
            .subject(&tenant.id, spec, &user.user_id)
            .await?;
        let body = self
            .user_tokens(
                tenant,
                spec,
                &grant,
                &user,
                UserTokens {
                    sub: &sub,
                    scopes: &scopes,
                    audiences: &audiences,
                    // OIDC Core §12.2: no nonce in a refreshed ID token.
                    nonce: None,
                    proof: proof.as_ref(),
                    refresh: RefreshIssue::Rotated { token, access },
                },
            )
            .await?;
        Ok((body, proof))
    }

    /// Mints the access token (recorded under the grant) and, with `openid`, the ID
    /// token; returns the token response.
    async fn user_tokens(
        &self,
        tenant: &Tenant,
        spec: &ClientSpec,
        grant: &GrantRow,
        user: &StoredUser,
        t: UserTokens<'_>,
    ) -> Result<Value, OAuthError> {
        let mut extra = Map::new();
        extra.insert("auth_time".into(), grant.auth_time.into());
        if let Some(acr) = &grant.acr {
            extra.insert("acr".into(), acr.clone().into());
        }
        let request = AccessTokenRequest {
            sub: t.sub,
            scopes: t.scopes,
            audiences: t.audiences,
            proof: t.proof,
            extra,
        };
        let (minted, refresh) = match t.refresh {
            RefreshIssue::Rotated { token, access } => (
                self.mint_access_token_as(tenant, spec, request, access)
                    .await?,
                Some(token),
            ),
            RefreshIssue::None | RefreshIssue::Issued(_) => {
                let minted = self.mint_access_token(tenant, spec, request).await?;
                self.store
                    .record_grant_access_token(
                        &tenant.id,
                        &minted.jti,
                        &grant.grant_id,
                        minted.expires_at,
                    )
                    .await?;
                let refresh = match t.refresh {
                    RefreshIssue::Issued(token) => Some(token),
                    _ => None,
                };
                (minted, refresh)
            }
        };
        let mut body = minted.response(t.scopes, t.proof);
        if has(t.scopes, "openid") {
            let alg = spec.id_token_alg.unwrap_or(self.tokens.id_token_alg);
            let now = self.clock.now();
            let lifetime =
                i64::try_from(TenantPolicy::of(tenant).tokens.id_token_seconds).unwrap_or(3600);
            let mut claims = Map::new();
            claims.insert("iss".into(), tenant.issuer.clone().into());
            claims.insert("sub".into(), t.sub.into());
            claims.insert("aud".into(), spec.client_id.clone().into());
            claims.insert("azp".into(), spec.client_id.clone().into());
            claims.insert("exp".into(), (now + lifetime).into());
            claims.insert("iat".into(), now.into());
            claims.insert("auth_time".into(), grant.auth_time.into());
            if let Some(nonce) = t.nonce {
                claims.insert("nonce".into(), nonce.into());
            }
            if let Some(acr) = &grant.acr {
                claims.insert("acr".into(), acr.clone().into());
            }
            if !grant.amr.is_empty() {
                claims.insert("amr".into(), json!(grant.amr));
            }
            if let Some(sid) = &grant.sid {
                claims.insert("sid".into(), sid.clone().into());
            }
            claims.insert("at_hash".into(), at_hash(alg, &minted.token).into());
            for (k, v) in user_claims(user, t.scopes) {
                claims.insert(k, v);
            }
            if has(t.scopes, "profile") {
                // Claims an upstream identity provider forwards (`groups`, …), as of the
                // user's last upstream sign-in; ours win on a clash.
                for (k, v) in self
                    .store
                    .forwarded_claims(&tenant.id, &user.user_id)
                    .await?
                {
                    claims.entry(k).or_insert(v);
                }
            }
            let id_token = self
                .sign(tenant, alg, ID_TOKEN_TYP, &Value::Object(claims))
                .await?;
            body["id_token"] = id_token.into();
        }
        if let Some(token) = refresh {
            body["refresh_token"] = token.into();
        }
        Ok(body)
    }
}

impl OAuthService {
    /// The live refresh token `token` of `client`, with its grant.
    async fn own_refresh_token(
        &self,
        tenant: &Tenant,
        client: &ClientSpec,
        token: &str,
    ) -> Result<Option<(crate::store::grants::RefreshRow, GrantRow)>, OAuthError> {
        let now = self.clock.now();
        let Some(row) = self
            .store
            .find_refresh_token(&tenant.id, &handle_hash(token))
            .await?
        else {
            return Ok(None);
        };
        let Some(grant) = self.store.get_grant(&tenant.id, &row.grant_id).await? else {
            return Ok(None);
        };
        if grant.client_id != client.client_id {
            return Ok(None);
        }
        Ok(Some((row, grant)).filter(|(row, grant)| {
            row.rotated_at.is_none() && row.expires_at > now && grant.refusal(now).is_none()
        }))
    }

    /// RFC 7662 for refresh tokens: only the client the token belongs to sees it
    /// active; anything else is `None` (the caller answers `{"active": false}`).
    pub(super) async fn introspect_refresh_token(
        &self,
        tenant: &Tenant,
        caller: &ClientSpec,
        token: &str,
    ) -> Result<Option<Value>, OAuthError> {
        let Some((row, grant)) = self.own_refresh_token(tenant, caller, token).await? else {
            return Ok(None);
        };
        // A pairwise client of a tenant that stopped offering pairwise subjects cannot
        // use the token any more: inactive, like every other reason.
        let sub = match self.user_subject(tenant, caller, &grant.user_id).await {
            Ok(sub) => sub,
            Err(e) if e.is_server_failure() => return Err(e),
            Err(_) => return Ok(None),
        };
        Ok(Some(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": grant.scope,
            "client_id": grant.client_id,
            "sub": sub,
            "exp": row.expires_at,
            "iss": tenant.issuer,
        })))
    }

    /// RFC 7009 §2.1: revoking a refresh token revokes its grant (every token issued
    /// under it). Tokens of other clients, unknown or dead ones: no effect.
    pub(super) async fn revoke_refresh_token(
        &self,
        tenant: &Tenant,
        caller: &ClientSpec,
        token: &str,
        ip: Option<&str>,
    ) -> Result<(), OAuthError> {
        let Some((_, grant)) = self.own_refresh_token(tenant, caller, token).await? else {
            return Ok(());
        };
        self.revoke_family(tenant, &grant, "grant.revoked", ip)
            .await
    }
}

/// What a user token response carries.
struct UserTokens<'a> {
    sub: &'a str,
    scopes: &'a [String],
    audiences: &'a [String],
    nonce: Option<&'a str>,
    proof: Option<&'a Proof>,
    refresh: RefreshIssue,
}

/// Sliding expiry of a new refresh token, never past the grant's absolute end.
fn refresh_expiry(spec: &ClientSpec, grant: &GrantRow, now: i64) -> i64 {
    (now + refresh_lifetime(spec)).min(grant.expires_at)
}

/// The client's sliding refresh-token lifetime in seconds.
fn refresh_lifetime(spec: &ClientSpec) -> i64 {
    i64::try_from(spec.refresh_token_lifetime_seconds).unwrap_or(86_400)
}

/// The error a refused refresh token (or a grant no longer live) answers with.
fn refusal_error(refusal: RefreshRefusal) -> OAuthError {
    match refusal {
        RefreshRefusal::OtherClient | RefreshRefusal::Rotated | RefreshRefusal::Expired => {
            invalid_grant("the refresh token is invalid, expired or revoked")
        }
        RefreshRefusal::GrantRevoked => invalid_grant("the grant has been revoked"),
        RefreshRefusal::GrantExpired => invalid_grant("the grant has expired"),
        // RFC 6749 §6: narrowing is allowed, widening is not.
        RefreshRefusal::ScopeNotGranted(scope) => OAuthError::new(
            ErrorCode::InvalidScope,
            format!("scope {scope:?} was not granted"),
        ),
        RefreshRefusal::ProofMissing => OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "this refresh token is DPoP-bound: send a DPoP proof",
        ),
        RefreshRefusal::ProofMismatch => {
            invalid_grant("the DPoP proof key differs from the key the refresh token is bound to")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // RFC 7636 Appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn pkce_accepts_the_rfc_example() {
        assert_eq!(
            verify_pkce(Some(CHALLENGE), Some("S256"), Some(VERIFIER)),
            Ok(())
        );
        assert_eq!(verify_pkce(None, None, None), Ok(()));
    }

    #[test]
    fn pkce_rejects_wrong_missing_or_unexpected_verifiers() {
        let wrong = "eBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verify_pkce(Some(CHALLENGE), Some("S256"), Some(wrong)).is_err());
        assert!(verify_pkce(Some(CHALLENGE), Some("S256"), None).is_err());
        assert!(verify_pkce(None, None, Some(VERIFIER)).is_err());
        assert!(verify_pkce(Some(CHALLENGE), Some("plain"), Some(VERIFIER)).is_err());
        assert!(verify_pkce(Some(CHALLENGE), Some("S256"), Some("short")).is_err());
        let bad_chars = format!("{VERIFIER}+");
        assert!(verify_pkce(Some(CHALLENGE), Some("S256"), Some(&bad_chars)).is_err());
    }

    #[test]
    fn at_hash_uses_the_algorithms_hash() {
        // OIDC Core §A.3 example: access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y".
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        assert_eq!(at_hash(Algorithm::Rs256, token), "77QmUPtjPfzWtF2AnpK9RQ");
        assert_eq!(at_hash(Algorithm::Es256, token), "77QmUPtjPfzWtF2AnpK9RQ");
        let sha512 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, token.as_bytes());
        let want = b64url(&sha512.as_ref()[..32]);
        assert_eq!(at_hash(Algorithm::EdDsa, token), want);
        assert_eq!(want.len(), 43);
    }

    #[test]
    fn claims_follow_scopes() {
        let mut profile = Map::new();
        profile.insert("name".into(), "Alice A".into());
        let user = StoredUser {
            tenant_id: "t".into(),
            user_id: "u1".into(),
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: true,
            profile,
            password_hash: None,
            created_at: 1,
            updated_at: 2,
        };
        assert!(user_claims(&user, &["openid".into()]).is_empty());
        let p = user_claims(&user, &["profile".into()]);
        assert_eq!(p["preferred_username"], "alice");
        assert_eq!(p["name"], "Alice A");
        assert!(p.get("email").is_none());
        let e = user_claims(&user, &["email".into()]);
        assert_eq!(e["email"], "alice@example.com");
        assert_eq!(e["email_verified"], true);
        assert!(e.get("name").is_none());
    }

    /// The refresh grant through the whole router, on both backends.
    mod refresh_through_the_token_endpoint {
        use secrecy::ExposeSecret as _;
        use serde_json::json;

        use crate::domain::client::{ClientSpec, GrantType};
        use crate::domain::signing_key::Algorithm;
        use crate::store::Backend;
        use crate::testing::{CapturedLogs, NOW, Reply, TestApp, basic};

        /// Client `web` (ES256 tokens, secret returned) and alice's grant `g1` ("openid
        /// offline_access") with the live refresh token "first".
        async fn web_with_refresh_token(app: &TestApp) -> String {
            let spec = ClientSpec {
                client_id: "web".into(),
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                redirect_uris: vec!["https://app.example/cb".into()],
                id_token_alg: Some(Algorithm::Es256),
                access_token_alg: Some(Algorithm::Es256),
                ..ClientSpec::default()
            };
            let secret = app.client(spec).await.expect("a generated secret");
            let alice = app.user("alice").await;
            let first = crate::crypto::handle_hash("first");
            crate::store::testing::plant_grant(
                &app.state.store,
                "main",
                &alice.user_id,
                NOW,
                NOW + 86_400,
                &first,
            )
            .await;
            secret.expose_secret().to_owned()
        }

        async fn refresh(app: &TestApp, secret: &str, token: &str) -> Reply {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("grant_type", "refresh_token"), ("refresh_token", token)])
                .finish();
            app.post_form("/token", &body, &[("authorization", &basic("web", secret))])
                .await
        }

        /// A refresh grant reads, checks and rotates its token in one statement (one round
        /// trip to PostgreSQL); the second grant is counted, once caches are warm.
        #[tokio::test]
        async fn a_refresh_grant_is_one_statement() {
            for backend in [Backend::Sqlite, Backend::Postgres] {
                let app = TestApp::new(backend).await;
                let secret = web_with_refresh_token(&app).await;
                let warm = refresh(&app, &secret, "first").await;
                assert_eq!(warm.status, 200, "{warm:?}");
                let next = warm.json["refresh_token"].as_str().expect("rotated");
                // The first token of the pod started a flush of the issuance counts in the
                // background (`oauth::issuance`): let it finish outside the count.
                for _ in 0..500 {
                    let counted = app.state.store.token_counts_since("main", 0).await;
                    if !counted.expect("counts").is_empty() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }

                let logs = CapturedLogs::start();
                let r = refresh(&app, &secret, next).await;
                assert_eq!(r.status, 200, "{r:?}");
                assert!(r.json["id_token"].is_string(), "{r:?}");
                logs.assert_postgres_statements(app.backend().as_str(), &["WITH cur AS"]);
            }
        }

        /// The tokens are signed after the rotation: a tenant without a key for the client's
        /// algorithm is refused before it, and the refresh token stays usable.
        #[tokio::test]
        async fn a_refresh_without_a_signing_key_leaves_the_token_unused() {
            for backend in [Backend::Sqlite, Backend::Postgres] {
                let app = TestApp::new(backend).await;
                let secret = web_with_refresh_token(&app).await;
                app.sql("UPDATE signing_keys SET alg = 'ES256-gone' WHERE alg = 'ES256'")
                    .await;
                let r = refresh(&app, &secret, "first").await;
                assert_eq!(
                    (r.status.as_u16(), &r.json["error"]),
                    (500, &json!("server_error"))
                );
                let token = app
                    .state
                    .store
                    .find_refresh_token("main", &crate::crypto::handle_hash("first"))
                    .await
                    .expect("read")
                    .expect("kept");
                assert_eq!(token.rotated_at, None, "{backend:?}");
                let grants = app.state.store.get_grant("main", "g1").await.expect("read");
                assert_eq!(grants.expect("kept").revoked_at, None, "{backend:?}");
            }
        }
    }
}
