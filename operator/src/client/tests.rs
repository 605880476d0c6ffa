use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::*;
use crate::fixtures::{
    self, ApiServerVerifier, FakeAdmin, FakeClient, Step, TestObject as _, assert_ready, client,
    list, namespace, secret, secret_data, tenant,
};
use crate::migration::MigrationState;
use crate::settled::Fingerprint;

const TENANT: &str = "/apis/gatehouse.dev/v1alpha1/identitytenants/acme";
const NAMESPACE: &str = "/api/v1/namespaces/shop";
const ALL_CLIENTS: &str = "/apis/gatehouse.dev/v1alpha1/oidcclients";
const CLIENT: &str = "/apis/gatehouse.dev/v1alpha1/namespaces/shop/oidcclients/web";
const STATUS: &str = "/apis/gatehouse.dev/v1alpha1/namespaces/shop/oidcclients/web/status";
const SECRET: &str = "/api/v1/namespaces/shop/secrets/web-oidc";
const ISSUER: &str = "https://id.example.com/t/acme";

fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/shop/secrets/{name}")
}

/// The reads every apply starts with: tenant, namespace, all OidcClients (conflicts);
/// the credentials Secret (and a referenced one) follow.
fn dereference(peers: Vec<Value>) -> Vec<Step> {
    vec![
        Step::get(TENANT).respond_obj(&tenant(json!({}))),
        Step::get(NAMESPACE).respond(namespace("shop", &[("gatehouse.dev/tenant", "acme")])),
        Step::get(ALL_CLIENTS).respond(list("gatehouse.dev/v1alpha1", "OidcClientList", peers)),
    ]
}

fn status_step(obj: &OidcClient, check: impl FnOnce(&Value) + Send + 'static) -> Step {
    Step::apply(STATUS, FIELD_MANAGER)
        .check(check)
        .respond_obj(obj)
}

fn our_secret(client_secret: &str) -> Value {
    secret(
        "shop",
        "web-oidc",
        &[
            ("CLIENT_ID", "shop-web"),
            ("CLIENT_SECRET", client_secret),
            ("ISSUER_URL", ISSUER),
        ],
        Some("uid-client-web"),
    )
}

fn ready_status(obj: &OidcClient, annotation: Option<&str>) -> OidcClientStatus {
    OidcClientStatus {
        observed_generation: Some(1),
        conditions: with_ready(
            &[],
            Status::True,
            conditions::RECONCILED,
            "registered with tenant acme; credentials in Secret web-oidc",
            Some(1),
            Time(fixtures::now()),
        ),
        client_id: Some(obj.client_id()),
        secret_name: Some("web-oidc".into()),
        secret_rotated_at: None,
        last_secret_rotation_annotation: annotation.map(Into::into),
        secret_ref_version: None,
    }
}

async fn run(
    obj: OidcClient,
    admin: Arc<FakeAdmin>,
    steps: Vec<Step>,
) -> (Result<Action>, Arc<Context>) {
    let (kube, verifier) = ApiServerVerifier::run(steps);
    let ctx = fixtures::context(kube, admin, MigrationState::Succeeded);
    let result = reconcile(Arc::new(obj), ctx.clone()).await;
    verifier.done().await;
    (result, ctx)
}

fn reasons(ctx: &Context) -> Vec<String> {
    ctx.events
        .recorded()
        .into_iter()
        .map(|e| e.reason)
        .collect()
}

// --- pure -------------------------------------------------------------------------------

#[test]
fn label_selectors_follow_kubernetes_semantics() {
    let labels = BTreeMap::from([
        ("team".to_owned(), "shop".to_owned()),
        ("env".to_owned(), "prod".to_owned()),
    ]);
    let sel = |v: Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
    assert!(!selector_matches(None, &labels), "unset selects nothing");
    assert!(
        selector_matches(Some(&sel(json!({}))), &labels),
        "{{}} selects all"
    );
    assert!(selector_matches(
        Some(&sel(json!({"matchLabels": {"team": "shop"}}))),
        &labels
    ));
    assert!(!selector_matches(
        Some(&sel(json!({"matchLabels": {"team": "web"}}))),
        &labels
    ));
    let expr = |op: &str, values: &[&str]| {
        sel(json!({"matchExpressions": [LabelSelectorRequirement {
            key: "env".into(), operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }]}))
    };
    assert!(selector_matches(
        Some(&expr("In", &["prod", "staging"])),
        &labels
    ));
    assert!(!selector_matches(Some(&expr("In", &["dev"])), &labels));
    assert!(selector_matches(Some(&expr("NotIn", &["dev"])), &labels));
    assert!(!selector_matches(Some(&expr("NotIn", &["prod"])), &labels));
    assert!(selector_matches(Some(&expr("Exists", &[])), &labels));
    assert!(!selector_matches(Some(&expr("DoesNotExist", &[])), &labels));
    assert!(
        !selector_matches(Some(&expr("Matches", &["prod"])), &labels),
        "unknown operator"
    );
}

#[test]
fn the_established_claimant_keeps_a_client_id() {
    let id = "shared";
    let newcomer = client(json!({"clientId": id})).created_at("2025-01-01T00:00:00Z");
    let mut established_peer = client(json!({"clientId": id}))
        .named("other", "uid-other")
        .in_namespace("team-b")
        .created_at("2025-06-01T00:00:00Z");
    established_peer.status = Some(ready_status(&established_peer, None));
    // Younger, but established: it wins.
    assert_eq!(
        conflicting_owner(&newcomer, [&established_peer]).map(ResourceExt::name_any),
        Some("other".into())
    );
    assert!(conflicting_owner(&established_peer, [&newcomer]).is_none());
    // Neither established: the older one wins, from both sides.
    let older = client(json!({"clientId": id}))
        .named("older", "uid-older")
        .created_at("2024-01-01T00:00:00Z");
    assert!(conflicting_owner(&newcomer, [&older]).is_some());
    assert!(conflicting_owner(&older, [&newcomer]).is_none());
    // Another tenant or another id is no conflict; nor is the object itself.
    let other_tenant = client(json!({"clientId": id, "tenantRef": "globex"})).named("g", "uid-g");
    assert!(conflicting_owner(&newcomer, [&other_tenant, &newcomer]).is_none());
}

#[test]
fn the_registration_mirrors_the_spec() {
    let c = client(json!({
        "grantTypes": ["authorization_code", "refresh_token"],
        "redirectUris": ["https://shop.example.com/cb"],
        "accessTokenLifetimeSeconds": 300,
        "dpopBoundAccessTokens": true,
    }));
    let spec = client_spec(&c);
    assert_eq!(spec.client_id, "shop-web");
    assert_eq!(spec.client_type, "confidential");
    assert_eq!(spec.grant_types, ["authorization_code", "refresh_token"]);
    assert_eq!(spec.token_endpoint_auth_method, "client_secret_basic");
    assert_eq!(spec.access_token_lifetime_seconds, 300);
    assert_eq!(spec.refresh_token_lifetime_seconds, 0, "0 = server default");
    assert_eq!(spec.subject_type, "public");
    assert!(spec.dpop_bound_access_tokens);
    // Unset: the server's defaults (empty algorithm, no sector, switches off).
    assert_eq!(spec.access_token_alg, "", "not in the CRD");
    assert_eq!(spec.id_token_alg, "");
    assert!(!spec.refresh_without_offline_access);
    assert_eq!(spec.sector_identifier_uri, None);
    assert!(!spec.require_pushed_authorization_requests);
    let public = client(
        json!({"clientType": "public", "grantTypes": ["authorization_code"],
                               "redirectUris": ["https://a/cb"]}),
    );
    assert_eq!(client_spec(&public).token_endpoint_auth_method, "none");
}

#[test]
fn the_registration_carries_id_token_alg_refresh_sector_and_par() {
    let c = client(json!({
        "grantTypes": ["authorization_code", "refresh_token"],
        "redirectUris": ["https://shop.example.com/cb", "https://admin.example.com/cb"],
        "subjectType": "pairwise",
        "idTokenSigningAlg": "EdDSA",
        "refreshWithoutOfflineAccess": true,
        "sectorIdentifierUri": "https://shop.example.com/sector.json",
        "requirePushedAuthorizationRequests": true,
    }));
    let spec = client_spec(&c);
    assert_eq!(spec.id_token_alg, "EdDSA");
    assert_eq!(spec.access_token_alg, "", "not in the CRD");
    assert!(spec.refresh_without_offline_access);
    assert_eq!(
        spec.sector_identifier_uri.as_deref(),
        Some("https://shop.example.com/sector.json")
    );
    assert!(spec.require_pushed_authorization_requests);
    assert_eq!(spec.subject_type, "pairwise");
    for alg in ["RS256", "ES256"] {
        let c = client(json!({"idTokenSigningAlg": alg}));
        assert_eq!(client_spec(&c).id_token_alg, alg);
    }
}

/// Security review, item 9: any allowed namespace could register a client that skips
/// consent. `firstParty` is honoured only for namespaces the tenant lists as trusted.
#[test]
fn first_party_clients_need_a_namespace_the_tenant_trusts() {
    let c = client(json!({"firstParty": true}));
    let err = validate(&c, &tenant(json!({}))).unwrap_err();
    assert_eq!(err.category(), "InvalidSpec");
    assert!(
        err.to_string().contains(
            "spec.firstParty: namespace shop is not trusted for first-party clients by IdentityTenant acme"
        ),
        "{err}"
    );
    assert!(validate(&c, &tenant(json!({"firstPartyNamespaces": ["other"]}))).is_err());
    assert!(
        validate(
            &c,
            &tenant(json!({"firstPartyNamespaces": ["other", "shop"]}))
        )
        .is_ok()
    );
    // Not first party: no trust needed.
    assert!(validate(&client(json!({})), &tenant(json!({}))).is_ok());
}

#[test]
fn a_subject_type_the_tenant_does_not_offer_is_invalid() {
    let c = client(json!({"subjectType": "pairwise"}));
    let err = validate(&c, &tenant(json!({}))).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.subjectType: pairwise is not offered"),
        "{err}"
    );
    assert!(validate(&c, &tenant(json!({"subjectTypes": ["public", "pairwise"]}))).is_ok());
}

#[test]
fn short_or_binary_secrets_are_unusable() {
    assert!(secret_value(&[b'x'; 32]).is_ok());
    assert_eq!(
        secret_value(format!("{}\n", "x".repeat(32)).as_bytes()).unwrap(),
        "x".repeat(32)
    );
    assert!(
        secret_value(b"short")
            .unwrap_err()
            .contains("shorter than 32")
    );
    assert!(secret_value(&[0xff; 40]).unwrap_err().contains("UTF-8"));
}

// --- reconcile ----------------------------------------------------------------------------

// --- plan (pure: what one reconcile decides from what it observed) -------------------

fn observed(spec: Value) -> Observed {
    Observed {
        tenant: tenant(spec),
        namespace_labels: BTreeMap::from([("gatehouse.dev/tenant".into(), "acme".into())]),
        peers: vec![],
        credentials: None,
        referenced: None,
    }
}

fn parsed_secret(value: Value) -> Secret {
    serde_json::from_value(value).unwrap()
}

fn with_status(
    mut c: OidcClient,
    annotation: Option<&str>,
    ref_version: Option<&str>,
) -> OidcClient {
    let mut status = ready_status(&c, annotation);
    status.secret_ref_version = ref_version.map(Into::into);
    c.status = Some(status);
    c
}

#[test]
fn a_first_reconcile_generates_a_secret_and_acknowledges_the_annotation() {
    let c = client(json!({})).annotated(ROTATE_SECRET_ANNOTATION, "1");
    let plan = plan(&c, &observed(json!({}))).unwrap();
    assert_eq!(plan.secret, SecretPlan::Generate);
    assert!(
        !plan.rotation_requested,
        "no status: the annotation is acknowledged, not acted on"
    );
    assert_eq!(plan.rotation_annotation.as_deref(), Some("1"));
    assert_eq!(plan.issuer, ISSUER);
    assert_eq!(plan.spec, client_spec(&c));
}

#[test]
fn the_stored_plaintext_is_planned_back_and_a_new_annotation_rotates() {
    let stored = "s".repeat(40);
    let c =
        with_status(client(json!({})), Some("1"), None).annotated(ROTATE_SECRET_ANNOTATION, "2");
    let mut seen = observed(json!({}));
    seen.credentials = Some(parsed_secret(our_secret(&stored)));
    let plan = plan(&c, &seen).unwrap();
    assert_eq!(plan.secret, SecretPlan::Stored(stored.clone()));
    assert!(plan.rotation_requested);
    assert!(!plan.rotate_to_supplied, "nothing supplied");
    assert_eq!(
        secret_step(&plan, proto::UpsertOutcome::Unchanged, None),
        SecretStep::Rotate
    );
    // A freshly created client has nothing to rotate away from.
    assert_eq!(
        secret_step(&plan, proto::UpsertOutcome::Created, None),
        SecretStep::Keep(Some(stored))
    );
}

#[test]
fn a_lost_plaintext_is_restored_and_a_generated_one_is_issued() {
    let c = with_status(client(json!({})), None, None);
    let mut seen = observed(json!({}));
    seen.credentials = Some(parsed_secret(our_secret("short")));
    let plan = plan(&c, &seen).unwrap();
    assert_eq!(
        plan.secret,
        SecretPlan::Generate,
        "an unusable value counts as lost"
    );
    assert_eq!(
        secret_step(&plan, proto::UpsertOutcome::Unchanged, None),
        SecretStep::RestoreLost
    );
    assert_eq!(
        secret_step(&plan, proto::UpsertOutcome::Created, Some("new".into())),
        SecretStep::Issued("new".into())
    );
}

#[test]
fn a_changed_referenced_secret_rotates_to_its_value_but_a_first_sight_does_not() {
    let value = "r".repeat(40);
    let referenced = parsed_secret(secret(
        "shop",
        "web-credentials",
        &[("CLIENT_SECRET", &value)],
        None,
    ));
    let c = client(json!({"secretRef": {"name": "web-credentials"}}));
    let mut seen = observed(json!({}));
    seen.referenced = Some(Some(referenced));
    // The fixture's resourceVersion is "7".
    let first = plan(&c, &seen).unwrap();
    assert_eq!(first.secret, SecretPlan::Referenced(value.clone()));
    assert_eq!(first.referenced_version.as_deref(), Some("7"));
    assert!(!first.rotate_to_supplied, "no status: applied as it is");
    let same = plan(&with_status(c.clone(), None, Some("7")), &seen).unwrap();
    assert!(!same.rotate_to_supplied);
    let changed = plan(&with_status(c, None, Some("6")), &seen).unwrap();
    assert!(changed.rotate_to_supplied);
    assert_eq!(
        secret_step(&changed, proto::UpsertOutcome::Unchanged, None),
        SecretStep::Keep(Some(value)),
        "the supplied value is written as it is"
    );
}

#[test]
fn a_plan_refuses_what_the_reconcile_must_not_do() {
    let c = client(json!({}));
    let mut forbidden = observed(json!({}));
    forbidden.namespace_labels.clear();
    assert_eq!(
        plan(&c, &forbidden).unwrap_err().category(),
        "NamespaceNotAllowed"
    );

    let mut foreign = observed(json!({}));
    foreign.credentials = Some(parsed_secret(secret(
        "shop",
        "web-oidc",
        &[("x", "y")],
        None,
    )));
    let err = plan(&c, &foreign).unwrap_err();
    assert_eq!(err.category(), "Conflict");
    assert!(
        err.to_string().contains("not owned by this OidcClient"),
        "{err}"
    );

    let mut taken = observed(json!({}));
    taken.peers = vec![shared_id_owner_in_billing()];
    let err = plan(&client(json!({"clientId": "shared"})), &taken).unwrap_err();
    assert_eq!(err.category(), "Conflict", "{err}");

    let referencing = client(json!({"secretRef": {"name": "web-credentials"}}));
    let mut missing = observed(json!({}));
    missing.referenced = Some(None);
    assert_eq!(
        plan(&referencing, &missing).unwrap_err().category(),
        "SecretNotFound"
    );

    let public = client(
        json!({"clientType": "public", "grantTypes": ["authorization_code"],
        "redirectUris": ["https://shop.example.com/cb"], "secretRef": {"name": "web-credentials"}}),
    );
    assert_eq!(
        plan(&public, &missing).map(|p| p.secret).ok(),
        Some(SecretPlan::NoSecret),
        "a client without a shared secret never waits for one"
    );
}

#[test]
fn an_older_auth_server_outcome_name_is_understood() {
    let legacy = |name: &str| proto::UpsertClientResponse {
        outcome_name: name.into(),
        ..Default::default()
    };
    assert_eq!(
        crate::admin_client::upsert_outcome(&legacy("created")),
        proto::UpsertOutcome::Created
    );
    assert_eq!(
        crate::admin_client::upsert_outcome(&legacy("updated")),
        proto::UpsertOutcome::Updated
    );
    assert_eq!(
        crate::admin_client::upsert_outcome(&legacy("")),
        proto::UpsertOutcome::Unchanged
    );
    let typed = proto::UpsertClientResponse {
        outcome: proto::UpsertOutcome::Created.into(),
        outcome_name: "unchanged".into(),
        ..Default::default()
    };
    assert_eq!(
        crate::admin_client::upsert_outcome(&typed),
        proto::UpsertOutcome::Created
    );
}

#[tokio::test]
async fn client_without_finalizer_gets_one() {
    let c = client(json!({}));
    let finalized = c.clone().finalized();
    let admin = FakeAdmin::with_tenant();
    let (result, _) = run(
        c,
        admin.clone(),
        vec![Step::json_patch(CLIENT).respond_obj(&finalized)],
    )
    .await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn a_new_confidential_client_is_registered_and_gets_a_generated_secret() {
    let c = client(json!({})).finalized();
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(Step::apply(SECRET, FIELD_MANAGER).check(|body| {
        let data = secret_data(body);
        assert_eq!(data["CLIENT_ID"], "shop-web");
        assert_eq!(data["ISSUER_URL"], ISSUER);
        assert!(data["CLIENT_SECRET"].starts_with("generated-secret-"));
        assert_eq!(body["type"], "Opaque");
        assert_eq!(
            body["metadata"]["ownerReferences"][0]["uid"],
            "uid-client-web"
        );
        assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "gatehouse-operator"
        );
    }));
    steps.push(status_step(&c, |body| {
        assert_ready(body, "True", "Reconciled");
        assert_eq!(body["status"]["clientId"], "shop-web");
        assert_eq!(body["status"]["secretName"], "web-oidc");
        assert_eq!(body["status"]["observedGeneration"], 1);
    }));
    let (result, ctx) = run(c, admin.clone(), steps).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_mins(5)));
    assert_eq!(admin.calls(), ["UpsertClient(acme/shop-web, generate)"]);
    let registered = &admin.state().clients[&("acme".to_owned(), "shop-web".to_owned())];
    assert_eq!(registered.spec.grant_types, ["client_credentials"]);
    assert_eq!(reasons(&ctx), ["ClientRegistered", "SecretCreated"]);
}

#[tokio::test]
async fn the_stored_secret_is_supplied_back_and_admin_api_drift_is_undone() {
    let mut c = client(json!({})).finalized();
    c.status = Some(ready_status(&c, None));
    let stored = format!("stored-secret-{}", "s".repeat(32));
    let admin = FakeAdmin::with_tenant();
    // Someone changed the client through the admin API: other scopes, another secret.
    let mut drifted = client_spec(&c);
    drifted.scopes = vec!["admin".into()];
    admin.state().clients.insert(
        ("acme".into(), "shop-web".into()),
        FakeClient {
            spec: drifted,
            secrets: vec!["changed-by-hand".into()],
        },
    );
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).respond(our_secret(&stored)));
    // Secret and status already match: no writes.
    let (result, ctx) = run(c.clone(), admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(admin.calls(), ["UpsertClient(acme/shop-web, supplied)"]);
    let registered = admin.state().clients[&("acme".to_owned(), "shop-web".to_owned())].clone();
    assert_eq!(registered.spec, client_spec(&c), "spec restored");
    assert_eq!(
        registered.secrets,
        [stored],
        "the Secret's value is the secret again"
    );
    assert_eq!(reasons(&ctx), ["ClientUpdated"]);
}

#[tokio::test]
async fn an_edited_secret_is_restored() {
    let mut c = client(json!({})).finalized();
    c.status = Some(ready_status(&c, None));
    let stored = format!("stored-secret-{}", "s".repeat(32));
    let admin = FakeAdmin::with_tenant();
    let mut edited = our_secret(&stored);
    edited["data"]["ISSUER_URL"] = json!("aHR0cHM6Ly9ldmlsLmV4YW1wbGU="); // https://evil.example
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).respond(edited));
    let expected = stored.clone();
    steps.push(Step::apply(SECRET, FIELD_MANAGER).check(move |body| {
        let data = secret_data(body);
        assert_eq!(data["ISSUER_URL"], ISSUER);
        assert_eq!(data["CLIENT_SECRET"], expected);
    }));
    let (result, _) = run(c, admin, steps).await;
    result.unwrap();
}

#[tokio::test]
async fn a_deleted_secret_with_lost_plaintext_is_restored_by_rotation() {
    let mut c = client(json!({"secretRotationOverlapSeconds": 600})).finalized();
    c.status = Some(ready_status(&c, None));
    let admin = FakeAdmin::with_tenant();
    admin.state().clients.insert(
        ("acme".into(), "shop-web".into()),
        FakeClient {
            spec: client_spec(&c),
            secrets: vec!["lost-secret".into()],
        },
    );
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(Step::apply(SECRET, FIELD_MANAGER).check(|body| {
        assert!(secret_data(body)["CLIENT_SECRET"].starts_with("generated-secret-"));
    }));
    steps.push(status_step(&c, |body| {
        assert_eq!(body["status"]["secretRotatedAt"], "2026-01-01T00:00:00Z");
    }));
    let (result, ctx) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(
        admin.calls(),
        [
            "UpsertClient(acme/shop-web, generate)",
            "RotateClientSecret(acme/shop-web, overlap=600)"
        ]
    );
    let secrets = admin.state().clients[&("acme".to_owned(), "shop-web".to_owned())]
        .secrets
        .clone();
    assert_eq!(
        secrets.len(),
        2,
        "the lost secret stays valid for the overlap"
    );
    let events = ctx.events.recorded();
    assert_eq!(events[0].reason, "SecretRestored");
    assert!(events[0].warning);
}

/// Security review, defect 1: a deleted client's id is retired in the auth server, so
/// an OidcClient claiming it (here or in another namespace) is refused with its own
/// reason, registers nothing, and waits for a spec change.
#[tokio::test]
async fn a_retired_client_id_is_ready_false_client_id_retired() {
    let c = client(json!({})).finalized();
    let admin = FakeAdmin::with_tenant();
    admin
        .state()
        .retired
        .insert(("acme".to_owned(), "shop-web".to_owned()));
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(status_step(&c, |body| {
        let m = assert_ready(body, "False", "ClientIdRetired");
        assert!(m.contains("spec.clientId") && m.contains("retired"), "{m}");
        assert!(body["status"].get("clientId").is_none());
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    let err = result.unwrap_err();
    assert_eq!(err.category(), "ClientIdRetired");
    assert!(err.awaits_change(), "retried only when the spec changes");
    assert!(admin.state().clients.is_empty(), "nothing registered");
}

#[tokio::test]
async fn a_public_client_gets_a_secret_without_client_secret() {
    let c = client(
        json!({"clientType": "public", "grantTypes": ["authorization_code"],
                          "redirectUris": ["https://shop.example.com/cb"]}),
    )
    .finalized();
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(Step::apply(SECRET, FIELD_MANAGER).check(|body| {
        let data = secret_data(body);
        assert_eq!(data.keys().collect::<Vec<_>>(), ["CLIENT_ID", "ISSUER_URL"]);
    }));
    steps.push(status_step(&c, |body| {
        assert_ready(body, "True", "Reconciled");
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(admin.calls(), ["UpsertClient(acme/shop-web, none)"]);
}

#[tokio::test]
async fn a_forbidden_namespace_registers_nothing() {
    let c = client(json!({})).finalized();
    let admin = FakeAdmin::with_tenant();
    let steps = vec![
        Step::get(TENANT).respond_obj(&tenant(json!({}))),
        Step::get(NAMESPACE).respond(namespace("shop", &[("gatehouse.dev/tenant", "globex")])),
        Step::get(ALL_CLIENTS).respond(list("gatehouse.dev/v1alpha1", "OidcClientList", vec![])),
        Step::get(SECRET).not_found(),
        status_step(&c, |body| {
            let m = assert_ready(body, "False", "NamespaceNotAllowed");
            assert!(
                m.contains("does not allow clients from namespace shop"),
                "{m}"
            );
            assert!(body["status"].get("clientId").is_none());
        }),
    ];
    let (result, ctx) = run(c, admin.clone(), steps).await;
    let err = result.unwrap_err();
    assert_eq!(err.category(), "NamespaceNotAllowed");
    assert!(admin.calls().is_empty(), "nothing registered");
    assert!(ctx.events.recorded()[0].warning);
}

#[tokio::test]
async fn a_tenant_without_allowed_namespaces_allows_none() {
    let c = client(json!({})).finalized();
    let admin = FakeAdmin::with_tenant();
    let steps = vec![
        Step::get(TENANT).respond_obj(&tenant(json!({"allowedNamespaces": null}))),
        Step::get(NAMESPACE).respond(namespace("shop", &[("gatehouse.dev/tenant", "acme")])),
        Step::get(ALL_CLIENTS).respond(list("gatehouse.dev/v1alpha1", "OidcClientList", vec![])),
        Step::get(SECRET).not_found(),
        status_step(&c, |body| {
            assert_ready(body, "False", "NamespaceNotAllowed");
        }),
    ];
    let (result, _) = run(c, admin.clone(), steps).await;
    assert!(result.is_err());
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn an_unknown_tenant_ref_waits_with_tenant_not_found() {
    let c = client(json!({"tenantRef": "nope"})).finalized();
    let admin = FakeAdmin::with_tenant();
    let steps = vec![
        Step::get("/apis/gatehouse.dev/v1alpha1/identitytenants/nope").not_found(),
        status_step(&c, |body| {
            let m = assert_ready(body, "False", "TenantNotFound");
            assert!(
                m.contains("spec.tenantRef: IdentityTenant nope does not exist"),
                "{m}"
            );
        }),
    ];
    let (result, ctx) = run(c, admin.clone(), steps).await;
    let err = result.unwrap_err();
    assert!(
        !err.awaits_change(),
        "retried: the tenant may be created later"
    );
    assert!(admin.calls().is_empty());
    let guard = DeserializeGuard(Ok(client(json!({}))));
    assert_eq!(
        controller::error_policy(&guard, &err, &ctx),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn a_tenant_not_yet_registered_with_the_auth_server_is_tenant_not_found() {
    let c = client(json!({})).finalized();
    let admin = FakeAdmin::new(); // the auth server has no tenant acme
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(status_step(&c, |body| {
        let m = assert_ready(body, "False", "TenantNotFound");
        assert!(m.contains("not registered with the auth server yet"), "{m}");
    }));
    let (result, _) = run(c, admin, steps).await;
    assert!(result.is_err());
}

#[tokio::test]
async fn a_missing_secret_ref_waits_and_never_invents_a_secret() {
    let c = client(json!({"secretRef": {"name": "web-credentials"}})).finalized();
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(Step::get(&secret_path("web-credentials")).not_found());
    steps.push(status_step(&c, |body| {
        let m = assert_ready(body, "False", "SecretNotFound");
        assert!(
            m.contains("Secret shop/web-credentials does not exist"),
            "{m}"
        );
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    assert_eq!(result.unwrap_err().category(), "SecretNotFound");
    assert!(
        admin.calls().is_empty(),
        "nothing registered, no secret generated"
    );
}

#[tokio::test]
async fn a_secret_ref_without_the_key_is_secret_invalid() {
    let c =
        client(json!({"secretRef": {"name": "web-credentials", "key": "password"}})).finalized();
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(Step::get(&secret_path("web-credentials")).respond(secret(
        "shop",
        "web-credentials",
        &[("CLIENT_SECRET", "x")],
        None,
    )));
    steps.push(status_step(&c, |body| {
        let m = assert_ready(body, "False", "SecretInvalid");
        assert!(m.contains("has no key password"), "{m}");
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    assert_eq!(result.unwrap_err().category(), "SecretInvalid");
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn a_short_secret_ref_value_is_secret_invalid() {
    let c = client(json!({"secretRef": {"name": "web-credentials"}})).finalized();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(Step::get(&secret_path("web-credentials")).respond(secret(
        "shop",
        "web-credentials",
        &[("CLIENT_SECRET", "too-short")],
        None,
    )));
    steps.push(status_step(&c, |body| {
        let m = assert_ready(body, "False", "SecretInvalid");
        assert!(m.contains("shorter than 32 characters"), "{m}");
    }));
    let (result, _) = run(c, FakeAdmin::with_tenant(), steps).await;
    assert!(result.is_err());
}

#[tokio::test]
async fn a_secret_ref_value_is_supplied_and_copied_into_the_credentials_secret() {
    let c = client(json!({"secretRef": {"name": "web-credentials"}})).finalized();
    let value = "b".repeat(40);
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(Step::get(&secret_path("web-credentials")).respond(secret(
        "shop",
        "web-credentials",
        &[("CLIENT_SECRET", &value)],
        None,
    )));
    let expected = value.clone();
    steps.push(Step::apply(SECRET, FIELD_MANAGER).check(move |body| {
        assert_eq!(secret_data(body)["CLIENT_SECRET"], expected);
    }));
    steps.push(status_step(&c, |body| {
        assert_ready(body, "True", "Reconciled");
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(admin.calls(), ["UpsertClient(acme/shop-web, supplied)"]);
    assert_eq!(
        admin.state().clients[&("acme".to_owned(), "shop-web".to_owned())].secrets,
        [value]
    );
}

/// A client with `secretRef` whose value `old` was applied from version 7 of the
/// referenced Secret, which now holds `new` at `version`.
async fn reconcile_secret_ref(version: &str, old: &str, new: &str) -> Arc<FakeAdmin> {
    let mut c = client(
        json!({"secretRef": {"name": "web-credentials"}, "secretRotationOverlapSeconds": 3600}),
    )
    .finalized();
    let mut status = ready_status(&c, None);
    status.secret_ref_version = Some("7".into());
    c.status = Some(status);
    let admin = FakeAdmin::with_tenant();
    admin.state().clients.insert(
        ("acme".into(), "shop-web".into()),
        FakeClient {
            spec: client_spec(&c),
            secrets: vec![old.to_owned()],
        },
    );
    let mut referenced = secret("shop", "web-credentials", &[("CLIENT_SECRET", new)], None);
    referenced["metadata"]["resourceVersion"] = json!(version);
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).respond(our_secret(old)));
    steps.push(Step::get(&secret_path("web-credentials")).respond(referenced));
    if old != new {
        let expected = new.to_owned();
        steps.push(Step::apply(SECRET, FIELD_MANAGER).check(move |body| {
            assert_eq!(secret_data(body)["CLIENT_SECRET"], expected);
        }));
    }
    if version != "7" {
        let version = version.to_owned();
        steps.push(status_step(&c, move |body| {
            assert_eq!(body["status"]["secretRefVersion"], version.as_str());
            assert_eq!(body["status"]["secretRotatedAt"], "2026-01-01T00:00:00Z");
        }));
    }
    let (result, _) = run(c, admin.clone(), steps).await;
    result.unwrap();
    admin
}

#[tokio::test]
async fn a_changed_secret_ref_becomes_current_and_the_previous_value_stays_valid() {
    let (old, new) = ("o".repeat(40), "n".repeat(40));
    let admin = reconcile_secret_ref("8", &old, &new).await;
    assert_eq!(
        admin.calls(),
        [
            "RotateClientSecret(acme/shop-web, overlap=3600, supplied)",
            "UpsertClient(acme/shop-web, supplied)"
        ]
    );
    assert_eq!(
        admin.state().clients[&("acme".to_owned(), "shop-web".to_owned())].secrets,
        [new, old],
        "the previous value stays valid for the overlap"
    );
}

#[tokio::test]
async fn an_unchanged_secret_ref_rotates_nothing() {
    let old = "o".repeat(40);
    let admin = reconcile_secret_ref("7", &old, &old).await;
    assert_eq!(admin.calls(), ["UpsertClient(acme/shop-web, supplied)"]);
}

#[test]
fn a_secret_maps_to_the_clients_that_reference_it_in_its_namespace() {
    let guard = |c: OidcClient| Arc::new(DeserializeGuard(Ok(c)));
    let referencing = client(json!({"secretRef": {"name": "web-credentials"}}));
    let elsewhere =
        client(json!({"secretRef": {"name": "web-credentials"}})).named("api", "uid-api");
    let mut elsewhere = elsewhere;
    elsewhere.metadata.namespace = Some("other".into());
    let generated = client(json!({})).named("admin", "uid-admin");
    let clients = [guard(referencing), guard(elsewhere), guard(generated)];
    let meta = |ns: &str, name: &str| {
        let mut m = PartialObjectMeta::<Secret>::default();
        m.metadata.name = Some(name.into());
        m.metadata.namespace = Some(ns.into());
        m
    };
    let hits = clients_referencing(&clients, &meta("shop", "web-credentials"));
    assert_eq!(
        hits.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["web"]
    );
    assert!(clients_referencing(&clients, &meta("shop", "web-oidc")).is_empty());
}

#[tokio::test]
async fn a_second_claimant_of_a_client_id_gets_conflict() {
    let c = client(json!({"clientId": "shared"})).finalized();
    let mut owner = client(json!({"clientId": "shared"}))
        .named("billing", "uid-billing")
        .created_at("2026-06-01T00:00:00Z");
    owner.status = Some(ready_status(&owner, None));
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![serde_json::to_value(&owner).unwrap()]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(status_step(&c, |body| {
        let m = assert_ready(body, "False", "Conflict");
        assert!(
            m.contains("client id shared in tenant acme belongs to OidcClient shop/billing"),
            "{m}"
        );
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    assert_eq!(result.unwrap_err().category(), "Conflict");
    assert!(
        admin.calls().is_empty(),
        "the established owner's registration is untouched"
    );
}

#[tokio::test]
async fn a_foreign_secret_with_our_name_is_a_conflict() {
    let c = client(json!({})).finalized();
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).respond(secret("shop", "web-oidc", &[("x", "y")], None)));
    steps.push(status_step(&c, |body| {
        let m = assert_ready(body, "False", "Conflict");
        assert!(m.contains("is not owned by this OidcClient"), "{m}");
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    assert!(result.is_err());
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn the_rotate_secret_annotation_rotates_with_the_overlap() {
    let mut c = client(json!({"secretRotationOverlapSeconds": 3600}))
        .finalized()
        .annotated(ROTATE_SECRET_ANNOTATION, "2026-01-01");
    c.status = Some(ready_status(&c, Some("2025-06-01")));
    let stored = format!("stored-secret-{}", "s".repeat(32));
    let admin = FakeAdmin::with_tenant();
    admin.state().clients.insert(
        ("acme".into(), "shop-web".into()),
        FakeClient {
            spec: client_spec(&c),
            secrets: vec![stored.clone()],
        },
    );
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).respond(our_secret(&stored)));
    let old = stored.clone();
    steps.push(Step::apply(SECRET, FIELD_MANAGER).check(move |body| {
        let new = &secret_data(body)["CLIENT_SECRET"];
        assert_ne!(new, &old);
        assert!(new.starts_with("generated-secret-"));
    }));
    steps.push(status_step(&c, |body| {
        assert_eq!(body["status"]["lastSecretRotationAnnotation"], "2026-01-01");
        assert_eq!(body["status"]["secretRotatedAt"], "2026-01-01T00:00:00Z");
    }));
    let (result, ctx) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(
        admin.calls(),
        [
            "UpsertClient(acme/shop-web, supplied)",
            "RotateClientSecret(acme/shop-web, overlap=3600)"
        ]
    );
    let secrets = admin.state().clients[&("acme".to_owned(), "shop-web".to_owned())]
        .secrets
        .clone();
    assert_eq!(secrets[1], stored, "the previous secret stays valid");
    assert_eq!(reasons(&ctx), ["SecretRotated"]);
}

#[tokio::test]
async fn a_restored_client_without_status_does_not_rotate_its_secret() {
    // A Velero restore: the object with its rotate annotation, no status, the Secret and
    // the registration still there.
    let c = client(json!({}))
        .finalized()
        .annotated(ROTATE_SECRET_ANNOTATION, "2026-11-01");
    let stored = format!("stored-secret-{}", "s".repeat(32));
    let admin = FakeAdmin::with_tenant();
    admin.state().clients.insert(
        ("acme".into(), "shop-web".into()),
        FakeClient {
            spec: client_spec(&c),
            secrets: vec![stored.clone()],
        },
    );
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).respond(our_secret(&stored)));
    steps.push(status_step(&c, |body| {
        assert_eq!(body["status"]["lastSecretRotationAnnotation"], "2026-11-01");
        assert!(
            body["status"]
                .get("secretRotatedAt")
                .is_none_or(Value::is_null)
        );
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(admin.calls(), ["UpsertClient(acme/shop-web, supplied)"]);
}

#[tokio::test]
async fn an_already_handled_rotation_annotation_does_nothing() {
    let mut c = client(json!({}))
        .finalized()
        .annotated(ROTATE_SECRET_ANNOTATION, "v1");
    c.status = Some(ready_status(&c, Some("v1")));
    let stored = format!("stored-secret-{}", "s".repeat(32));
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).respond(our_secret(&stored)));
    let (result, _) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(admin.calls(), ["UpsertClient(acme/shop-web, supplied)"]);
}

#[tokio::test]
async fn an_unreachable_auth_server_is_reported_and_retried() {
    let c = client(json!({})).finalized();
    let admin = FakeAdmin::with_tenant();
    admin.fail_with(
        AdminErrorKind::Unavailable,
        "tcp connect error: Connection refused",
    );
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(status_step(&c, |body| {
        assert_ready(body, "False", "AuthServerUnavailable");
    }));
    let (result, ctx) = run(c, admin, steps).await;
    let err = result.unwrap_err();
    let guard = DeserializeGuard(Ok(client(json!({}))));
    assert_eq!(
        controller::error_policy(&guard, &err, &ctx),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        controller::error_policy(&guard, &err, &ctx),
        Action::requeue(Duration::from_secs(10))
    );
}

#[tokio::test]
async fn a_rejected_spec_is_invalid_spec_naming_the_crd_field() {
    let c = client(json!({})).finalized();
    let admin = FakeAdmin::with_tenant();
    admin.fail_with(
        AdminErrorKind::InvalidArgument,
        "spec.redirect_uris[0]: must be an absolute https URL",
    );
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(status_step(&c, |body| {
        let m = assert_ready(body, "False", "InvalidSpec");
        assert!(
            m.contains("spec.redirectUris[0]: must be an absolute https URL"),
            "{m}"
        );
    }));
    let (result, ctx) = run(c, admin, steps).await;
    let err = result.unwrap_err();
    let guard = DeserializeGuard(Ok(client(json!({}))));
    assert_eq!(
        controller::error_policy(&guard, &err, &ctx),
        Action::await_change()
    );
}

#[tokio::test]
async fn a_rejected_id_token_alg_names_the_crd_field() {
    let c = client(json!({"idTokenSigningAlg": "EdDSA"})).finalized();
    let admin = FakeAdmin::with_tenant();
    admin.fail_with(
        AdminErrorKind::InvalidArgument,
        "spec.id_token_alg: EdDSA is not one of the tenant's signing algorithms",
    );
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).not_found());
    steps.push(status_step(&c, |body| {
        let m = assert_ready(body, "False", "InvalidSpec");
        assert!(
            m.contains("spec.idTokenSigningAlg: EdDSA is not one of the tenant's signing"),
            "{m}"
        );
    }));
    let (result, _ctx) = run(c, admin, steps).await;
    assert!(matches!(result, Err(Error::InvalidSpec(_))), "{result:?}");
}

#[tokio::test]
async fn migration_pending_registers_nothing() {
    let c = client(json!({})).finalized();
    let admin = FakeAdmin::with_tenant();
    let (kube, verifier) = ApiServerVerifier::run(vec![status_step(&c, |body| {
        assert_ready(body, "False", "MigrationPending");
    })]);
    let ctx = fixtures::context(kube, admin.clone(), MigrationState::unchecked("img"));
    assert!(reconcile(Arc::new(c), ctx).await.is_err());
    verifier.done().await;
    assert!(admin.calls().is_empty());
}

fn finalizer_removal(obj: &OidcClient) -> Step {
    Step::json_patch(CLIENT)
        .check(|body| {
            assert_eq!(
                body[1],
                json!({"op": "remove", "path": "/metadata/finalizers/0"})
            );
        })
        .respond_obj(obj)
}

#[tokio::test]
async fn deleting_with_delete_removes_the_registration() {
    let mut c = client(json!({})).finalized().deleting();
    c.status = Some(ready_status(&c, None));
    let admin = FakeAdmin::with_tenant();
    admin.state().clients.insert(
        ("acme".into(), "shop-web".into()),
        FakeClient {
            spec: client_spec(&c),
            secrets: vec![],
        },
    );
    let steps = vec![
        Step::get(ALL_CLIENTS).respond(list("gatehouse.dev/v1alpha1", "OidcClientList", vec![])),
        finalizer_removal(&c),
    ];
    let (result, ctx) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(admin.calls(), ["DeleteClient(acme/shop-web)"]);
    assert!(admin.state().clients.is_empty());
    assert_eq!(reasons(&ctx), ["ClientDeleted"]);
}

#[tokio::test]
async fn deleting_a_never_registered_client_is_fine() {
    let c = client(json!({})).finalized().deleting();
    let admin = FakeAdmin::new();
    let steps = vec![
        Step::get(ALL_CLIENTS).respond(list("gatehouse.dev/v1alpha1", "OidcClientList", vec![])),
        finalizer_removal(&c),
    ];
    let (result, _) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(admin.calls(), ["DeleteClient(acme/shop-web)"]);
}

#[tokio::test]
async fn deleting_with_retain_keeps_the_registration() {
    let c = client(json!({"deletionPolicy": "Retain"}))
        .finalized()
        .deleting();
    let admin = FakeAdmin::with_tenant();
    let (result, ctx) = run(c.clone(), admin.clone(), vec![finalizer_removal(&c)]).await;
    result.unwrap();
    assert!(admin.calls().is_empty());
    assert_eq!(reasons(&ctx), ["ClientRetained"]);
}

#[tokio::test]
async fn deleting_the_loser_of_a_conflict_leaves_the_owners_registration() {
    let c = client(json!({"clientId": "shared"})).finalized().deleting();
    let mut owner = client(json!({"clientId": "shared"})).named("billing", "uid-billing");
    owner.status = Some(ready_status(&owner, None));
    let admin = FakeAdmin::with_tenant();
    let steps = vec![
        Step::get(ALL_CLIENTS).respond(list(
            "gatehouse.dev/v1alpha1",
            "OidcClientList",
            vec![serde_json::to_value(&owner).unwrap()],
        )),
        finalizer_removal(&c),
    ];
    let (result, _) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert!(admin.calls().is_empty());
}

fn no_peers() -> Step {
    Step::get(ALL_CLIENTS).respond(list("gatehouse.dev/v1alpha1", "OidcClientList", vec![]))
}

/// A client being deleted whose cleanup failed `count` times, the last at `failed_at`.
fn with_cleanup_failures(c: OidcClient, count: u32, failed_at: &str) -> OidcClient {
    c.annotated(controller::CLEANUP_FAILURES_ANNOTATION, &count.to_string())
        .annotated(controller::CLEANUP_FAILED_AT_ANNOTATION, failed_at)
}

#[tokio::test]
async fn skip_cleanup_releases_the_finalizer_without_calling_the_auth_server() {
    let c = client(json!({}))
        .finalized()
        .deleting()
        .annotated(crds::SKIP_CLEANUP_ANNOTATION, "true");
    let admin = FakeAdmin::with_tenant();
    admin.state().clients.insert(
        ("acme".into(), "shop-web".into()),
        FakeClient {
            spec: client_spec(&c),
            secrets: vec![],
        },
    );
    // Only the finalizer removal: no peer LIST, no status write.
    let (result, ctx) = run(c.clone(), admin.clone(), vec![finalizer_removal(&c)]).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(admin.calls().is_empty(), "{:?}", admin.calls());
    assert_eq!(admin.state().clients.len(), 1, "the registration stays");
    let events = ctx.events.recorded();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "CleanupSkipped");
    assert!(!events[0].warning);
    assert!(
        events[0]
            .note
            .contains("authserver clients delete --id shop-web --tenant acme"),
        "{}",
        events[0].note
    );
}

#[tokio::test]
async fn skip_cleanup_does_not_wait_for_the_backoff_of_earlier_failures() {
    let c = with_cleanup_failures(
        client(json!({})).finalized().deleting(),
        3,
        "2026-01-01T00:00:00Z",
    )
    .annotated(crds::SKIP_CLEANUP_ANNOTATION, "true");
    let admin = FakeAdmin::with_tenant();
    let (result, ctx) = run(c.clone(), admin.clone(), vec![finalizer_removal(&c)]).await;
    result.unwrap();
    assert!(admin.calls().is_empty());
    assert_eq!(reasons(&ctx), ["CleanupSkipped"]);
}

#[tokio::test]
async fn an_unreachable_auth_server_counts_the_attempt_on_the_object_and_keeps_the_finalizer() {
    // A first failure, and a fourth after an operator restart: the count comes from the
    // object, not from memory.
    for (before, attempt) in [(None, 1), (Some(3), 4)] {
        let mut c = client(json!({})).finalized().deleting();
        if let Some(n) = before {
            // Failed long enough ago that the backoff has passed.
            c = with_cleanup_failures(c, n, "2025-12-31T23:00:00Z");
        }
        let admin = FakeAdmin::with_tenant();
        admin.fail_with(
            AdminErrorKind::Unavailable,
            "tcp connect error: Connection refused",
        );
        let steps = vec![
            no_peers(),
            Step::apply(CLIENT, FIELD_MANAGER)
                .check(move |body| {
                    assert_eq!(body["kind"], "OidcClient");
                    assert_eq!(body["metadata"]["name"], "web");
                    assert_eq!(
                        body["metadata"]["annotations"],
                        json!({
                            "gatehouse.dev/cleanup-failures": attempt.to_string(),
                            "gatehouse.dev/cleanup-failed-at": "2026-01-01T00:00:00Z",
                        })
                    );
                    assert!(body.get("spec").is_none(), "only the annotations: {body}");
                })
                .respond_obj(&c),
            status_step(&c, move |body| {
                let m = assert_ready(body, "False", "Deleting");
                assert!(m.contains("Connection refused"), "{m}");
                assert!(m.contains(&format!("attempt {attempt} of 8")), "{m}");
            }),
        ];
        let (result, ctx) = run(c, admin.clone(), steps).await;
        let err = result.unwrap_err();
        assert_eq!(err.category(), "AuthServerUnavailable");
        assert!(!err.awaits_change());
        assert_eq!(admin.calls(), ["DeleteClient(acme/shop-web)"]);
        assert_eq!(reasons(&ctx), ["AuthServerUnavailable"]);
    }
}

#[tokio::test]
async fn a_recorded_failure_waits_out_its_backoff_before_calling_the_auth_server_again() {
    // Third failure at 23:59:50: the backoff after three failures is 20 s.
    let c = with_cleanup_failures(
        client(json!({})).finalized().deleting(),
        3,
        "2025-12-31T23:59:50Z",
    );
    let admin = FakeAdmin::with_tenant();
    admin.fail_with(AdminErrorKind::Unavailable, "unreachable");
    let (result, ctx) = run(c, admin.clone(), vec![]).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(10)));
    assert!(admin.calls().is_empty());
    assert!(ctx.events.recorded().is_empty());
}

#[tokio::test]
async fn at_the_limit_the_finalizer_is_released_with_a_warning_naming_the_leftover() {
    let c = with_cleanup_failures(
        client(json!({})).finalized().deleting(),
        controller::CLEANUP_ATTEMPTS - 1,
        "2025-12-31T23:00:00Z",
    );
    let admin = FakeAdmin::with_tenant();
    admin.fail_with(AdminErrorKind::Unavailable, "unreachable");
    // No annotation or status write: the object goes.
    let steps = vec![no_peers(), finalizer_removal(&c)];
    let (result, ctx) = run(c, admin.clone(), steps).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(admin.calls(), ["DeleteClient(acme/shop-web)"]);
    let events = ctx.events.recorded();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "CleanupAbandoned");
    assert!(events[0].warning);
    for fragment in [
        "unreachable on 8 cleanup attempts",
        "client shop-web stays registered with tenant acme",
        "authserver clients delete --id shop-web --tenant acme",
    ] {
        assert!(events[0].note.contains(fragment), "{}", events[0].note);
    }
}

#[tokio::test]
async fn an_error_other_than_unreachable_never_abandons_and_restarts_the_count() {
    for kind in [
        AdminErrorKind::Unauthenticated,
        AdminErrorKind::Other,
        AdminErrorKind::InvalidArgument,
    ] {
        let c = with_cleanup_failures(
            client(json!({})).finalized().deleting(),
            controller::CLEANUP_ATTEMPTS - 1,
            "2025-12-31T23:00:00Z",
        );
        let admin = FakeAdmin::with_tenant();
        admin.fail_with(kind, "internal error");
        let steps = vec![
            no_peers(),
            // The record goes: an answering auth server ends the outage.
            Step::apply(CLIENT, FIELD_MANAGER)
                .check(|body| {
                    assert_eq!(body["metadata"]["name"], "web");
                    assert!(body["metadata"].get("annotations").is_none(), "{body}");
                })
                .respond_obj(&c),
            status_step(&c, |body| {
                let m = assert_ready(body, "False", "Deleting");
                assert!(!m.contains("attempt"), "{m}");
            }),
        ];
        let (result, ctx) = run(c, admin.clone(), steps).await;
        assert!(result.is_err(), "{kind:?}: the finalizer stays");
        assert_eq!(admin.calls(), ["DeleteClient(acme/shop-web)"]);
        assert!(
            !reasons(&ctx).iter().any(|r| r == "CleanupAbandoned"),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn an_error_other_than_unreachable_without_a_count_writes_no_annotation() {
    let c = client(json!({})).finalized().deleting();
    let admin = FakeAdmin::with_tenant();
    admin.fail_with(AdminErrorKind::Unauthenticated, "invalid token");
    let steps = vec![
        no_peers(),
        status_step(&c, |body| {
            assert_ready(body, "False", "Deleting");
        }),
    ];
    let (result, _) = run(c, admin, steps).await;
    assert_eq!(result.unwrap_err().category(), "AuthServerUnavailable");
}

#[tokio::test]
async fn a_malformed_object_is_reported_and_awaits_a_change() {
    // A spec the types reject (grantTypes must be a list), as a watch would deliver it.
    let raw = json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OidcClient",
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-client-web", "generation": 3},
        "spec": {"tenantRef": "acme", "grantTypes": "client_credentials"},
    });
    let guard: DeserializeGuard<OidcClient> = serde_json::from_value(raw.clone()).unwrap();
    assert!(guard.0.is_err());
    // Not the controller's own field manager: an apply by it with only these fields
    // would remove the status fields it owns (issuer, clientId, …) on a real API server.
    let manager = crate::controller::invalid_object_manager(FIELD_MANAGER);
    assert_ne!(manager, FIELD_MANAGER);
    let (kube, verifier) = ApiServerVerifier::run(vec![
        Step::apply(STATUS, &manager)
            .check(|body| {
                let m = assert_ready(body, "False", "InvalidSpec");
                assert!(m.contains("does not match the schema"), "{m}");
                assert_eq!(body["status"]["observedGeneration"], 3);
            })
            .respond(raw),
    ]);
    let admin = FakeAdmin::with_tenant();
    let ctx = fixtures::context(kube, admin.clone(), MigrationState::Succeeded);
    let err = reconcile_guarded(Arc::new(guard.clone()), ctx.clone())
        .await
        .unwrap_err();
    verifier.done().await;
    assert!(err.awaits_change());
    assert_eq!(
        controller::policy(Arc::new(guard), &err, ctx.clone()),
        Action::await_change()
    );
    assert!(admin.calls().is_empty());
    assert!(ctx.metrics.render().contains(
        r#"gatehouse_operator_reconcile_errors_total{controller="oidcclient",reason="InvalidSpec"} 1"#
    ));
}

#[tokio::test]
async fn a_failed_rotation_keeps_the_secret_and_retries_the_annotation() {
    let mut c = client(json!({}))
        .finalized()
        .annotated(ROTATE_SECRET_ANNOTATION, "v2");
    c.status = Some(ready_status(&c, Some("v1")));
    let stored = format!("stored-secret-{}", "s".repeat(32));
    let admin = FakeAdmin::with_tenant();
    admin.state().clients.insert(
        ("acme".into(), "shop-web".into()),
        FakeClient {
            spec: client_spec(&c),
            secrets: vec![stored.clone()],
        },
    );
    admin.fail_method(
        "RotateClientSecret",
        AdminErrorKind::Unavailable,
        "connection reset",
    );
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).respond(our_secret(&stored)));
    // No Secret write; the status keeps the old annotation so the next attempt rotates.
    steps.push(status_step(&c, |body| {
        assert_ready(body, "False", "AuthServerUnavailable");
        assert_eq!(body["status"]["lastSecretRotationAnnotation"], "v1");
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    assert!(result.is_err());
    assert_eq!(
        admin.state().clients[&("acme".to_owned(), "shop-web".to_owned())].secrets,
        [stored]
    );
}

#[tokio::test]
async fn a_secret_that_lost_its_owner_reference_is_adopted_and_repaired() {
    let mut c = client(json!({})).finalized();
    c.status = Some(ready_status(&c, None));
    let stored = format!("stored-secret-{}", "s".repeat(32));
    let mut orphaned = our_secret(&stored);
    orphaned["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(SECRET).respond(orphaned));
    steps.push(Step::apply(SECRET, FIELD_MANAGER).check(move |body| {
        assert_eq!(
            body["metadata"]["ownerReferences"][0]["uid"],
            "uid-client-web"
        );
        assert_eq!(secret_data(body)["CLIENT_SECRET"], stored);
    }));
    let (result, _) = run(c, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(admin.calls(), ["UpsertClient(acme/shop-web, supplied)"]);
}

/// An established client at generation 2 (Ready=True observed at generation 1).
fn edited_client() -> OidcClient {
    let mut c = client(json!({})).finalized();
    c.status = Some(ready_status(&c, None));
    c.metadata.generation = Some(2);
    c
}

#[tokio::test]
async fn a_secret_write_the_api_server_rejects_is_ready_false_apply_failed_until_a_change() {
    let webhook =
        "admission webhook \"policy.example.com\" denied the request: Secrets need the label team";
    let invalid = "Secret \"web-oidc\" is invalid: metadata.labels: Invalid value: \"x\"";
    for (code, reason, message) in [
        (403, "Forbidden", webhook),
        (422, "Invalid", invalid),
        (400, "BadRequest", "the object is bad"),
    ] {
        let c = edited_client();
        let admin = FakeAdmin::with_tenant();
        let mut steps = dereference(vec![]);
        steps.push(Step::get(SECRET).not_found());
        steps.push(Step::apply(SECRET, FIELD_MANAGER).fails_with(code, reason, message));
        steps.push(status_step(&c, move |body| {
            let m = assert_ready(body, "False", "ApplyFailed");
            assert_eq!(m, format!("Secret web-oidc: {message}"));
            assert_eq!(body["status"]["observedGeneration"], 2);
            assert_eq!(body["status"]["conditions"][0]["observedGeneration"], 2);
            // The rest of the status stays.
            assert_eq!(body["status"]["clientId"], "shop-web");
        }));
        let (result, ctx) = run(c, admin, steps).await;
        let err = result.unwrap_err();
        assert_eq!(err.category(), "ApplyFailed");
        assert!(!err.awaits_change());
        assert_eq!(
            reasons(&ctx).last().map(String::as_str),
            Some("ApplyFailed")
        );
        let guard = DeserializeGuard(Ok(edited_client()));
        // No hot retry and no growing backoff: the next try is at the resync interval
        // (or at once when the object changes).
        for _ in 0..3 {
            assert_eq!(
                controller::error_policy(&guard, &err, &ctx),
                Action::requeue(Duration::from_mins(5)),
                "{code}"
            );
        }
    }
}

#[tokio::test]
async fn a_secret_write_that_may_succeed_on_retry_backs_off_without_apply_failed() {
    for (code, reason) in [
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
        (504, "Timeout"),
        (409, "Conflict"),
        (429, "TooManyRequests"),
    ] {
        let c = edited_client();
        let admin = FakeAdmin::with_tenant();
        let mut steps = dereference(vec![]);
        steps.push(Step::get(SECRET).not_found());
        // No status write: an API server failing the Secret would likely fail it too.
        steps.push(Step::apply(SECRET, FIELD_MANAGER).fails(code, reason));
        let (result, ctx) = run(c, admin, steps).await;
        let err = result.unwrap_err();
        assert_eq!(err.category(), "ApplySecretFailed", "{code}");
        let guard = DeserializeGuard(Ok(edited_client()));
        assert_eq!(
            controller::error_policy(&guard, &err, &ctx),
            Action::requeue(Duration::from_secs(5)),
            "{code}"
        );
        assert_eq!(
            controller::error_policy(&guard, &err, &ctx),
            Action::requeue(Duration::from_secs(10)),
            "{code}"
        );
    }
}

#[test]
fn the_client_label_fits_63_characters_and_stays_unique() {
    assert_eq!(client_label("web"), "web");
    let name = |tail: &str| format!("{}{tail}", "a.b-".repeat(47));
    let (one, two) = (client_label(&name("x")), client_label(&name("y")));
    assert!(one.len() <= 63 && two.len() <= 63, "{one} {two}");
    assert_ne!(one, two);
    let valid = |v: &str| {
        v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    assert!(valid(&one), "{one}");
    assert_eq!(client_label(&"c".repeat(63)), "c".repeat(63));
}

// --- namespace-scoped mode and instances --------------------------------------------

/// A watch cache holding `objects`, as after its first full LIST.
fn cache(
    objects: Vec<OidcClient>,
) -> kube::runtime::reflector::Store<DeserializeGuard<OidcClient>> {
    let (reader, mut writer) = kube::runtime::reflector::store();
    for obj in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(DeserializeGuard(Ok(obj))));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn shared_id_owner_in_billing() -> OidcClient {
    let mut owner = client(json!({"clientId": "shared"}))
        .in_namespace("billing")
        .named("web", "uid-billing-web")
        .created_at("2026-06-01T00:00:00Z");
    owner.status = Some(ready_status(&owner, None));
    owner
}

fn conflict_with_billing(body: &Value) {
    let m = assert_ready(body, "False", "Conflict");
    assert!(
        m.contains("client id shared in tenant acme belongs to OidcClient billing/web"),
        "{m}"
    );
}

#[tokio::test]
async fn a_client_id_owned_in_another_watched_namespace_is_a_conflict() {
    let c = client(json!({"clientId": "shared"})).finalized();
    let owner = shared_id_owner_in_billing();
    let admin = FakeAdmin::with_tenant();
    // Peers come from the caches of both namespaces' controllers: no LIST at all.
    let steps = vec![
        Step::get(TENANT).respond_obj(&tenant(json!({}))),
        Step::get(NAMESPACE).respond(namespace("shop", &[("gatehouse.dev/tenant", "acme")])),
        Step::get(SECRET).not_found(),
        status_step(&c, conflict_with_billing),
    ];
    let (kube, verifier) = ApiServerVerifier::run(steps);
    let scope = crate::scope::Scope::parse("shop,billing", "").unwrap();
    let ctx = fixtures::context_in(kube, admin.clone(), MigrationState::Succeeded, scope);
    let _ = ctx
        .client_store
        // The owner in the second cache: the union, not just the first, is searched.
        .set(vec![cache(vec![c.clone()]), cache(vec![owner])]);
    let result = reconcile(Arc::new(c), ctx).await;
    verifier.done().await;
    assert_eq!(result.unwrap_err().category(), "Conflict");
    assert!(
        admin.calls().is_empty(),
        "the owner's registration is untouched"
    );
}

/// A namespace whose watch never completes its first LIST (its Role is missing, the API
/// server refuses it) must not stall the conflict checks of every namespace: after
/// `CACHE_WAIT` that namespace is listed directly, the others still come from their caches.
#[tokio::test(start_paused = true)]
async fn a_cache_that_never_syncs_is_replaced_by_a_list_after_the_wait() {
    let c = client(json!({"clientId": "shared"})).finalized();
    let owner = shared_id_owner_in_billing();
    let admin = FakeAdmin::with_tenant();
    let steps = vec![
        Step::get(TENANT).respond_obj(&tenant(json!({}))),
        Step::get(NAMESPACE).respond(namespace("shop", &[("gatehouse.dev/tenant", "acme")])),
        Step::get("/apis/gatehouse.dev/v1alpha1/namespaces/billing/oidcclients").respond(list(
            "gatehouse.dev/v1alpha1",
            "OidcClientList",
            vec![serde_json::to_value(&owner).unwrap()],
        )),
        Step::get(SECRET).not_found(),
        status_step(&c, conflict_with_billing),
    ];
    let (kube, verifier) = ApiServerVerifier::run(steps);
    let scope = crate::scope::Scope::parse("shop,billing", "").unwrap();
    let ctx = fixtures::context_in(kube, admin.clone(), MigrationState::Succeeded, scope);
    // billing's store never receives InitDone.
    let (stalled, _writer) = kube::runtime::reflector::store();
    let _ = ctx.client_store.set(vec![stalled, cache(vec![c.clone()])]);
    let started = tokio::time::Instant::now();
    let result = reconcile(Arc::new(c), ctx).await;
    verifier.done().await;
    assert_eq!(result.unwrap_err().category(), "Conflict");
    assert!(started.elapsed() >= controller::CACHE_WAIT);
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn without_caches_peers_are_listed_per_watched_namespace_never_cluster_wide() {
    let c = client(json!({"clientId": "shared"})).finalized();
    let owner = shared_id_owner_in_billing();
    let admin = FakeAdmin::with_tenant();
    let selector = "labelSelector=%21gatehouse.dev%2Finstance";
    let steps = vec![
        Step::get(TENANT).respond_obj(&tenant(json!({}))),
        Step::get(NAMESPACE).respond(namespace("shop", &[("gatehouse.dev/tenant", "acme")])),
        Step::get("/apis/gatehouse.dev/v1alpha1/namespaces/billing/oidcclients")
            .query(selector)
            .respond(list(
                "gatehouse.dev/v1alpha1",
                "OidcClientList",
                vec![serde_json::to_value(&owner).unwrap()],
            )),
        Step::get("/apis/gatehouse.dev/v1alpha1/namespaces/shop/oidcclients")
            .query(selector)
            .respond(list("gatehouse.dev/v1alpha1", "OidcClientList", vec![])),
        Step::get(SECRET).not_found(),
        status_step(&c, conflict_with_billing),
    ];
    let (kube, verifier) = ApiServerVerifier::run(steps);
    let scope = crate::scope::Scope::parse("shop,billing", "").unwrap();
    let ctx = fixtures::context_in(kube, admin.clone(), MigrationState::Succeeded, scope);
    let result = reconcile(Arc::new(c), ctx).await;
    verifier.done().await;
    assert_eq!(result.unwrap_err().category(), "Conflict");
}

#[tokio::test]
async fn an_object_of_another_instance_is_not_reconciled() {
    let c = client(json!({}))
        .finalized()
        .labelled(crate::scope::INSTANCE_LABEL, "green");
    let admin = FakeAdmin::with_tenant();
    // No request at all: the verifier fails on any.
    let (kube, verifier) = ApiServerVerifier::run(vec![]);
    let ctx = fixtures::context(kube, admin.clone(), MigrationState::Succeeded);
    let action = reconcile_guarded(Arc::new(DeserializeGuard(Ok(c))), ctx)
        .await
        .unwrap();
    verifier.done().await;
    assert_eq!(action, Action::await_change());
    assert!(admin.calls().is_empty());
}

#[test]
fn a_named_instance_labels_and_selects_its_credentials_secrets() {
    let c = client(json!({})).finalized();
    let blue = crate::scope::Scope::parse("", "blue").unwrap();
    let secret = build_secret(&c, ISSUER, None, &blue).unwrap();
    assert_eq!(
        secret
            .labels()
            .get(crate::scope::INSTANCE_LABEL)
            .map(String::as_str),
        Some("blue")
    );
    assert!(secret_selector(&blue).ends_with(",gatehouse.dev/instance=blue"));
    let default = crate::scope::Scope::default();
    let secret = build_secret(&c, ISSUER, None, &default).unwrap();
    assert!(!secret.labels().contains_key(crate::scope::INSTANCE_LABEL));
    assert!(secret_selector(&default).ends_with(",!gatehouse.dev/instance"));
}

/// A cache holding `objects`, after its first full LIST.
fn filled<K>(objects: Vec<K>) -> kube::runtime::reflector::Store<K>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let (reader, mut writer) = kube::runtime::reflector::store();
    for obj in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(obj));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn secret_meta(name: &str, version: &str) -> PartialObjectMeta<Secret> {
    let mut m = PartialObjectMeta::<Secret>::default();
    m.metadata.name = Some(name.into());
    m.metadata.namespace = Some("shop".into());
    m.metadata.resource_version = Some(version.into());
    m
}

/// The controllers' caches as `run` sets them, with the credentials Secret at `version`.
fn with_caches(ctx: &Context, c: &OidcClient, version: &str) {
    let ns: Namespace =
        serde_json::from_value(namespace("shop", &[("gatehouse.dev/tenant", "acme")])).unwrap();
    let _ = ctx
        .tenant_store
        .set(filled(vec![DeserializeGuard(Ok(tenant(json!({}))))]));
    let _ = ctx.namespace_store.set(vec![filled(vec![ns])]);
    let _ = ctx.client_store.set(vec![cache(vec![c.clone()])]);
    let _ = ctx
        .secret_meta_store
        .set(vec![filled(vec![secret_meta("web-oidc", version)])]);
}

/// A watch event that changes nothing the reconcile reads (the status it just wrote, the
/// Secret it just applied, coming back) costs no request and no upsert until the resync
/// is due; a new version of the credentials Secret runs the reconcile in full again.
#[tokio::test]
async fn a_trigger_that_changes_nothing_skips_the_reconcile_until_the_resync() {
    let mut c = client(json!({})).finalized();
    c.status = Some(ready_status(&c, None));
    let stored = format!("stored-secret-{}", "s".repeat(32));
    let admin = FakeAdmin::with_tenant();
    // Tenant, namespace and peers from the caches: only the Secret (its value) is read.
    let mut secret = our_secret(&stored);
    secret["metadata"]["resourceVersion"] = json!("5");
    let (kube, verifier) = ApiServerVerifier::run(vec![Step::get(SECRET).respond(secret)]);
    let ctx = fixtures::context(kube, admin.clone(), MigrationState::Succeeded);
    with_caches(&ctx, &c, "5");
    let first = reconcile(Arc::new(c.clone()), ctx.clone()).await;
    assert_eq!(first.unwrap(), Action::requeue(Duration::from_mins(5)));
    // The mock API server answers nothing more: any request now fails the reconcile.
    verifier.done().await;

    let again = reconcile(Arc::new(c.clone()), ctx.clone()).await;
    assert_eq!(
        again.unwrap(),
        Action::requeue(Duration::from_mins(5)),
        "skipped: the fixed clock says the resync is 5 min away"
    );
    assert_eq!(
        admin.calls(),
        ["UpsertClient(acme/shop-web, supplied)"],
        "one upsert for both triggers"
    );

    // Someone edited the Secret: its new version is a change.
    let ctx = {
        let (kube, _verifier) = ApiServerVerifier::run(vec![]);
        let fresh = fixtures::context(kube, admin.clone(), MigrationState::Succeeded);
        with_caches(&fresh, &c, "6");
        let uid = c.uid().unwrap();
        let seen = Inputs::cached(&c, &ctx).unwrap();
        fresh
            .settled
            .record(&uid, Fingerprint::of(&seen), fixtures::now());
        fresh
    };
    let changed = reconcile(Arc::new(c), ctx).await;
    assert_eq!(
        changed.unwrap_err().category(),
        "ReadFailed",
        "runs in full: it reads the Secret (which the finished mock refuses)"
    );
}

/// A due resync of a client nothing changed about sends the registration with its secret
/// named by the fingerprint the auth server gave: no request to the API server (the
/// Secret is not read) and no secret on the wire. When the auth server's secret is
/// another one (changed behind the operator's back), the resync reads the Secret and
/// supplies its value, which makes it the secret again.
#[tokio::test]
async fn a_resync_names_the_known_secret_by_fingerprint_and_reads_the_secret_only_on_drift() {
    let mut c = client(json!({})).finalized();
    c.status = Some(ready_status(&c, None));
    let uid = c.uid().unwrap();
    let stored = format!("stored-secret-{}", "s".repeat(32));
    let admin = FakeAdmin::with_tenant();
    let mut secret = our_secret(&stored);
    secret["metadata"]["resourceVersion"] = json!("5");
    let (kube, verifier) = ApiServerVerifier::run(vec![Step::get(SECRET).respond(secret.clone())]);
    let ctx = fixtures::context(kube, admin.clone(), MigrationState::Succeeded);
    with_caches(&ctx, &c, "5");
    reconcile(Arc::new(c.clone()), ctx.clone()).await.unwrap();
    verifier.done().await;
    let known = ctx.known_secrets.get(&uid, Some("5")).expect("known");
    assert_eq!(known.fingerprint, fixtures::fingerprint(&stored));

    // The resync is due (its last full run 6 minutes ago), nothing changed: the mock API
    // server, finished, would fail any request.
    let due = |ctx: &Context| {
        let seen = Inputs::cached(&c, ctx).unwrap();
        let earlier = fixtures::now() - jiff::SignedDuration::from_mins(6);
        ctx.settled.record(&uid, Fingerprint::of(&seen), earlier);
    };
    due(&ctx);
    let resync = reconcile(Arc::new(c.clone()), ctx.clone()).await;
    assert_eq!(resync.unwrap(), Action::requeue(Duration::from_mins(5)));
    assert_eq!(
        admin.calls(),
        [
            "UpsertClient(acme/shop-web, supplied)",
            "UpsertClient(acme/shop-web, expect)"
        ]
    );
    assert_eq!(
        ctx.settled.unchanged(
            &uid,
            Fingerprint::of(&Inputs::cached(&c, &ctx).unwrap()),
            fixtures::now(),
            Duration::from_mins(5)
        ),
        Some(Duration::from_mins(5)),
        "recorded as a full reconcile: the next resync is 5 min away"
    );

    // Someone rotated the secret through the admin API: the fingerprint no longer names
    // the current secret, so the resync reads the Secret and supplies its value.
    admin
        .state()
        .clients
        .get_mut(&("acme".to_owned(), "shop-web".to_owned()))
        .unwrap()
        .secrets = vec!["rotated-by-hand".into()];
    let (kube, verifier) = ApiServerVerifier::run(vec![Step::get(SECRET).respond(secret)]);
    let fresh = fixtures::context(kube, admin.clone(), MigrationState::Succeeded);
    with_caches(&fresh, &c, "5");
    fresh
        .known_secrets
        .record(&uid, Some("5".into()), Some(known.fingerprint));
    due(&fresh);
    reconcile(Arc::new(c.clone()), fresh.clone()).await.unwrap();
    verifier.done().await;
    assert_eq!(
        admin.calls()[2..],
        [
            "UpsertClient(acme/shop-web, expect)",
            "UpsertClient(acme/shop-web, supplied)"
        ]
    );
    let registered = admin.state().clients[&("acme".to_owned(), "shop-web".to_owned())].clone();
    assert_eq!(
        registered.secrets,
        [stored],
        "the Secret's value is the secret again"
    );

    // The Secret changed (a new version in the cache): not known, read in full.
    assert!(fresh.known_secrets.get(&uid, Some("6")).is_none());
}
