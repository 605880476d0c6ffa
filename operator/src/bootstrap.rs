//! Bootstrap Secrets: the ENCRYPTION_KEY and the admin API token, created in the cluster
//! exactly once when the platform team did not bring its own.
//!
//! A chart must render the same objects every time (GitOps tools render it without
//! cluster access, so a `lookup` sees nothing and a random value changes on every sync,
//! which replaced the ENCRYPTION_KEY and made every stored private key unreadable). So
//! the chart only names these Secrets and the operator creates the missing ones: with a
//! create call (never a patch or an update), without an owner reference (nothing that
//! GitOps prunes or Kubernetes garbage-collects takes them along), labelled so that
//! `kubectl get secret -l gatehouse.dev/bootstrap=true` finds them, announced in an
//! Event. It never changes or deletes them afterwards: rotating or removing them is a
//! person's decision (docs/operations.md, backup runbook).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, Client};

use crate::context::Events;

/// Label on every bootstrap Secret.
pub const LABEL: &str = "gatehouse.dev/bootstrap";

/// One Secret to create when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    pub key: String,
    pub kind: Kind,
}

/// What a bootstrap Secret holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 32 random bytes as 64 hexadecimal characters (`authserver`'s ENCRYPTION_KEY).
    EncryptionKey,
    /// 48 random URL-safe characters (288 bits).
    AdminToken,
}

impl Kind {
    fn generate(self) -> Result<String, String> {
        use base64::Engine as _;
        let rng = ring::rand::SystemRandom::new();
        let bytes: [u8; 36] = ring::rand::generate(&rng)
            .map_err(|_| "the system random generator failed".to_owned())?
            .expose();
        Ok(match self {
            Kind::EncryptionKey => bytes[..32].iter().fold(String::new(), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            }),
            Kind::AdminToken => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::EncryptionKey => "the ENCRYPTION_KEY",
            Kind::AdminToken => "the admin API token",
        }
    }
}

/// What happened to one wanted Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// It exists (brought by the user, or created earlier): left exactly as it is.
    Existed,
    /// It exists but lacks the key: left alone, and a Warning says what to fix.
    MissingKey,
}

/// Creates each wanted Secret that does not exist in `namespace`; never touches one
/// that does. A create that loses a race (409) counts as existing.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    wanted: &[Wanted],
    events: &Events,
) -> Result<Vec<Outcome>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut outcomes = Vec::with_capacity(wanted.len());
    for w in wanted {
        let reference = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Secret".to_owned()),
            name: Some(w.name.clone()),
            namespace: Some(namespace.to_owned()),
            ..ObjectReference::default()
        };
        if let Some(existing) = api.get_opt(&w.name).await? {
            let has_key = existing
                .data
                .as_ref()
                .is_some_and(|d| d.get(&w.key).is_some_and(|v| !v.0.is_empty()))
                || existing
                    .string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(&w.key));
            if has_key {
                outcomes.push(Outcome::Existed);
            } else {
                tracing::warn!(secret = %w.name, key = %w.key, "bootstrap Secret exists without its key; left alone");
                events
                    .publish(
                        &reference,
                        EventType::Warning,
                        "BootstrapSecretInvalid",
                        format!(
                            "Secret {namespace}/{} has no key {}: add it ({}); the operator never changes an existing Secret",
                            w.name,
                            w.key,
                            w.kind.describe()
                        ),
                    )
                    .await;
                outcomes.push(Outcome::MissingKey);
            }
            continue;
        }
        let value = w
            .kind
            .generate()
            .map_err(|e| kube::Error::Service(Box::new(std::io::Error::other(e))))?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(w.name.clone()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([
                    (LABEL.to_owned(), "true".to_owned()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "gatehouse-operator".to_owned(),
                    ),
                ])),
                annotations: Some(BTreeMap::from([(
                    "gatehouse.dev/bootstrap-note".to_owned(),
                    format!(
                        "Created once by gatehouse-operator; never updated or deleted by it. Holds {}: back it up (docs/operations.md).",
                        w.kind.describe()
                    ),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([(
                w.key.clone(),
                ByteString(value.into_bytes()),
            )])),
            ..Secret::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(secret = %w.name, %namespace, "created bootstrap Secret");
                events
                    .publish(
                        &reference,
                        EventType::Normal,
                        "BootstrapSecretCreated",
                        format!(
                            "created Secret {namespace}/{} with {} (key {}); it is never changed or deleted by the operator: back it up",
                            w.name,
                            w.kind.describe(),
                            w.key
                        ),
                    )
                    .await;
                outcomes.push(Outcome::Created);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => outcomes.push(Outcome::Existed),
            Err(e) => return Err(e),
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::{ApiServerVerifier, Step};

    fn wanted() -> Vec<Wanted> {
        vec![
            Wanted {
                name: "gatehouse-encryption".into(),
                key: "ENCRYPTION_KEY".into(),
                kind: Kind::EncryptionKey,
            },
            Wanted {
                name: "gatehouse-admin-token".into(),
                key: "token".into(),
                kind: Kind::AdminToken,
            },
        ]
    }

    #[test]
    fn generated_values_have_the_shapes_the_consumers_require() {
        let key = Kind::EncryptionKey.generate().unwrap();
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        let token = Kind::AdminToken.generate().unwrap();
        assert_eq!(token.len(), 48);
        assert_ne!(Kind::AdminToken.generate().unwrap(), token, "random");
    }

    #[tokio::test]
    async fn missing_secrets_are_created_once_without_owner_and_existing_ones_are_left_alone() {
        const SECRETS: &str = "/api/v1/namespaces/gatehouse/secrets";
        let (client, server) = ApiServerVerifier::run(vec![
            Step::get(&format!("{SECRETS}/gatehouse-encryption")).not_found(),
            Step::post(SECRETS)
                .check(|body| {
                    assert!(body["metadata"].get("ownerReferences").is_none(), "{body}");
                    assert_eq!(body["metadata"]["labels"][LABEL], "true");
                    let key = body["data"]["ENCRYPTION_KEY"].as_str().unwrap();
                    let raw =
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key)
                            .unwrap();
                    assert_eq!(raw.len(), 64);
                })
                .respond(json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "gatehouse-encryption", "namespace": "gatehouse"}})),
            // Brought by the user: read, never written.
            Step::get(&format!("{SECRETS}/gatehouse-admin-token")).respond(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "gatehouse-admin-token", "namespace": "gatehouse"},
                "data": {"token": "c2VjcmV0"}
            })),
        ]);
        let events = Events::capture();
        let outcomes = ensure(&client, "gatehouse", &wanted(), &events)
            .await
            .unwrap();
        assert_eq!(outcomes, [Outcome::Created, Outcome::Existed]);
        server.done().await;
        let recorded = events.recorded();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0].reason, "BootstrapSecretCreated");
        assert!(!recorded[0].note.contains("c2VjcmV0"));
    }

    #[tokio::test]
    async fn a_lost_race_counts_as_existing_and_a_secret_without_its_key_is_not_repaired() {
        const SECRETS: &str = "/api/v1/namespaces/gatehouse/secrets";
        let (client, server) = ApiServerVerifier::run(vec![
            Step::get(&format!("{SECRETS}/gatehouse-encryption")).not_found(),
            Step::post(SECRETS).fails(409, "AlreadyExists"),
            Step::get(&format!("{SECRETS}/gatehouse-admin-token")).respond(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "gatehouse-admin-token", "namespace": "gatehouse"},
                "data": {"other": "eA=="}
            })),
        ]);
        let events = Events::capture();
        let outcomes = ensure(&client, "gatehouse", &wanted(), &events)
            .await
            .unwrap();
        assert_eq!(outcomes, [Outcome::Existed, Outcome::MissingKey]);
        server.done().await;
        let recorded = events.recorded();
        assert_eq!(recorded.len(), 1);
        assert!(recorded[0].warning);
        assert_eq!(recorded[0].reason, "BootstrapSecretInvalid");
    }
}
