//! The real kube-runtime Controllers (initial LIST, WATCH, `.owns()`, `.watches()`,
//! finalizers, Events) against the in-memory API server.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use operator::context::Events;
use operator::{client, keyset, tenant};
use serde_json::json;
use tokio::sync::watch;

use crate::admin_stub::AdminStub;
use crate::kube_fake::FakeKube;
use crate::{GROUP_VERSION, context, eventually, machine_client, namespace, ready, secret_data};

const WAIT: Duration = Duration::from_secs(20);

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, step by step
async fn the_controllers_register_watch_restore_and_clean_up() {
    let (kube, fake) = FakeKube::start();
    let admin = Arc::new(AdminStub::default());
    let recorder = Recorder::new(
        kube.clone(),
        Reporter {
            controller: "gatehouse-operator".into(),
            instance: Some("test".into()),
        },
    );
    let ctx = context(kube, admin.clone(), Events::Kube(Arc::new(recorder)));
    fake.insert(namespace("shop", "acme"));
    fake.insert(crate::tenant(
        "acme",
        "https://id.example.com/t/acme",
        "Retain",
    ));
    fake.insert(machine_client("shop", "web", "acme"));
    // Malformed (grantTypes must be a list): reported, and it must not stall the others.
    fake.insert(json!({
        "apiVersion": GROUP_VERSION, "kind": "OidcClient",
        "metadata": {"name": "broken", "namespace": "shop"},
        "spec": {"tenantRef": "acme", "grantTypes": "client_credentials"},
    }));

    let (stop_tx, stop) = watch::channel(false);
    let controllers = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            tokio::join!(
                tenant::run(ctx.clone(), stopped(stop.clone())),
                client::run(ctx, stopped(stop)),
            );
        })
    };

    let client_obj = || fake.get(GROUP_VERSION, "oidcclients", Some("shop"), "web");
    let secret = || fake.get("v1", "secrets", Some("shop"), "web-oidc");

    // Registered: finalizer, Secret, status.
    eventually("the client to become Ready", WAIT, || async {
        (ready(&client_obj()?).0 == "True").then_some(())
    })
    .await;
    let c = client_obj().unwrap();
    assert_eq!(
        c["metadata"]["finalizers"],
        json!(["gatehouse.dev/cleanup"])
    );
    let data = secret_data(&secret().unwrap());
    let registered =
        admin.clients.lock().unwrap()[&("acme".to_owned(), "shop-web".to_owned())].clone();
    assert_eq!(Some(data["CLIENT_SECRET"].clone()), registered.1);
    assert_eq!(data["ISSUER_URL"], "https://id.example.com/t/acme");
    let t = fake
        .get(GROUP_VERSION, "identitytenants", None, "acme")
        .unwrap();
    assert_eq!(ready(&t).0, "True");
    assert!(
        fake.get(
            "batch/v1",
            "cronjobs",
            Some("gatehouse"),
            "gatehouse-purge-acme"
        )
        .is_some()
    );

    // A purge CronJob deleted by hand comes back (watched, mapped to its tenant).
    let cron = || {
        fake.get(
            "batch/v1",
            "cronjobs",
            Some("gatehouse"),
            "gatehouse-purge-acme",
        )
    };
    let first_uid = cron().unwrap()["metadata"]["uid"].clone();
    fake.delete(
        "batch/v1",
        "cronjobs",
        Some("gatehouse"),
        "gatehouse-purge-acme",
    );
    eventually("the purge CronJob to be re-created", WAIT, || async {
        cron()
            .filter(|c| c["metadata"]["uid"] != first_uid)
            .map(|_| ())
    })
    .await;

    let broken = eventually("the malformed client to be reported", WAIT, || async {
        let b = fake.get(GROUP_VERSION, "oidcclients", Some("shop"), "broken")?;
        (ready(&b).1 == "InvalidSpec").then_some(b)
    })
    .await;
    assert!(
        ready(&broken).2.contains("does not match the schema"),
        "{broken:#}"
    );

    // The Secret deleted by hand comes back through the `.owns()` watch; its plaintext
    // was lost, so it carries a new secret that the auth server knows.
    let old = data["CLIENT_SECRET"].clone();
    fake.delete("v1", "secrets", Some("shop"), "web-oidc");
    let restored = eventually("the Secret to be restored", WAIT, || async {
        let s = secret_data(&secret()?);
        (s["CLIENT_SECRET"] != old).then_some(s)
    })
    .await;
    let registered =
        admin.clients.lock().unwrap()[&("acme".to_owned(), "shop-web".to_owned())].clone();
    assert_eq!(Some(restored["CLIENT_SECRET"].clone()), registered.1);

    // Events went to the API server.
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.starts_with("POST /apis/events.k8s.io/v1/namespaces/shop/events")),
        "{:#?}",
        fake.requests()
    );

    // Deleting the OidcClient runs the cleanup and releases the finalizer.
    fake.delete(GROUP_VERSION, "oidcclients", Some("shop"), "web");
    eventually("the client to be gone", WAIT, || async {
        client_obj().is_none().then_some(())
    })
    .await;
    assert!(admin.clients.lock().unwrap().is_empty(), "DeleteClient ran");

    // Every request the controllers made is granted by rbac.yaml.
    for request in fake.requests() {
        assert!(
            crate::rbac::allowed(&request),
            "rbac.yaml does not grant {request}"
        );
    }

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), controllers)
        .await
        .expect("the controllers stop on shutdown")
        .unwrap();
}

/// `--watch-namespaces shop,billing --instance` unset: one OidcClient controller per
/// watched namespace, a client id conflict across them detected, clients elsewhere and
/// another instance's clients untouched, and every request granted by
/// `rbac-namespaced.yaml` (no cluster-wide Secret, OidcClient or Event access).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, step by step
async fn namespaced_controllers_stay_in_their_namespaces() {
    let (kube, fake) = FakeKube::start();
    let admin = Arc::new(AdminStub::default());
    let recorder = Recorder::new(
        kube.clone(),
        Reporter {
            controller: "gatehouse-operator".into(),
            instance: Some("test".into()),
        },
    );
    let (tx, migration) = watch::channel(operator::migration::MigrationState::Succeeded);
    drop(tx);
    let ctx = Arc::new(operator::context::Context::new(
        kube,
        admin.clone(),
        operator::context::Config {
            scope: operator::scope::Scope::parse("shop,billing", "").unwrap(),
            ..crate::config()
        },
        Events::Kube(Arc::new(recorder)),
        Arc::new(operator::metrics::Metrics::new()),
        Arc::new(operator::context::SystemClock),
        migration,
    ));
    for ns in ["shop", "billing", "other"] {
        fake.insert(namespace(ns, "acme"));
    }
    fake.insert(crate::tenant(
        "acme",
        "https://id.example.com/t/acme",
        "Retain",
    ));
    fake.insert(crate::key_set("acme"));
    fake.insert(machine_client("shop", "web", "acme"));
    fake.insert(machine_client("other", "stray", "acme"));
    let mut foreign = machine_client("shop", "green", "acme");
    foreign["metadata"]["labels"] = json!({"gatehouse.dev/instance": "green"});
    fake.insert(foreign);

    let (stop_tx, stop) = watch::channel(false);
    let controllers = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            tokio::join!(
                tenant::run(ctx.clone(), stopped(stop.clone())),
                client::run(ctx.clone(), stopped(stop.clone())),
                keyset::run(ctx, stopped(stop)),
            );
        })
    };
    let get = |ns: &'static str, name: &'static str| {
        let fake = fake.clone();
        move || fake.get(GROUP_VERSION, "oidcclients", Some(ns), name)
    };

    eventually("shop/web to become Ready", WAIT, || async {
        (ready(&get("shop", "web")()?).0 == "True").then_some(())
    })
    .await;
    eventually("the key set to become Ready", WAIT, || async {
        let k = fake.get(GROUP_VERSION, "signingkeysets", None, "acme")?;
        (ready(&k).0 == "True").then_some(())
    })
    .await;
    // Claims shop/web's client id from the other watched namespace: the established
    // owner in shop keeps it (the billing controller sees the shop controller's cache).
    let mut dup = machine_client("billing", "dup", "acme");
    dup["spec"]["clientId"] = json!("shop-web");
    fake.insert(dup);
    let dup = eventually("billing/dup to get Conflict", WAIT, || async {
        let d = get("billing", "dup")()?;
        (ready(&d).1 == "Conflict").then_some(d)
    })
    .await;
    assert!(
        ready(&dup).2.contains("belongs to OidcClient shop/web"),
        "{dup:#}"
    );

    // Outside the watched namespaces, and another instance's object: never touched.
    for (ns, name) in [("other", "stray"), ("shop", "green")] {
        let c = get(ns, name)().unwrap();
        assert!(c["status"].is_null(), "{ns}/{name} was reconciled: {c:#}");
        assert!(c["metadata"]["finalizers"].is_null(), "{ns}/{name}: {c:#}");
    }
    assert!(
        fake.get("v1", "secrets", Some("other"), "stray-oidc")
            .is_none()
    );
    assert!(
        !admin
            .clients
            .lock()
            .unwrap()
            .contains_key(&("acme".to_owned(), "other-stray".to_owned()))
    );

    let requests = fake.requests();
    for request in &requests {
        assert!(
            crate::rbac::allowed_by(crate::rbac::NAMESPACED, request),
            "rbac-namespaced.yaml does not grant {request}"
        );
    }
    // The watches of each namespace's controller, never one over all namespaces.
    for ns in ["shop", "billing"] {
        let watch = format!("GET /apis/gatehouse.dev/v1alpha1/namespaces/{ns}/oidcclients?");
        assert!(
            requests.iter().any(|r| r.starts_with(&watch)),
            "{requests:#?}"
        );
    }

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), controllers)
        .await
        .expect("the controllers stop on shutdown")
        .unwrap();
}
