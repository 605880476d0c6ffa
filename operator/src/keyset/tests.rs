use serde_json::{Value, json};

use super::*;
use crate::fixtures::{
    self, ApiServerVerifier, FakeAdmin, Step, TestObject as _, assert_ready, keyset, list, secret,
    tenant,
};
use crate::migration::MigrationState;

const TENANT: &str = "/apis/gatehouse.dev/v1alpha1/identitytenants/acme";
const ALL: &str = "/apis/gatehouse.dev/v1alpha1/signingkeysets";
const STATUS: &str = "/apis/gatehouse.dev/v1alpha1/signingkeysets/acme/status";
const KEYS_SECRET: &str = "/api/v1/namespaces/gatehouse/secrets/acme-keys";
const DAY: i64 = 86_400;

/// The rotation mode's name, as the tests compare it.
fn mode_name_of(key_set: &SigningKeySet) -> &'static str {
    mode_name(rotation_mode(key_set))
}

fn dereference(peers: Vec<Value>) -> Vec<Step> {
    vec![
        Step::get(TENANT).respond_obj(&tenant(json!({}))),
        Step::get(ALL).respond(list("gatehouse.dev/v1alpha1", "SigningKeySetList", peers)),
    ]
}

fn status_step(obj: &SigningKeySet, check: impl FnOnce(&Value) + Send + 'static) -> Step {
    Step::apply(STATUS, FIELD_MANAGER)
        .check(check)
        .respond_obj(obj)
}

/// A key set that was reconciled before (observedGeneration set).
fn reconciled(k: SigningKeySet, annotation: Option<&str>) -> SigningKeySet {
    let mut k = k;
    k.status = Some(SigningKeySetStatus {
        observed_generation: Some(1),
        conditions: with_ready(
            &[],
            Status::True,
            conditions::RECONCILED,
            "x",
            Some(1),
            Time(fixtures::now()),
        ),
        keys: vec![],
        next_rotation: None,
        next_activation: None,
        last_rotation_annotation: annotation.map(Into::into),
        last_rotate_now_annotation: None,
    });
    k
}

/// A key set reconciled before, with both rotation annotations acknowledged as given.
fn acknowledged(k: SigningKeySet, rotate: Option<&str>, rotate_now: Option<&str>) -> SigningKeySet {
    let mut k = reconciled(k, rotate);
    if let Some(status) = k.status.as_mut() {
        status.last_rotate_now_annotation = rotate_now.map(Into::into);
    }
    k
}

async fn run(
    obj: SigningKeySet,
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

fn observed(peers: Vec<SigningKeySet>, key_secret: KeySecret) -> Observed {
    Observed { peers, key_secret }
}

fn key_secret(entries: &[(&str, &str)]) -> KeySecret {
    KeySecret::Found(
        serde_json::from_value(secret("gatehouse", "acme-keys", entries, None)).unwrap(),
    )
}

fn cluster_scope() -> Scope {
    Scope::parse("", "").unwrap()
}

#[test]
fn the_plan_rotates_generated_keys_in_the_mode_the_object_asks_for() {
    let k = keyset(json!({}));
    let plan = plan(
        &k,
        &observed(vec![], KeySecret::NotReferenced),
        &cluster_scope(),
    )
    .unwrap();
    assert_eq!(plan.keys, KeyPlan::Rotate(proto::RotationMode::Bootstrap));
    assert_eq!(plan.policy, key_policy(&k.spec));
    let mut again = reconciled(keyset(json!({})), None);
    again
        .annotations_mut()
        .insert(ROTATE_ANNOTATION.into(), "1".into());
    let plan = super::plan(
        &again,
        &observed(vec![], KeySecret::NotReferenced),
        &cluster_scope(),
    )
    .unwrap();
    assert_eq!(plan.keys, KeyPlan::Rotate(proto::RotationMode::Force));
}

#[test]
fn the_plan_imports_every_pem_or_none() {
    let k = from_secret();
    let full = key_secret(&[("rs256.pem", RS_PEM), ("es256.pem", EC_PEM)]);
    let plan = plan(&k, &observed(vec![], full), &cluster_scope()).unwrap();
    assert_eq!(
        plan.keys,
        KeyPlan::Import(vec![
            (SigningAlgorithm::Rs256, RS_PEM.to_owned()),
            (SigningAlgorithm::Es256, EC_PEM.to_owned()),
        ])
    );
    // The plan's Debug (in logs at debug level) never shows a private key.
    let shown = format!("{plan:?}");
    assert!(
        shown.contains("RS256") && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );

    let half = key_secret(&[("rs256.pem", RS_PEM)]);
    let err = super::plan(&k, &observed(vec![], half), &cluster_scope()).unwrap_err();
    assert_eq!(err.category(), "SecretInvalid");
    assert!(
        err.to_string().contains("has no key es256.pem for ES256"),
        "{err}"
    );

    let err = super::plan(&k, &observed(vec![], KeySecret::Missing), &cluster_scope()).unwrap_err();
    assert_eq!(err.category(), "SecretNotFound");

    let scope = Scope::parse("shop", "").unwrap();
    let err = super::plan(&k, &observed(vec![], KeySecret::Unwatched), &scope).unwrap_err();
    assert_eq!(err.category(), "InvalidSpec");
    assert!(err.to_string().contains("not in gatehouse"), "{err}");
}

#[test]
fn the_plan_refuses_a_second_key_set_for_a_tenant() {
    let mut older = reconciled(keyset(json!({})), None);
    older.metadata.name = Some("first".into());
    older.metadata.uid = Some("uid-first".into());
    let me = keyset(json!({}));
    let err = plan(
        &me,
        &observed(vec![older, me.clone()], KeySecret::NotReferenced),
        &cluster_scope(),
    )
    .unwrap_err();
    assert_eq!(err.category(), "Conflict");
    assert!(
        err.to_string().contains("managed by SigningKeySet first"),
        "{err}"
    );
}

#[test]
fn the_rotation_event_warns_only_for_an_emergency() {
    let created = [key("k1", "ES256", "pending", 1_000, None)];
    assert!(rotation_event(proto::RotationMode::IfDue, &[]).is_none());
    let (kind, reason, note) = rotation_event(proto::RotationMode::Force, &created).unwrap();
    assert_eq!((kind, reason), (EventType::Normal, "KeysRotated"));
    assert!(
        note.starts_with("new signing keys (force): k1 (ES256); published now, signing from"),
        "{note}"
    );
    let (kind, reason, _) = rotation_event(proto::RotationMode::Now, &created).unwrap();
    assert_eq!((kind, reason), (EventType::Warning, "KeysRotatedNow"));
    let (_, reason, _) = rotation_event(proto::RotationMode::Bootstrap, &created).unwrap();
    assert_eq!(reason, "KeysCreated");
}

#[test]
fn the_ready_status_records_the_annotations_it_acted_on() {
    let mut k = keyset(json!({}));
    k.annotations_mut()
        .insert(ROTATE_NOW_ANNOTATION.into(), "incident-7".into());
    let keys = proto::SigningKeySet {
        keys: vec![key("k1", "ES256", "active", 0, None)],
        next_rotation: Some(fixtures::now().as_second() + DAY),
    };
    let status = ready_status(&k, &keys, fixtures::now());
    assert_eq!(
        status.last_rotate_now_annotation.as_deref(),
        Some("incident-7")
    );
    assert_eq!(status.keys.len(), 1);
    assert!(status.next_rotation.is_some());
    assert!(conditions::is_true(&status.conditions, conditions::READY));
}

#[test]
fn the_policy_comes_from_the_spec() {
    let k = keyset(
        json!({"rsaBits": 3072, "rotationIntervalDays": 30, "overlapWindowSeconds": 3600,
                          "promotionDelaySeconds": 600}),
    );
    let p = key_policy(&k.spec);
    assert_eq!(p.algorithms, ["RS256", "ES256"]);
    assert_eq!(p.rsa_bits, 3072);
    assert_eq!(p.rotation_interval_seconds, 30 * 86_400);
    assert_eq!(p.overlap_window_seconds, Some(3600));
    assert_eq!(p.promotion_delay_seconds, Some(600));
}

#[test]
fn an_unset_or_zero_promotion_delay_leaves_it_to_the_server() {
    // 0 was the schema default of earlier versions and is stored in objects made then.
    for spec in [json!({}), json!({"promotionDelaySeconds": 0})] {
        assert_eq!(
            key_policy(&keyset(spec.clone()).spec).promotion_delay_seconds,
            None,
            "{spec}"
        );
    }
    let p = key_policy(&keyset(json!({"promotionDelaySeconds": 3600})).spec);
    assert_eq!(p.promotion_delay_seconds, Some(3600));
}

#[test]
fn a_new_rotate_now_annotation_is_an_emergency_rotation() {
    let now = keyset(json!({})).annotated(ROTATE_NOW_ANNOTATION, "1");
    assert_eq!(mode_name_of(&acknowledged(now.clone(), None, None)), "now");
    assert_eq!(
        mode_name_of(&acknowledged(now.clone(), None, Some("0"))),
        "now"
    );
    assert_eq!(
        mode_name_of(&acknowledged(now.clone(), None, Some("1"))),
        "if_due"
    );
    // Both changed: the emergency covers the other.
    let both = now.annotated(ROTATE_ANNOTATION, "2");
    assert_eq!(
        mode_name_of(&acknowledged(both.clone(), Some("1"), None)),
        "now"
    );
    assert_eq!(
        mode_name_of(&acknowledged(both.clone(), Some("1"), Some("1"))),
        "force"
    );
    // A lost status withdraws nothing.
    assert_eq!(mode_name_of(&both), "bootstrap");
}

#[test]
fn the_mode_is_bootstrap_then_if_due_and_force_on_a_new_annotation() {
    assert_eq!(mode_name_of(&keyset(json!({}))), "bootstrap");
    assert_eq!(mode_name_of(&reconciled(keyset(json!({})), None)), "if_due");
    let annotated = keyset(json!({})).annotated(ROTATE_ANNOTATION, "1");
    assert_eq!(mode_name_of(&reconciled(annotated.clone(), None)), "force");
    assert_eq!(
        mode_name_of(&reconciled(annotated.clone(), Some("0"))),
        "force"
    );
    assert_eq!(mode_name_of(&reconciled(annotated, Some("1"))), "if_due");
}

#[test]
fn a_lost_status_never_forces_a_rotation() {
    // Velero restores objects without their status; a GitOps re-create starts without
    // one: the annotation already on the object counts as acknowledged.
    let restored = keyset(json!({})).annotated(ROTATE_ANNOTATION, "2026-11-01");
    assert_eq!(mode_name_of(&restored), "bootstrap");
}

fn key(
    kid: &str,
    alg: &str,
    state: &str,
    activates_at: i64,
    retires_at: Option<i64>,
) -> proto::SigningKey {
    proto::SigningKey {
        kid: kid.into(),
        alg: alg.into(),
        // The name an older auth server sends (the typed field unset).
        state: state.into(),
        key_state: 0,
        created_at: activates_at,
        activates_at,
        superseded_at: None,
        retires_at,
        source: "generated".into(),
    }
}

#[test]
fn the_requeue_is_the_next_key_deadline_capped_by_resync() {
    let now = fixtures::now();
    let t = now.as_second();
    let resync = Duration::from_mins(5);
    let set = |keys, next| proto::SigningKeySet {
        keys,
        next_rotation: next,
    };
    // Rotation in 90 days: the resync interval.
    assert_eq!(
        requeue_after(&set(vec![], Some(t + 90 * DAY)), now, resync),
        resync
    );
    // Rotation in 2 minutes: then.
    assert_eq!(
        requeue_after(&set(vec![], Some(t + 120)), now, resync),
        Duration::from_mins(2)
    );
    // A pending key activating in 60 s comes first.
    let pending = key("k2", "RS256", "pending", t + 60, None);
    assert_eq!(
        requeue_after(&set(vec![pending], Some(t + 120)), now, resync),
        Duration::from_mins(1)
    );
    // A retiring key retiring in 30 s.
    let retiring = key("k1", "RS256", "retiring", t - DAY, Some(t + 30));
    assert_eq!(
        requeue_after(&set(vec![retiring], None), now, resync),
        Duration::from_secs(30)
    );
    // A deadline that just passed does not spin.
    assert_eq!(
        requeue_after(&set(vec![], Some(t - 10)), now, resync),
        Duration::from_secs(5)
    );
    assert_eq!(requeue_after(&set(vec![], None), now, resync), resync);
}

#[test]
fn status_keys_hide_long_retired_ones_and_skip_unknown_values() {
    let now = fixtures::now();
    let t = now.as_second();
    let keys = vec![
        key("old", "RS256", "retired", t - 10 * DAY, Some(t - 2 * DAY)),
        key("recent", "RS256", "retired", t - 10 * DAY, Some(t - 3600)),
        key("cur", "RS256", "active", t - DAY, None),
        key("ec", "ES256", "active", t - DAY, None),
        key("x", "HS256", "active", t, None),
        key("y", "RS256", "weird", t, None),
    ];
    let shown = status_keys(&keys, now);
    let kids: Vec<&str> = shown.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["ec", "recent", "cur"]);
    let v = serde_json::to_value(&shown[2]).unwrap();
    assert_eq!(
        v,
        json!({"kid": "cur", "alg": "RS256", "state": "active", "activatedAt": "2025-12-31T00:00:00Z"})
    );
}

// --- reconcile ------------------------------------------------------------------------------

#[tokio::test]
async fn the_first_reconcile_bootstraps_keys_and_requeues_at_the_next_rotation() {
    let k = keyset(json!({}));
    let admin = FakeAdmin::with_tenant();
    admin.state().next_rotation = Some(fixtures::now().as_second() + 60);
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |body| {
        let m = assert_ready(body, "True", "Reconciled");
        assert!(
            m.contains("RS256 rs256-1") && m.contains("ES256 es256-2"),
            "{m}"
        );
        let keys = body["status"]["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["state"], "active");
        assert_eq!(body["status"]["nextRotation"], "2026-01-01T00:01:00Z");
        assert_eq!(body["status"]["observedGeneration"], 1);
    }));
    let (result, ctx) = run(k, admin.clone(), steps).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_mins(1)));
    assert_eq!(admin.calls(), ["RotateSigningKeys(acme, bootstrap)"]);
    assert_eq!(reasons(&ctx), ["KeysCreated"]);
}

#[tokio::test]
async fn a_rotation_not_yet_due_changes_nothing() {
    let admin = FakeAdmin::with_tenant();
    admin.state().next_rotation = Some(fixtures::now().as_second() + 80 * DAY);
    // First reconcile, to have keys.
    let k = keyset(json!({}));
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |_| {}));
    let _ = run(k, admin.clone(), steps).await;
    let before = admin.state().keys.clone();
    let k = reconciled(keyset(json!({})), None);
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |body| {
        assert_eq!(body["status"]["keys"].as_array().unwrap().len(), 2);
    }));
    let (result, ctx) = run(k, admin.clone(), steps).await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(Duration::from_mins(5)),
        "capped by resync"
    );
    assert_eq!(
        admin.calls().last().unwrap(),
        "RotateSigningKeys(acme, if_due)"
    );
    assert_eq!(admin.state().keys, before);
    assert!(reasons(&ctx).is_empty());
}

#[tokio::test]
async fn a_due_rotation_creates_new_keys() {
    let admin = FakeAdmin::with_tenant();
    let k = keyset(json!({}));
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |_| {}));
    let _ = run(k, admin.clone(), steps).await;
    admin.state().rotation_due = true;
    let k = reconciled(keyset(json!({})), None);
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |body| {
        let states: Vec<&str> = body["status"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["state"].as_str().unwrap())
            .collect();
        // Published first: the old keys sign until the new ones activate.
        assert_eq!(states, ["active", "pending", "active", "pending"]);
    }));
    let (result, ctx) = run(k, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(
        admin.calls().last().unwrap(),
        "RotateSigningKeys(acme, if_due)"
    );
    assert_eq!(reasons(&ctx), ["KeysRotated"]);
}

#[tokio::test]
async fn a_new_rotate_annotation_forces_a_rotation_and_is_recorded() {
    let admin = FakeAdmin::with_tenant();
    let k = reconciled(
        keyset(json!({})).annotated(ROTATE_ANNOTATION, "2026-01-01"),
        Some("2025-10-01"),
    );
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |body| {
        assert_eq!(body["status"]["lastRotationAnnotation"], "2026-01-01");
    }));
    let (result, ctx) = run(k, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(admin.calls(), ["RotateSigningKeys(acme, force)"]);
    assert_eq!(reasons(&ctx), ["KeysRotated"]);
}

#[tokio::test]
async fn pending_keys_and_when_they_sign_are_in_the_status() {
    let admin = FakeAdmin::with_tenant();
    let k = keyset(json!({}));
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |_| {}));
    let _ = run(k, admin.clone(), steps).await;
    let k = reconciled(
        keyset(json!({})).annotated(ROTATE_ANNOTATION, "2026-01-01"),
        None,
    );
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |body| {
        let status = &body["status"];
        // The server's default delay: 960 s after the fixed now (2026-01-01T00:00:00Z).
        assert_eq!(status["nextActivation"], "2026-01-01T00:16:00Z");
        let pending: Vec<&Value> = status["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["state"] == "pending")
            .collect();
        assert_eq!(pending.len(), 2, "{status}");
        assert!(
            pending
                .iter()
                .all(|k| k["activatedAt"] == "2026-01-01T00:16:00Z"),
            "{status}"
        );
        let m = assert_ready(body, "True", "Reconciled");
        assert_eq!(
            m,
            "active keys: ES256 es256-2, RS256 rs256-1; published, signing later: \
             ES256 es256-4 from 2026-01-01T00:16:00Z, RS256 rs256-3 from 2026-01-01T00:16:00Z"
        );
    }));
    let (result, ctx) = run(k, admin.clone(), steps).await;
    // Activation in 16 minutes: the 5-minute resync comes first.
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_mins(5)));
    let events = ctx.events.recorded();
    let note = &events.last().unwrap().note;
    assert!(
        note.contains("published now, signing from 2026-01-01T00:16:00Z"),
        "{note}"
    );
}

#[tokio::test]
async fn a_new_rotate_now_annotation_signs_at_once_withdraws_the_old_keys_and_warns() {
    let admin = FakeAdmin::with_tenant();
    let k = keyset(json!({}));
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |_| {}));
    let _ = run(k, admin.clone(), steps).await;
    let k = acknowledged(
        keyset(json!({})).annotated(ROTATE_NOW_ANNOTATION, "leak-42"),
        None,
        None,
    );
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |body| {
        let status = &body["status"];
        assert_eq!(status["lastRotateNowAnnotation"], "leak-42");
        assert_eq!(status.get("nextActivation"), None, "{status}");
        let keys: Vec<(&str, &str)> = status["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["kid"].as_str().unwrap(), k["state"].as_str().unwrap()))
            .collect();
        assert_eq!(
            keys,
            [
                ("es256-2", "retired"),
                ("es256-4", "active"),
                ("rs256-1", "retired"),
                ("rs256-3", "active")
            ]
        );
    }));
    let (result, ctx) = run(k, admin.clone(), steps).await;
    result.unwrap();
    assert_eq!(
        admin.calls().last().unwrap(),
        "RotateSigningKeys(acme, now)"
    );
    let events = ctx.events.recorded();
    let event = events.last().unwrap();
    assert_eq!(
        (event.warning, event.reason.as_str()),
        (true, "KeysRotatedNow")
    );
    assert!(
        event.note.contains("previous keys left the JWKS"),
        "{}",
        event.note
    );
}

#[tokio::test]
async fn a_promotion_delay_shorter_than_the_jwks_max_age_is_invalid_spec() {
    let k = keyset(json!({"promotionDelaySeconds": 300}));
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |body| {
        let m = assert_ready(body, "False", "InvalidSpec");
        assert!(
            m.contains(
                "spec.promotionDelaySeconds: 300 s is shorter than the JWKS max-age of 900 s"
            ),
            "{m}"
        );
    }));
    let (result, _) = run(k, admin, steps).await;
    assert!(result.unwrap_err().awaits_change());
}

#[tokio::test]
async fn an_unknown_tenant_ref_is_tenant_not_found() {
    let k = keyset(json!({"tenantRef": "nope"}));
    let admin = FakeAdmin::with_tenant();
    let steps = vec![
        Step::get("/apis/gatehouse.dev/v1alpha1/identitytenants/nope").not_found(),
        status_step(&k, |body| {
            let m = assert_ready(body, "False", "TenantNotFound");
            assert!(m.contains("IdentityTenant nope does not exist"), "{m}");
        }),
    ];
    let (result, _) = run(k, admin.clone(), steps).await;
    assert!(result.is_err());
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn a_second_key_set_for_a_tenant_is_a_conflict() {
    let mut owner = keyset(json!({})).named("acme-main", "uid-main");
    owner.status = reconciled(owner.clone(), None).status;
    let k = keyset(json!({}));
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![serde_json::to_value(&owner).unwrap()]);
    steps.push(status_step(&k, |body| {
        let m = assert_ready(body, "False", "Conflict");
        assert!(m.contains("managed by SigningKeySet acme-main"), "{m}");
    }));
    let (result, _) = run(k, admin.clone(), steps).await;
    assert!(result.is_err());
    assert!(admin.calls().is_empty());
}

fn from_secret() -> SigningKeySet {
    keyset(json!({"source": {"secretRef": {"name": "acme-keys", "namespace": "gatehouse"}}}))
}

const RS_PEM: &str = "-----BEGIN PRIVATE KEY-----\nrs\n-----END PRIVATE KEY-----\n";
const EC_PEM: &str = "-----BEGIN PRIVATE KEY-----\nec\n-----END PRIVATE KEY-----\n";

#[tokio::test]
async fn keys_from_a_secret_are_imported_once() {
    let admin = FakeAdmin::with_tenant();
    for round in 0..2 {
        let k = from_secret();
        let mut steps = dereference(vec![]);
        steps.push(Step::get(KEYS_SECRET).respond(secret(
            "gatehouse",
            "acme-keys",
            &[("rs256.pem", RS_PEM), ("es256.pem", EC_PEM)],
            None,
        )));
        steps.push(status_step(&k, |body| {
            assert_eq!(body["status"]["keys"].as_array().unwrap().len(), 2);
        }));
        let (result, ctx) = run(k, admin.clone(), steps).await;
        result.unwrap();
        let expected = if round == 0 {
            vec!["KeyImported", "KeyImported"]
        } else {
            vec![]
        };
        assert_eq!(reasons(&ctx), expected, "round {round}");
    }
    assert_eq!(
        admin.calls(),
        [
            "ImportSigningKey(acme, RS256)",
            "ImportSigningKey(acme, ES256)",
            "ListSigningKeys(acme)",
            "ImportSigningKey(acme, RS256)",
            "ImportSigningKey(acme, ES256)",
            "ListSigningKeys(acme)",
        ]
    );
}

#[tokio::test]
async fn a_missing_key_secret_is_secret_not_found() {
    let k = from_secret();
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(KEYS_SECRET).not_found());
    steps.push(status_step(&k, |body| {
        assert_ready(body, "False", "SecretNotFound");
    }));
    let (result, _) = run(k, admin.clone(), steps).await;
    assert!(result.is_err());
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn a_key_secret_without_an_algorithms_pem_imports_nothing() {
    let k = from_secret();
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(KEYS_SECRET).respond(secret(
        "gatehouse",
        "acme-keys",
        &[("rs256.pem", RS_PEM)],
        None,
    )));
    steps.push(status_step(&k, |body| {
        let m = assert_ready(body, "False", "SecretInvalid");
        assert!(m.contains("has no key es256.pem for ES256"), "{m}");
    }));
    let (result, _) = run(k, admin.clone(), steps).await;
    assert!(result.is_err());
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn a_bad_pem_is_secret_invalid() {
    let k = from_secret();
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    steps.push(Step::get(KEYS_SECRET).respond(secret(
        "gatehouse",
        "acme-keys",
        &[("rs256.pem", "not a key"), ("es256.pem", EC_PEM)],
        None,
    )));
    steps.push(status_step(&k, |body| {
        let m = assert_ready(body, "False", "SecretInvalid");
        assert!(
            m.contains("key rs256.pem of Secret gatehouse/acme-keys: not a PKCS#8 PEM private key"),
            "{m}"
        );
    }));
    let (result, _) = run(k, admin, steps).await;
    assert!(result.is_err());
}

#[tokio::test]
async fn a_rejected_policy_is_invalid_spec_naming_the_field() {
    let k = keyset(json!({}));
    let admin = FakeAdmin::with_tenant();
    admin.fail_with(
        AdminErrorKind::InvalidArgument,
        "policy.overlap_window_seconds: must not exceed the rotation interval",
    );
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |body| {
        let m = assert_ready(body, "False", "InvalidSpec");
        assert!(
            m.contains("spec.overlapWindowSeconds: must not exceed"),
            "{m}"
        );
    }));
    let (result, _) = run(k, admin, steps).await;
    assert!(result.unwrap_err().awaits_change());
}

#[tokio::test]
async fn an_unreachable_auth_server_is_reported() {
    let k = keyset(json!({}));
    let admin = FakeAdmin::with_tenant();
    admin.fail_with(AdminErrorKind::Unavailable, "connection refused");
    let mut steps = dereference(vec![]);
    steps.push(status_step(&k, |body| {
        assert_ready(body, "False", "AuthServerUnavailable");
    }));
    let (result, _) = run(k, admin, steps).await;
    assert_eq!(result.unwrap_err().category(), "AuthServerUnavailable");
}

#[tokio::test]
async fn migration_failed_holds_rotation() {
    let k = keyset(json!({}));
    let admin = FakeAdmin::with_tenant();
    let (kube, verifier) = ApiServerVerifier::run(vec![status_step(&k, |body| {
        assert_ready(body, "False", "MigrationFailed");
    })]);
    let ctx = fixtures::context(
        kube,
        admin.clone(),
        MigrationState::Failed {
            message: "job failed".into(),
        },
    );
    assert!(reconcile(Arc::new(k), ctx).await.is_err());
    verifier.done().await;
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn a_key_secret_outside_the_watched_namespaces_is_refused_without_reading_it() {
    let k = keyset(json!({"source": {"secretRef": {"name": "acme-keys", "namespace": "vault"}}}));
    let admin = FakeAdmin::with_tenant();
    let mut steps = dereference(vec![]);
    // No GET of the Secret: the namespaced RBAC would refuse it.
    steps.push(status_step(&k, |body| {
        let m = assert_ready(body, "False", "InvalidSpec");
        assert!(
            m.contains("only in the namespaces it watches (gatehouse, shop"),
            "{m}"
        );
        assert!(m.contains("not in vault"), "{m}");
    }));
    let (kube, verifier) = ApiServerVerifier::run(steps);
    let scope = crate::scope::Scope::parse("shop,gatehouse", "").unwrap();
    let ctx = fixtures::context_in(kube, admin.clone(), MigrationState::Succeeded, scope);
    let result = reconcile(Arc::new(k), ctx).await;
    verifier.done().await;
    assert_eq!(result.unwrap_err().category(), "InvalidSpec");
    assert!(admin.calls().is_empty());
}
