//! A minimal in-memory admin API for the Controller-loop test: tenants, clients with
//! secrets (generate once, rotate), no keys.

use std::collections::BTreeMap;
use std::sync::Mutex;

use operator::admin_client::{AdminApi, AdminError, AdminErrorKind, AdminResult, proto};

/// A registered client: its spec and current secret.
type Registered = (proto::ClientSpec, Option<String>);

#[derive(Default)]
pub struct AdminStub {
    pub tenants: Mutex<BTreeMap<String, proto::Tenant>>,
    /// (tenant, client id) → (spec, current secret).
    pub clients: Mutex<BTreeMap<(String, String), Registered>>,
    counter: Mutex<u32>,
}

impl AdminStub {
    fn new_secret(&self) -> String {
        let mut n = self.counter.lock().unwrap();
        *n += 1;
        format!("stub-secret-{n:04}-{}", "z".repeat(40))
    }
}

fn not_found(what: &str) -> AdminError {
    AdminError::new(AdminErrorKind::NotFound, format!("{what} does not exist"))
}

#[tonic::async_trait]
impl AdminApi for AdminStub {
    async fn health(&self) -> AdminResult<proto::HealthResponse> {
        Ok(proto::HealthResponse::default())
    }

    async fn upsert_tenant(
        &self,
        req: proto::UpsertTenantRequest,
    ) -> AdminResult<proto::UpsertTenantResponse> {
        let tenant = proto::Tenant {
            id: req.id.clone(),
            issuer: req.issuer,
            display_name: req.display_name,
            settings_json: req.settings_json,
            created_at: 0,
            updated_at: 0,
        };
        let changed = self
            .tenants
            .lock()
            .unwrap()
            .insert(req.id, tenant.clone())
            .as_ref()
            != Some(&tenant);
        Ok(proto::UpsertTenantResponse {
            tenant: Some(tenant),
            changed,
        })
    }

    async fn delete_tenant(&self, id: &str) -> AdminResult<bool> {
        Ok(self.tenants.lock().unwrap().remove(id).is_some())
    }

    /// Every provider is reachable for the stub.
    async fn check_upstreams(&self, tenant_id: &str) -> AdminResult<Vec<proto::UpstreamCheck>> {
        let tenants = self.tenants.lock().unwrap();
        let tenant = tenants.get(tenant_id).ok_or_else(|| not_found("tenant"))?;
        let settings: serde_json::Value =
            serde_json::from_str(&tenant.settings_json).unwrap_or_default();
        Ok(settings["federation"]["providers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| proto::UpstreamCheck {
                provider_id: p["id"].as_str().unwrap_or_default().to_owned(),
                kind: p["kind"].as_str().unwrap_or("oidc").to_owned(),
                ok: true,
                message: "stub: reachable".to_owned(),
            })
            .collect())
    }

    async fn upsert_client(
        &self,
        req: proto::UpsertClientRequest,
    ) -> AdminResult<proto::UpsertClientResponse> {
        if !self.tenants.lock().unwrap().contains_key(&req.tenant_id) {
            return Err(not_found("tenant"));
        }
        let spec = req.spec.unwrap_or_default();
        let key = (req.tenant_id.clone(), spec.client_id.clone());
        let existing = self.clients.lock().unwrap().get(&key).cloned();
        let mut generated = None;
        let secret = match (req.secret, existing.as_ref().and_then(|(_, s)| s.clone())) {
            (Some(proto::upsert_client_request::Secret::SuppliedSecret(s)), _) => Some(s),
            (_, Some(current)) => Some(current),
            (_, None) => {
                let s = self.new_secret();
                generated = Some(s.clone());
                Some(s)
            }
        };
        let outcome = match &existing {
            None => "created",
            Some((old, old_secret)) if *old != spec || *old_secret != secret => "updated",
            Some(_) => "unchanged",
        };
        self.clients
            .lock()
            .unwrap()
            .insert(key, (spec.clone(), secret));
        Ok(proto::UpsertClientResponse {
            // As an auth server from before the typed `outcome` answers (a rolling
            // upgrade): the operator must still tell a registration from an update.
            outcome_name: outcome.into(),
            outcome: 0,
            generated_secret: generated,
            client: Some(proto::Client {
                tenant_id: req.tenant_id,
                spec: Some(spec),
                valid_secrets: 1,
                created_at: 0,
                updated_at: 0,
                // Older still: no fingerprints, so every resync reads the Secret.
                secret_fingerprint: String::new(),
            }),
        })
    }

    async fn delete_client(&self, tenant_id: &str, client_id: &str) -> AdminResult<bool> {
        Ok(self
            .clients
            .lock()
            .unwrap()
            .remove(&(tenant_id.to_owned(), client_id.to_owned()))
            .is_some())
    }

    async fn rotate_client_secret(
        &self,
        req: proto::RotateClientSecretRequest,
    ) -> AdminResult<proto::RotateClientSecretResponse> {
        let new = req
            .supplied_secret
            .clone()
            .unwrap_or_else(|| self.new_secret());
        let mut clients = self.clients.lock().unwrap();
        let client = clients
            .get_mut(&(req.tenant_id, req.client_id))
            .ok_or_else(|| not_found("client"))?;
        client.1 = Some(new.clone());
        Ok(proto::RotateClientSecretResponse {
            generated_secret: req.supplied_secret.is_none().then_some(new),
            previous_secret_expires_at: 0,
        })
    }

    async fn list_signing_keys(
        &self,
        _req: proto::ListSigningKeysRequest,
    ) -> AdminResult<proto::SigningKeySet> {
        Ok(proto::SigningKeySet::default())
    }

    async fn rotate_signing_keys(
        &self,
        _req: proto::RotateSigningKeysRequest,
    ) -> AdminResult<proto::RotateSigningKeysResponse> {
        Ok(proto::RotateSigningKeysResponse::default())
    }

    async fn import_signing_key(
        &self,
        _req: proto::ImportSigningKeyRequest,
    ) -> AdminResult<proto::ImportSigningKeyResponse> {
        Err(AdminError::new(
            AdminErrorKind::Other,
            "not supported by the stub",
        ))
    }
}
