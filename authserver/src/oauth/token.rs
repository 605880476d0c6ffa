//! Token endpoint grants (RFC 6749 §4.4 client_credentials), JWT access tokens
//! (RFC 9068), introspection (RFC 7662) and revocation (RFC 7009).

use serde_json::{Map, Value, json};

use super::OAuthService;
use super::client_auth::{Authenticated, claimed_client};
use super::dpop::{self, Expectation, Proof};
use super::error::{ErrorCode, OAuthError, RateHeaders};
use super::form::Form;
use super::rate_limit::{Decision, Hits};
use super::verified::VerifiedTokens;
use crate::crypto::{b64url, jws, random_bytes};
use crate::domain::client::{AuthMethod, GrantType};
use crate::domain::tenant::Tenant;

/// JOSE `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A protocol request as the service sees it.
#[derive(Debug)]
pub struct EndpointRequest<'a> {
    pub method: &'a str,
    /// The endpoint's URL under the issuer (DPoP `htu`, assertion `aud`).
    pub url: String,
    pub authorization: Option<&'a str>,
    pub dpop: Vec<&'a str>,
    pub form: Form,
    /// The client's IP (after trusted-proxy resolution), for limits and audit.
    pub ip: Option<String>,
}

/// A successful token response.
#[derive(Debug)]
pub struct TokenResponse {
    pub body: Value,
    pub dpop_nonce: Option<String>,
    pub rate: Option<RateHeaders>,
}

/// Claims of an access token that passed every check.
#[derive(Debug)]
pub(super) struct ActiveToken {
    pub claims: std::sync::Arc<Value>,
}

/// Who a rate limit counts.
#[derive(Debug, Clone, Copy)]
enum Counted<'a> {
    /// The source IP.
    Ip(&'a str),
    /// An authenticated client (or the `client_id` a browser request names).
    Client(&'a str),
}

fn slow_down(headers: RateHeaders) -> OAuthError {
    let mut e = OAuthError::new(ErrorCode::SlowDown, "rate limit exceeded, retry later");
    e.rate = Some(headers);
    e
}

/// The limits of one client-authenticating endpoint, per source IP and per client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndpointLimits {
    pub endpoint: &'static str,
    pub per_ip: u64,
    pub per_client: u64,
}

/// A request counted against its IP and the client it names
/// ([`OAuthService::count_ip_and_client`]).
#[derive(Debug)]
pub(crate) struct IpAndClient {
    pub ip: Option<Decision>,
    pub client: Option<Decision>,
    client_key: Option<String>,
    hits: Hits,
}

impl IpAndClient {
    /// Takes back the client's count: the request turned out not to be the client's.
    async fn give_back_client(&self, service: &OAuthService) {
        if let Some(key) = &self.client_key {
            service.limiter.give_back(key, &self.hits).await;
        }
    }
}

/// The limiter's key for `who` at `endpoint` of `tenant`.
fn limit_key(endpoint: &str, tenant: &Tenant, who: Counted<'_>) -> String {
    match who {
        Counted::Ip(ip) => format!("{endpoint}:ip:{}:{ip}", tenant.id),
        Counted::Client(id) => format!("{endpoint}:client:{}:{id}", tenant.id),
    }
}

/// The tighter of two limit states, for the response headers.
fn tighter(a: RateHeaders, b: Option<RateHeaders>) -> RateHeaders {
    match b {
        Some(b) if b.remaining < a.remaining => b,
        _ => a,
    }
}

/// What a client_credentials request asks for, after checking it against the client.
#[derive(Debug)]
struct ClientCredentials {
    scopes: Vec<String>,
    audiences: Vec<String>,
}

/// Checks the requested scopes (`invalid_scope`) and audiences (`invalid_target`)
/// against the client's registration; nothing requested means everything allowed.
fn client_credentials_grant(
    spec: &crate::domain::client::ClientSpec,
    form: &Form,
) -> Result<ClientCredentials, OAuthError> {
    let requested = form.list("scope");
    let scopes = if requested.is_empty() {
        spec.scopes.clone()
    } else {
        if let Some(bad) = requested.iter().find(|s| !spec.scopes.contains(s)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("scope {bad:?} is not allowed for this client"),
            ));
        }
        requested
    };
    let audiences = requested_audiences(spec, form)?;
    Ok(ClientCredentials { scopes, audiences })
}

/// The audiences a token request asks for (RFC 8707 `resource` and the widely used
/// `audience`), checked against the client (`invalid_target`); none asked means the
/// client's registered audiences, or the client itself.
pub(super) fn requested_audiences(
    spec: &crate::domain::client::ClientSpec,
    form: &Form,
) -> Result<Vec<String>, OAuthError> {
    let mut audiences: Vec<String> = form.list("audience");
    if let Some(r) = form.get("resource") {
        audiences.push(r.to_owned());
    }
    let audiences = if audiences.is_empty() {
        if spec.audiences.is_empty() {
            vec![spec.client_id.clone()]
        } else {
            spec.audiences.clone()
        }
    } else {
        if let Some(bad) = audiences.iter().find(|a| !spec.audiences.contains(a)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("audience {bad:?} is not allowed for this client"),
            ));
        }
        audiences
    };
    Ok(audiences)
}

/// What goes into an access token beyond the issuer-wide claims.
#[derive(Debug)]
pub(super) struct AccessTokenRequest<'a> {
    /// The client (client_credentials) or the end user's subject.
    pub sub: &'a str,
    pub scopes: &'a [String],
    pub audiences: &'a [String],
    pub proof: Option<&'a Proof>,
    /// RFC 9068 §2.2.1 authentication claims (`auth_time`, `acr`) for user tokens.
    pub extra: Map<String, Value>,
}

/// Who an access token is and when it lives: chosen before it is signed.
#[derive(Debug)]
pub(super) struct AccessTokenId {
    pub jti: String,
    pub issued_at: i64,
    pub lifetime: i64,
}

impl AccessTokenId {
    /// A fresh random jti, issued `now`, for the lifetime `spec` gets in `tenant`.
    pub fn new(tenant: &Tenant, spec: &crate::domain::client::ClientSpec, now: i64) -> Self {
        AccessTokenId {
            jti: b64url(&random_bytes::<16>()),
            issued_at: now,
            lifetime: access_token_lifetime(tenant, spec),
        }
    }

    pub fn expires_at(&self) -> i64 {
        self.issued_at + self.lifetime
    }
}

/// A signed access token.
#[derive(Debug)]
pub(super) struct MintedAccessToken {
    pub token: String,
    pub jti: String,
    pub expires_at: i64,
    pub lifetime: i64,
}

impl MintedAccessToken {
    /// The RFC 6749 §5.1 response fields for this token.
    pub fn response(&self, scopes: &[String], proof: Option<&Proof>) -> Value {
        let mut body = json!({
            "access_token": self.token,
            "token_type": if proof.is_some() { "DPoP" } else { "Bearer" },
            "expires_in": self.lifetime,
        });
        if !scopes.is_empty() {
            body["scope"] = scopes.join(" ").into();
        }
        body
    }
}

/// Access token lifetime: the client's own when it set one (anything other than the
/// registration default), else the tenant's `tokens.accessTokenSeconds`.
pub(super) fn access_token_lifetime(
    tenant: &Tenant,
    spec: &crate::domain::client::ClientSpec,
) -> i64 {
    let seconds = if spec.access_token_lifetime_seconds
        == crate::domain::client::DEFAULT_ACCESS_TOKEN_LIFETIME
    {
        crate::domain::policy::TenantPolicy::of(tenant)
            .tokens
            .access_token_seconds
    } else {
        spec.access_token_lifetime_seconds
    };
    i64::try_from(seconds).unwrap_or(600)
}

/// RFC 9449 §5.2 leaves the code open. `invalid_dpop_proof` (not the generic
/// `invalid_request`) names the fix: DPoP-capable client libraries react to it by
/// attaching a proof, and the request itself is well-formed OAuth.
pub(super) fn require_dpop_if_bound(
    spec: &crate::domain::client::ClientSpec,
    req: &EndpointRequest<'_>,
) -> Result<(), OAuthError> {
    if spec.dpop_bound_access_tokens && req.dpop.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "this client must use DPoP: send a DPoP proof",
        ));
    }
    Ok(())
}

impl OAuthService {
    /// Validates the DPoP proof of a token request. Call it last, because validating a
    /// proof records its jti: a request refused for anything else must leave the proof
    /// unused, so the client can fix the request and resend it (and a refused request
    /// writes nothing).
    pub(super) async fn token_proof(
        &self,
        tenant: &Tenant,
        req: &EndpointRequest<'_>,
    ) -> Result<Option<Proof>, OAuthError> {
        self.dpop
            .validate(
                &tenant.id,
                &req.dpop,
                &Expectation {
                    method: req.method,
                    url: &req.url,
                    access_token: None,
                },
            )
            .await
    }

    /// Authenticates the client of `req` and counts the request against the endpoint's
    /// per-IP and per-client limits, both in one round trip to a shared limiter.
    ///
    /// The IP's limit is applied before authentication, so a refused IP costs no
    /// authentication work and writes no audit row; only authenticated requests use up a
    /// client's budget, or anyone could spend another client's by naming it. So the
    /// client the request names is counted with the IP, and given back when the IP is
    /// refused or authentication fails (a second round trip, on those paths only).
    pub(crate) async fn authenticate_within(
        &self,
        tenant: &Tenant,
        req: &EndpointRequest<'_>,
        limits: EndpointLimits,
    ) -> Result<(Authenticated, Option<RateHeaders>), OAuthError> {
        let claimed = if self.rate_limits.enabled {
            claimed_client(req.authorization, &req.form)
        } else {
            None
        };
        let counted = self
            .count_ip_and_client(
                limits.endpoint,
                tenant,
                req.ip.as_deref(),
                limits.per_ip,
                claimed.as_deref().map(|id| (id, limits.per_client)),
            )
            .await?;
        let authenticate = || {
            self.authenticate(
                tenant,
                &req.url,
                req.authorization,
                &req.form,
                req.ip.as_deref(),
            )
        };
        let Some(counted) = counted else {
            return Ok((authenticate().await?, None));
        };
        let client = match authenticate().await {
            Ok(client) => client,
            Err(e) => {
                counted.give_back_client(self).await;
                return Err(e);
            }
        };
        let id = client.client.spec.client_id.as_str();
        let decision = match counted.client {
            Some(d) if claimed.as_deref() == Some(id) => d,
            // Both follow the same rules, so this is not expected; should they ever
            // differ, the client that authenticated pays, not the one named.
            _ => {
                counted.give_back_client(self).await;
                let key = limit_key(limits.endpoint, tenant, Counted::Client(id));
                self.limiter
                    .hit(&key, limits.per_client, self.clock.now())
                    .await
            }
        };
        if !decision.allowed {
            return Err(slow_down(decision.headers));
        }
        let rate = tighter(decision.headers, counted.ip.map(|d| d.headers));
        Ok((client, Some(rate)))
    }

    /// Counts a request to `endpoint` against its source IP and, when `client` names
    /// one, against that client (`id`, limit): one round trip to a shared limiter.
    /// `Err` (`slow_down`) when the IP is over its limit, and then the client's count is
    /// given back: a refused request is nobody's to pay for. `None` when rate limits are
    /// off. Whether the client is over its limit is the caller's to act on
    /// ([`IpAndClient::client`]).
    pub(crate) async fn count_ip_and_client(
        &self,
        endpoint: &str,
        tenant: &Tenant,
        ip: Option<&str>,
        per_ip: u64,
        client: Option<(&str, u64)>,
    ) -> Result<Option<IpAndClient>, OAuthError> {
        if !self.rate_limits.enabled {
            return Ok(None);
        }
        let ip_key = ip.map(|ip| limit_key(endpoint, tenant, Counted::Ip(ip)));
        let client_key =
            client.map(|(id, limit)| (limit_key(endpoint, tenant, Counted::Client(id)), limit));
        let keys: Vec<(&str, u64)> = ip_key
            .iter()
            .map(|k| (k.as_str(), per_ip))
            .chain(client_key.iter().map(|(k, limit)| (k.as_str(), *limit)))
            .collect();
        let hits = self.limiter.hit_all(&keys, self.clock.now()).await;
        let mut decisions = hits.decisions.iter().copied();
        let counted = IpAndClient {
            ip: ip_key.as_ref().and_then(|_| decisions.next()),
            client: client_key.as_ref().and_then(|_| decisions.next()),
            client_key: client_key.map(|(k, _)| k),
            hits,
        };
        if let Some(ip) = counted.ip
            && !ip.allowed
        {
            counted.give_back_client(self).await;
            return Err(slow_down(ip.headers));
        }
        Ok(Some(counted))
    }

    /// `POST {issuer}/token`.
    pub async fn token(
        &self,
        tenant: &Tenant,
        req: EndpointRequest<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let limits = EndpointLimits {
            endpoint: "token",
            per_ip: self.rate_limits.token_per_ip,
            per_client: self.rate_limits.token_per_client,
        };
        let (client, rate) = self.authenticate_within(tenant, &req, limits).await?;
        let grant = req.form.require("grant_type")?.to_owned();

        let spec = &client.client.spec;
        let (body, proof) = match grant.as_str() {
            "client_credentials" => {
                if !spec.allows_grant(GrantType::ClientCredentials) {
                    return Err(OAuthError::new(
                        ErrorCode::UnauthorizedClient,
                        "the client is not allowed to use client_credentials",
                    ));
                }
                let asked = client_credentials_grant(spec, &req.form)?;
                require_dpop_if_bound(spec, &req)?;
                let proof = self.token_proof(tenant, &req).await?;
                let body = self
                    .client_credentials(tenant, &client.client, asked, proof.as_ref())
                    .await?;
                (body, proof)
            }
            // Boxed: their futures are many times the size of the rest, and would be
            // copied whole, as part of the request's future, on every token request.
            "authorization_code" => {
                Box::pin(self.authorization_code_grant(tenant, &client.client, &req)).await?
            }
            "refresh_token" => {
                Box::pin(self.refresh_token_grant(tenant, &client.client, &req)).await?
            }
            other => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("unsupported grant type {other:?}"),
                ));
            }
        };
        let dpop_nonce = if proof.is_some() && self.dpop.settings().require_nonce {
            Some(self.dpop.nonce(&tenant.id).await?)
        } else {
            None
        };
        self.count_issued(tenant, &grant);
        Ok(TokenResponse {
            body,
            dpop_nonce,
            rate,
        })
    }

    /// Counts a token of `grant` for `GET /stats`; adds this pod's counts to the
    /// database in the background when a flush is due.
    fn count_issued(&self, tenant: &Tenant, grant: &str) {
        let grant = match grant {
            "client_credentials" => "client_credentials",
            "authorization_code" => "authorization_code",
            "refresh_token" => "refresh_token",
            _ => return,
        };
        let now = self.clock.now();
        if self.issued.record(&tenant.id, grant, now) {
            let (issued, store) = (std::sync::Arc::clone(&self.issued), self.store.clone());
            tokio::spawn(async move {
                if let Err(e) = issued.flush(&store, now).await {
                    tracing::warn!(error = %e, "failed to record token counts; kept for the next flush");
                }
            });
        }
    }

    async fn client_credentials(
        &self,
        tenant: &Tenant,
        client: &crate::store::clients::StoredClient,
        grant: ClientCredentials,
        proof: Option<&Proof>,
    ) -> Result<Value, OAuthError> {
        let ClientCredentials { scopes, audiences } = grant;
        let minted = self
            .mint_access_token(
                tenant,
                &client.spec,
                AccessTokenRequest {
                    sub: &client.spec.client_id,
                    scopes: &scopes,
                    audiences: &audiences,
                    proof,
                    extra: Map::new(),
                },
            )
            .await?;
        Ok(minted.response(&scopes, proof))
    }

    /// Signs a JWT access token (RFC 9068) for `spec`: the one minting path of every
    /// grant, so all access tokens look alike to resource servers.
    pub(super) async fn mint_access_token(
        &self,
        tenant: &Tenant,
        spec: &crate::domain::client::ClientSpec,
        req: AccessTokenRequest<'_>,
    ) -> Result<MintedAccessToken, OAuthError> {
        let id = AccessTokenId::new(tenant, spec, self.clock.now());
        self.mint_access_token_as(tenant, spec, req, id).await
    }

    /// [`OAuthService::mint_access_token`] with the jti and times chosen beforehand (a
    /// refresh grant records them before it signs).
    pub(super) async fn mint_access_token_as(
        &self,
        tenant: &Tenant,
        spec: &crate::domain::client::ClientSpec,
        req: AccessTokenRequest<'_>,
        id: AccessTokenId,
    ) -> Result<MintedAccessToken, OAuthError> {
        let mut claims = Map::new();
        claims.insert("iss".into(), tenant.issuer.clone().into());
        claims.insert("sub".into(), req.sub.into());
        claims.insert("client_id".into(), spec.client_id.clone().into());
        claims.insert(
            "aud".into(),
            if req.audiences.len() == 1 {
                Value::String(req.audiences[0].clone())
            } else {
                json!(req.audiences)
            },
        );
        claims.insert("iat".into(), id.issued_at.into());
        claims.insert("exp".into(), id.expires_at().into());
        claims.insert("jti".into(), id.jti.clone().into());
        if !req.scopes.is_empty() {
            claims.insert("scope".into(), req.scopes.join(" ").into());
        }
        if let Some(p) = req.proof {
            claims.insert("cnf".into(), dpop::cnf(p));
        }
        for (k, v) in req.extra {
            claims.insert(k, v);
        }
        let alg = spec
            .access_token_alg
            .unwrap_or(self.tokens.access_token_alg);
        let token = self
            .sign(tenant, alg, ACCESS_TOKEN_TYP, &Value::Object(claims))
            .await?;
        Ok(MintedAccessToken {
            token,
            expires_at: id.expires_at(),
            jti: id.jti,
            lifetime: id.lifetime,
        })
    }

    /// The tenant's active signing key for `alg`; a tenant without one is our failure.
    pub(super) async fn active_signer(
        &self,
        tenant: &Tenant,
        alg: crate::domain::signing_key::Algorithm,
    ) -> Result<std::sync::Arc<crate::crypto::signing::SigningKey>, OAuthError> {
        self.keys.signer(&tenant.id, alg).await?.ok_or_else(|| {
            OAuthError::internal(format!("tenant {} has no active {alg} key", tenant.id))
        })
    }

    /// Signs `claims` with the tenant's active key for `alg`.
    pub(super) async fn sign(
        &self,
        tenant: &Tenant,
        alg: crate::domain::signing_key::Algorithm,
        typ: &str,
        claims: &Value,
    ) -> Result<String, OAuthError> {
        let key = self.active_signer(tenant, alg).await?;
        if alg != crate::domain::signing_key::Algorithm::Rs256 {
            // ES256 and EdDSA sign in tens of microseconds: not worth a thread hop.
            return Ok(key.sign_jwt(typ, claims)?);
        }
        // An RSA signature takes about a millisecond of CPU: on the blocking pool, so the
        // async workers keep polling the other requests meanwhile.
        let (typ, claims) = (typ.to_owned(), claims.clone());
        Ok(tokio::task::spawn_blocking(move || key.sign_jwt(&typ, &claims)).await??)
    }

    /// Verifies an access token of this tenant: signature by one of its published keys,
    /// `typ`, issuer, expiry, revocation, and that its client still exists. A token
    /// that passed all of it before is answered from [`super::verified`].
    pub(super) async fn active_token(
        &self,
        tenant: &Tenant,
        token: &str,
    ) -> Result<Option<ActiveToken>, OAuthError> {
        let key = VerifiedTokens::key(&tenant.id, token);
        if let Some(claims) = self.verified.get(&key, self.clock.now()) {
            return Ok(Some(ActiveToken { claims }));
        }
        let epoch = self.verified.begin();
        let Some(claims) = self.verify_access_token(tenant, token).await? else {
            return Ok(None);
        };
        let claims = std::sync::Arc::new(claims);
        self.verified
            .insert(key, epoch, std::sync::Arc::clone(&claims));
        Ok(Some(ActiveToken { claims }))
    }

    /// [`OAuthService::active_token`] without the cache: the claims of an active token.
    async fn verify_access_token(
        &self,
        tenant: &Tenant,
        token: &str,
    ) -> Result<Option<Value>, OAuthError> {
        let Ok(parsed) = jws::parse(token) else {
            return Ok(None);
        };
        if parsed.header_str("typ") != Some(ACCESS_TOKEN_TYP) {
            return Ok(None);
        }
        let Some(kid) = parsed.header_str("kid") else {
            return Ok(None);
        };
        let Some(jwk) = self.keys.public_jwk(&tenant.id, kid).await? else {
            return Ok(None);
        };
        if parsed
            .verify(&jwk, &crate::domain::signing_key::Algorithm::ALL)
            .is_err()
        {
            return Ok(None);
        }
        let now = self.clock.now();
        if parsed.claim_str("iss") != Some(tenant.issuer.as_str())
            || parsed.claim_i64("exp").is_none_or(|exp| exp <= now)
        {
            return Ok(None);
        }
        let Some(jti) = parsed.claim_str("jti") else {
            return Ok(None);
        };
        if self.store.is_revoked(&tenant.id, jti).await? {
            return Ok(None);
        }
        // A user's token (it has `auth_time`) lives only as long as its grant: revoked,
        // or gone with its user (or purged with the grant).
        if parsed.claims.get("auth_time").is_some()
            && self
                .store
                .live_grant_of_jti(&tenant.id, jti)
                .await?
                .is_none()
        {
            return Ok(None);
        }
        let Some(client_id) = parsed.claim_str("client_id") else {
            return Ok(None);
        };
        let client = self.clients.get(&tenant.id, client_id).await?;
        // A token older than its client's registration was issued to a deleted client
        // that had the same id (its tombstone was purged): it is not the new client's.
        let issued = parsed.claim_i64("iat").unwrap_or(i64::MIN);
        if client.is_none_or(|c| issued < c.created_at) {
            return Ok(None);
        }
        Ok(Some(parsed.claims))
    }

    /// `POST {issuer}/introspect` (RFC 7662). Inactive tokens get `{"active": false}`
    /// and nothing else, whatever the reason.
    pub async fn introspect(
        &self,
        tenant: &Tenant,
        req: EndpointRequest<'_>,
    ) -> Result<(Value, Option<RateHeaders>), OAuthError> {
        let limits = EndpointLimits {
            endpoint: "introspect",
            per_ip: self.rate_limits.introspection_per_ip,
            per_client: self.rate_limits.introspection_per_client,
        };
        let (caller, rate) = self.authenticate_within(tenant, &req, limits).await?;
        // RFC 7662 §2.1 demands authorization against token scanning; a public client's
        // id is no credential (it travels in browser URLs), so it cannot introspect.
        if caller.method == AuthMethod::None {
            return Err(OAuthError::invalid_client(
                "introspection requires client credentials; public clients cannot introspect",
            ));
        }
        let token = req.form.require("token")?;
        let Some(active) = self.active_token(tenant, token).await? else {
            let refresh = self
                .introspect_refresh_token(tenant, &caller.client.spec, token)
                .await?;
            return Ok((refresh.unwrap_or_else(|| json!({ "active": false })), rate));
        };
        let c = &active.claims;
        if !may_introspect(&caller.client.spec, c) {
            return Ok((json!({ "active": false }), rate));
        }
        let mut out = Map::new();
        out.insert("active".into(), true.into());
        for name in [
            "scope",
            "client_id",
            "sub",
            "aud",
            "iss",
            "exp",
            "iat",
            "nbf",
            "jti",
            "cnf",
        ] {
            if let Some(v) = c.get(name) {
                out.insert(name.into(), v.clone());
            }
        }
        let bound = c.get("cnf").is_some_and(|cnf| cnf.get("jkt").is_some());
        out.insert(
            "token_type".into(),
            (if bound { "DPoP" } else { "Bearer" }).into(),
        );
        Ok((Value::Object(out), rate))
    }

    /// `POST {issuer}/revoke` (RFC 7009). Unknown, invalid or foreign tokens succeed
    /// without effect (§2.2): the caller learns nothing.
    pub async fn revoke(
        &self,
        tenant: &Tenant,
        req: EndpointRequest<'_>,
    ) -> Result<Option<RateHeaders>, OAuthError> {
        let limits = EndpointLimits {
            endpoint: "revoke",
            per_ip: self.rate_limits.revocation_per_ip,
            per_client: self.rate_limits.revocation_per_client,
        };
        let (caller, rate) = self.authenticate_within(tenant, &req, limits).await?;
        let token = req.form.require("token")?;
        if let Some(hint) = req.form.get("token_type_hint")
            && !matches!(hint, "access_token" | "refresh_token")
        {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedTokenType,
                format!("token_type_hint {hint:?} is not supported"),
            ));
        }
        let access = if req.form.get("token_type_hint") == Some("refresh_token") {
            None
        } else {
            self.active_token(tenant, token).await?
        };
        let Some(active) = access else {
            // RFC 7009 §2.1: revoking a refresh token revokes its whole grant.
            self.revoke_refresh_token(tenant, &caller.client.spec, token, req.ip.as_deref())
                .await?;
            return Ok(rate);
        };
        let c = &active.claims;
        // Only the client a token was issued to may revoke it.
        if c.get("client_id").and_then(Value::as_str) != Some(caller.client.spec.client_id.as_str())
        {
            return Ok(rate);
        }
        if let (Some(jti), Some(exp)) = (
            c.get("jti").and_then(Value::as_str),
            c.get("exp").and_then(Value::as_i64),
        ) {
            self.store
                .revoke_jti(&tenant.id, jti, exp, self.clock.now())
                .await?;
            tracing::info!(tenant = %tenant.id, client_id = %caller.client.spec.client_id, "access token revoked");
        }
        Ok(rate)
    }
}

/// Whether `caller` may learn about an active access token with `claims`: the client it
/// was issued to, a resource server its `aud` names, or a client registered to
/// introspect every token of the tenant. Anyone else could scan tokens it intercepted
/// (RFC 7662 §4), so they are told `active: false`.
fn may_introspect(caller: &crate::domain::client::ClientSpec, claims: &Value) -> bool {
    let me = caller.client_id.as_str();
    let audience = match claims.get("aud") {
        Some(Value::String(a)) => a == me,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(me)),
        _ => false,
    };
    caller.introspect_any_token
        || audience
        || claims.get("client_id").and_then(Value::as_str) == Some(me)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::client::ClientSpec;

    #[test]
    fn only_the_tokens_client_its_audiences_and_trusted_introspectors_learn_about_it() {
        let claims = json!({ "client_id": "web", "aud": ["api", "billing"] });
        let caller = |id: &str, any: bool| ClientSpec {
            client_id: id.to_owned(),
            introspect_any_token: any,
            ..ClientSpec::default()
        };
        assert!(may_introspect(&caller("web", false), &claims));
        assert!(may_introspect(&caller("api", false), &claims));
        assert!(may_introspect(&caller("billing", false), &claims));
        assert!(!may_introspect(&caller("other", false), &claims));
        assert!(may_introspect(&caller("other", true), &claims));
        let single = json!({ "client_id": "web", "aud": "api" });
        assert!(may_introspect(&caller("api", false), &single));
        assert!(!may_introspect(&caller("ap", false), &single));
        assert!(!may_introspect(&caller("other", false), &json!({})));
    }

    fn tenant(settings: Value) -> Tenant {
        Tenant {
            id: "t".into(),
            issuer: "https://id.example.com".into(),
            display_name: "T".into(),
            settings,
            created_at: 0,
            updated_at: 0,
            parsed: crate::domain::tenant::ParsedPolicy::default(),
        }
    }

    #[test]
    fn access_token_lifetime_is_the_clients_else_the_tenants() {
        let policy = tenant(json!({"tokens": {"accessTokenSeconds": 300}}));
        let default_client = ClientSpec::default();
        assert_eq!(access_token_lifetime(&policy, &default_client), 300);
        assert_eq!(
            access_token_lifetime(&tenant(json!({})), &default_client),
            600
        );
        let own = ClientSpec {
            access_token_lifetime_seconds: 120,
            ..ClientSpec::default()
        };
        assert_eq!(access_token_lifetime(&policy, &own), 120);
    }
}
