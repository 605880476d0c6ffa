//! The front of the authorization code flow: validating authorization requests (from the
//! browser or pushed, RFC 9126) and answering the client's redirect URI. What happens
//! between (sign-in, account choice, consent, the code) is the interaction engine's
//! (`crate::interaction`).

pub mod request;
pub mod response;

use serde_json::{Value, json};

use crate::crypto::{handle_hash, new_handle};
use crate::domain::policy::TenantPolicy;
use crate::domain::tenant::Tenant;
use crate::oauth::dpop::Expectation;
use crate::oauth::form::Form;
use crate::oauth::{
    EndpointLimits, EndpointRequest, ErrorCode, OAuthError, OAuthService, RateHeaders,
};
use crate::store::authorization_requests::NewAuthRequest;

pub use request::{AuthRequest, AuthorizeError, ErrorRedirect, Prompt, ResponseMode};
pub use response::ClientResponse;

/// `request_uri` values this server issues: this prefix and a random handle.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// How long a pushed request may wait for the browser (RFC 9126 §2.2 suggests 5–600 s;
/// the client redirects at once, so short is safe).
pub const PAR_LIFETIME_SECONDS: i64 = 60;

impl OAuthService {
    /// Validates the parameters of `GET/POST {issuer}/authorize`, resolving a pushed
    /// request's `request_uri` (single use). Errors say whether they may be redirected.
    pub async fn authorization_request(
        &self,
        tenant: &Tenant,
        params: &Form,
    ) -> Result<AuthRequest, AuthorizeError> {
        let Some(client_id) = params.get("client_id") else {
            return Err(AuthorizeError::page(
                "The request has no client_id parameter.",
            ));
        };
        let client = self
            .clients
            .get(&tenant.id, client_id)
            .await?
            .ok_or_else(|| AuthorizeError::page("The client_id is not registered."))?;
        let policy = TenantPolicy::of(tenant);

        if let Some(uri) = params.get("request_uri") {
            // RFC 9126 §4: only the pushed parameters count; the rest of the query is
            // ignored (client_id must still match).
            let handle = uri.strip_prefix(REQUEST_URI_PREFIX).ok_or_else(|| {
                AuthorizeError::page("The request_uri was not issued by this server.")
            })?;
            let params = self
                .store
                .take_pushed_request(
                    &tenant.id,
                    &handle_hash(handle),
                    client_id,
                    self.clock.now(),
                )
                .await?
                .ok_or_else(|| {
                    AuthorizeError::page(
                        "The request_uri is unknown, has expired or was already used. \
                         Go back to the application and start again.",
                    )
                })?;
            return serde_json::from_str(&params).map_err(AuthorizeError::server);
        }

        let req = request::validate(params, &client.spec, &policy)?;
        if policy.require_par || client.spec.require_pushed_authorization_requests {
            return Err(AuthorizeError::Redirect(req.error(
                ErrorCode::InvalidRequest,
                "this client must use pushed authorization requests (RFC 9126)",
            )));
        }
        Ok(req)
    }

    /// `POST {issuer}/par` (RFC 9126): the client authenticates as at the token
    /// endpoint and gets a single-use `request_uri`.
    pub async fn push_authorization_request(
        &self,
        tenant: &Tenant,
        req: EndpointRequest<'_>,
    ) -> Result<(Value, Option<RateHeaders>), OAuthError> {
        let limits = EndpointLimits {
            endpoint: "par",
            per_ip: self.rate_limits.par_per_ip,
            per_client: self.rate_limits.par_per_client,
        };
        let (client, rate) = self.authenticate_within(tenant, &req, limits).await?;
        if req.form.get("request_uri").is_some() {
            return Err(OAuthError::invalid_request(
                "request_uri must not be pushed (RFC 9126 §2.1)",
            ));
        }
        if let Some(id) = req.form.get("client_id")
            && id != client.client.spec.client_id
        {
            return Err(OAuthError::invalid_request(
                "client_id does not match the authenticated client",
            ));
        }
        let policy = TenantPolicy::of(tenant);
        let mut auth =
            request::validate(&req.form, &client.client.spec, &policy).map_err(|e| match e {
                AuthorizeError::Page(message) => OAuthError::invalid_request(message),
                AuthorizeError::Redirect(r) => OAuthError::new(r.error, r.description),
                AuthorizeError::Server(e) => OAuthError::server(e),
            })?;
        // RFC 9449 §10.1: a DPoP proof at PAR binds the code to its key.
        let proof = self
            .dpop
            .validate(
                &tenant.id,
                &req.dpop,
                &Expectation {
                    method: req.method,
                    url: &req.url,
                    access_token: None,
                },
            )
            .await?;
        if let Some(p) = proof {
            match &auth.dpop_jkt {
                Some(j) if *j != p.jkt => {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidDpopProof,
                        "dpop_jkt does not match the key of the DPoP proof",
                    ));
                }
                _ => auth.dpop_jkt = Some(p.jkt),
            }
        }

        let handle = new_handle();
        let now = self.clock.now();
        let params = serde_json::to_string(&auth).map_err(OAuthError::server)?;
        self.store
            .insert_auth_request(
                &tenant.id,
                &NewAuthRequest {
                    handle_hash: handle_hash(&handle),
                    client_id: auth.client_id.clone(),
                    params,
                    pushed: true,
                    browser_id_hash: None,
                    created_at: now,
                    expires_at: now + PAR_LIFETIME_SECONDS,
                },
            )
            .await?;
        Ok((
            json!({
                "request_uri": format!("{REQUEST_URI_PREFIX}{handle}"),
                "expires_in": PAR_LIFETIME_SECONDS,
            }),
            rate,
        ))
    }
}
