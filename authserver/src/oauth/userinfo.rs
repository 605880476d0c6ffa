//! The UserInfo endpoint (OpenID Connect Core §5.3): the claims of the user an access
//! token was issued for, per its scopes, with the same `sub` as the ID token. Errors are
//! RFC 6750 §3 (Bearer) or RFC 9449 §7.1 (DPoP) challenges.

use serde_json::{Map, Value};

use super::OAuthService;
use super::code_grant::user_claims;
use super::error::ErrorCode;
use super::resource::{ResourceError, ResourceRequest, TokenHolder, VerifiedToken};
use crate::domain::tenant::Tenant;

impl OAuthService {
    /// `GET|POST {issuer}/userinfo`.
    pub async fn userinfo(
        &self,
        tenant: &Tenant,
        req: ResourceRequest<'_>,
    ) -> Result<Value, ResourceError> {
        let VerifiedToken { scheme, claims } = self.verify_resource_token(tenant, &req).await?;
        let claims = &claims;
        let scopes: Vec<String> = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !scopes.iter().any(|s| s == "openid") {
            return Err(ResourceError::new(
                scheme,
                ErrorCode::InsufficientScope,
                "the access token lacks the openid scope",
            ));
        }
        let not_user =
            || ResourceError::invalid_token(scheme, "the access token is invalid or expired");
        let TokenHolder { user, client } = self.token_holder(tenant, scheme, claims).await?;
        let sub = self
            .user_subject(tenant, &client.spec, &user.user_id)
            .await
            .map_err(|e| {
                if e.is_server_failure() {
                    ResourceError::from(e)
                } else {
                    not_user()
                }
            })?;
        let mut out = Map::new();
        out.insert("sub".into(), sub.into());
        for (k, v) in user_claims(&user, &scopes) {
            out.insert(k, v);
        }
        if scopes.iter().any(|s| s == "profile") {
            for (k, v) in self
                .store
                .forwarded_claims(&tenant.id, &user.user_id)
                .await?
            {
                out.entry(k).or_insert(v);
            }
        }
        Ok(Value::Object(out))
    }
}
