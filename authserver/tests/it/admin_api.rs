//! The admin gRPC API through the generated tonic client: bearer authentication, field
//! named in every INVALID_ARGUMENT, idempotent upserts, secret rotation with overlap,
//! tenants, signing keys (rotate, import PEM), and the audit trail of each change.

use std::time::{Duration, Instant};

use authserver::admin::proto::admin_client::AdminClient;
use authserver::admin::proto::{
    self, ClientSpec, DeleteClientRequest, DeleteTenantRequest, GetClientRequest, GetTenantRequest,
    HealthRequest, ImportSigningKeyRequest, ListSigningKeysRequest, RotateClientSecretRequest,
    RotateSigningKeysRequest, UpsertClientRequest, UpsertTenantRequest,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::admin::{authed, machine_spec, serve_with_admin, upsert, with_token};
use crate::harness::jose::{ClientKey, now};
use crate::harness::oauth::{Creds, token};
use crate::harness::{Backend, POLL, TestDb};

on_both_backends!(
    calls_without_the_bearer_token_are_unauthenticated,
    invalid_arguments_name_the_field_and_change_nothing,
    upsert_client_is_idempotent,
    a_rotated_secret_overlaps_with_the_previous_one,
    a_secret_known_by_its_fingerprint_is_kept_without_being_sent,
    tenants_are_upserted_read_and_deleted,
    signing_keys_are_rotated_and_imported,
    an_emergency_rotation_signs_at_once_and_withdraws_the_previous_keys,
);

async fn calls_without_the_bearer_token_are_unauthenticated(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (_server, mut admin) = serve_with_admin(&db).await;
    let before = db.snapshot().await;

    let missing = admin.health(HealthRequest {}).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    let wrong_token = "x".repeat(crate::harness::admin::ADMIN_TOKEN.len());
    for token in [wrong_token.as_str(), "", "it-admin-token"] {
        let wrong = admin
            .health(with_token(HealthRequest {}, token))
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated, "{token:?}: {wrong:?}");
    }
    let mut basic = tonic::Request::new(UpsertClientRequest {
        managed_by: String::new(),
        tenant_id: "main".into(),
        spec: Some(machine_spec("sneaky")),
        secret: None,
    });
    basic.metadata_mut().insert(
        "authorization",
        format!("Basic {}", crate::harness::admin::ADMIN_TOKEN)
            .parse()
            .unwrap(),
    );
    let e = admin.upsert_client(basic).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(db.snapshot().await, before);

    let health = admin
        .health(authed(HealthRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(
        health.database_reachable && health.schema_current,
        "{health:?}"
    );
    assert!(health.pending_migrations.is_empty());
}

/// Asserts INVALID_ARGUMENT whose message starts with `field: `.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    field: &str,
) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{field}: {status:?}"
    );
}

#[allow(clippy::too_many_lines)] // one call per invalid field
async fn invalid_arguments_name_the_field_and_change_nothing(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (_server, mut admin) = serve_with_admin(&db).await;
    let before = db.snapshot().await;
    let audit_before = db.audit().await;

    let client = |spec: ClientSpec| UpsertClientRequest {
        managed_by: String::new(),
        tenant_id: "main".into(),
        spec: Some(spec),
        secret: None,
    };
    let base = || machine_spec("app");
    let bad_specs = [
        (
            ClientSpec {
                grant_types: vec!["authorization_code".into()],
                ..base()
            },
            "spec.redirect_uris",
        ),
        (
            ClientSpec {
                grant_types: vec!["authorization_code".into()],
                redirect_uris: vec!["http://app.example.com/cb".into()],
                ..base()
            },
            "spec.redirect_uris",
        ),
        (
            ClientSpec {
                grant_types: vec!["password".into()],
                ..base()
            },
            "spec.grant_types",
        ),
        (
            ClientSpec {
                grant_types: vec![],
                ..base()
            },
            "spec.grant_types",
        ),
        (
            ClientSpec {
                client_type: "public".into(),
                token_endpoint_auth_method: "none".into(),
                ..base()
            },
            "spec.grant_types",
        ),
        (
            ClientSpec {
                token_endpoint_auth_method: "magic".into(),
                ..base()
            },
            "spec.token_endpoint_auth_method",
        ),
        (
            ClientSpec {
                client_id: "has space".into(),
                ..base()
            },
            "spec.client_id",
        ),
        (
            ClientSpec {
                token_endpoint_auth_method: "private_key_jwt".into(),
                ..base()
            },
            "spec.jwks_uri",
        ),
        (
            ClientSpec {
                token_endpoint_auth_method: "private_key_jwt".into(),
                jwks_json: Some("{not json".into()),
                ..base()
            },
            "spec.jwks_json",
        ),
        (
            ClientSpec {
                access_token_lifetime_seconds: 5,
                ..base()
            },
            "spec.access_token_lifetime_seconds",
        ),
        (
            ClientSpec {
                access_token_alg: "HS256".into(),
                ..base()
            },
            "spec.access_token_alg",
        ),
        (
            ClientSpec {
                scopes: vec!["a\"b".into()],
                ..base()
            },
            "spec.scopes",
        ),
    ];
    for (spec, field) in bad_specs {
        assert_invalid(admin.upsert_client(authed(client(spec))).await, field);
    }
    assert_invalid(
        admin
            .upsert_client(authed(UpsertClientRequest {
                managed_by: String::new(),
                tenant_id: "main".into(),
                spec: Some(base()),
                secret: Some(proto::upsert_client_request::Secret::SuppliedSecret(
                    "x".repeat(31),
                )),
            }))
            .await,
        "supplied_secret",
    );
    assert_invalid(
        admin
            .upsert_client(authed(UpsertClientRequest {
                managed_by: String::new(),
                tenant_id: "main".into(),
                spec: None,
                secret: None,
            }))
            .await,
        "spec",
    );
    assert_invalid(
        admin
            .upsert_client(authed(UpsertClientRequest {
                managed_by: String::new(),
                tenant_id: String::new(),
                spec: Some(base()),
                secret: None,
            }))
            .await,
        "tenant_id",
    );
    let tenant = |id: &str, issuer: &str, settings: &str| UpsertTenantRequest {
        id: id.into(),
        issuer: issuer.into(),
        display_name: String::new(),
        settings_json: settings.into(),
    };
    assert_invalid(
        admin
            .upsert_tenant(authed(tenant("acme", "http://id.example.com", "")))
            .await,
        "issuer",
    );
    assert_invalid(
        admin
            .upsert_tenant(authed(tenant("acme", "not a url", "")))
            .await,
        "issuer",
    );
    assert_invalid(
        admin
            .upsert_tenant(authed(tenant("Not_An_Id", "https://id.example.com", "")))
            .await,
        "id",
    );
    assert_invalid(
        admin
            .upsert_tenant(authed(tenant("acme", "https://id.example.com", "[1]")))
            .await,
        "settings_json",
    );
    assert_invalid(
        admin
            .rotate_signing_keys(authed(RotateSigningKeysRequest {
                tenant_id: "main".into(),
                mode: "sometimes".into(),
                policy: None,
                ..Default::default()
            }))
            .await,
        "mode",
    );
    // A promotion delay shorter than the JWKS max-age the server sends (900 s).
    let status = admin
        .rotate_signing_keys(authed(RotateSigningKeysRequest {
            tenant_id: "main".into(),
            mode: "force".into(),
            policy: Some(proto::KeyPolicy {
                promotion_delay_seconds: Some(0),
                ..proto::KeyPolicy::default()
            }),
            ..Default::default()
        }))
        .await;
    assert_invalid(status, "policy.promotion_delay_seconds");
    assert_invalid(
        admin
            .import_signing_key(authed(ImportSigningKeyRequest {
                tenant_id: "main".into(),
                alg: "HS256".into(),
                private_key_pem: ClientKey::es256().pem(),
                policy: None,
            }))
            .await,
        "alg",
    );
    assert_invalid(
        admin
            .rotate_client_secret(authed(RotateClientSecretRequest {
                tenant_id: "main".into(),
                client_id: String::new(),
                supplied_secret: None,
                overlap_seconds: 60,
            }))
            .await,
        "client_id",
    );
    // Unknown tenants and clients are NOT_FOUND.
    let e = admin
        .upsert_client(authed(UpsertClientRequest {
            managed_by: String::new(),
            tenant_id: "nope".into(),
            spec: Some(base()),
            secret: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = admin
        .rotate_client_secret(authed(RotateClientSecretRequest {
            tenant_id: "main".into(),
            client_id: "nobody".into(),
            supplied_secret: None,
            overlap_seconds: 60,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    assert_eq!(db.snapshot().await, before);
    assert_eq!(
        db.audit().await,
        audit_before,
        "rejected calls are not audited as changes"
    );
}

async fn upsert_client_is_idempotent(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (server, mut admin) = serve_with_admin(&db).await;
    let first = upsert(&mut admin, machine_spec("app")).await;
    crate::harness::admin::assert_upsert_outcome(&first, "created");
    let secret = first.generated_secret.clone().expect("a generated secret");
    assert_eq!(secret.len(), 43);
    let creds = Creds {
        id: "app".into(),
        secret: Some(secret),
    };
    token(&server, &creds, &[]).await.ok();

    let snapshot = db.snapshot().await;
    let second = upsert(&mut admin, machine_spec("app")).await;
    crate::harness::admin::assert_upsert_outcome(&second, "unchanged");
    assert_eq!(second.generated_secret, None, "the secret is shown once");
    assert_eq!(
        db.snapshot().await,
        snapshot,
        "an unchanged upsert writes nothing"
    );

    // A changed spec updates the client and keeps its secret.
    let third = upsert(
        &mut admin,
        ClientSpec {
            scopes: vec!["read".into()],
            ..machine_spec("app")
        },
    )
    .await;
    crate::harness::admin::assert_upsert_outcome(&third, "updated");
    assert_eq!(third.generated_secret, None);
    let got = crate::harness::admin::get_client(&mut admin, "app").await;
    assert_eq!(got.valid_secrets, 1);
    assert_eq!(got.spec.unwrap().scopes, ["read"]);
    token(&server, &creds, &[("scope", "read")]).await.ok();
    // A supplied secret replaces the generated one.
    let supplied = "s".repeat(40);
    let r = admin
        .upsert_client(crate::harness::admin::upsert_request(
            ClientSpec {
                scopes: vec!["read".into()],
                ..machine_spec("app")
            },
            proto::upsert_client_request::Secret::SuppliedSecret(supplied.clone()),
        ))
        .await
        .unwrap()
        .into_inner();
    crate::harness::admin::assert_upsert_outcome(&r, "updated");
    assert_eq!(r.generated_secret, None);
    let deadline = Instant::now() + Duration::from_secs(2);
    while token(&server, &creds, &[]).await.status != 401 {
        assert!(Instant::now() < deadline, "the replaced secret still works");
        tokio::time::sleep(POLL).await;
    }
    token(&server, &creds.with_secret(&supplied), &[])
        .await
        .ok();

    let delete = |id: &str| DeleteClientRequest {
        tenant_id: "main".into(),
        client_id: id.into(),
    };
    let d = admin.delete_client(authed(delete("app"))).await.unwrap();
    assert!(d.into_inner().deleted);
    let d = admin.delete_client(authed(delete("app"))).await.unwrap();
    assert!(!d.into_inner().deleted, "deleting twice is fine");
    let e = admin
        .get_client(authed(GetClientRequest {
            tenant_id: "main".into(),
            client_id: "app".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let events: Vec<String> = db
        .audit()
        .await
        .into_iter()
        .filter(|r| !r.starts_with("client.auth_failed|"))
        .map(|r| r.split('|').take(3).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(
        events,
        [
            "client.created|admin-api|app",
            "client.updated|admin-api|app",
            "client.updated|admin-api|app",
            "client.deleted|admin-api|app",
        ]
    );
}

async fn a_rotated_secret_overlaps_with_the_previous_one(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (server, mut admin) = serve_with_admin(&db).await;
    let old = Creds {
        id: "app".into(),
        secret: upsert(&mut admin, machine_spec("app"))
            .await
            .generated_secret,
    };

    let rotate = |supplied: Option<String>, overlap: u64| RotateClientSecretRequest {
        tenant_id: "main".into(),
        client_id: "app".into(),
        supplied_secret: supplied,
        overlap_seconds: overlap,
    };
    let before = db.snapshot().await;
    assert_invalid(
        admin
            .rotate_client_secret(authed(rotate(Some("short".into()), 2)))
            .await,
        "supplied_secret",
    );
    assert_eq!(db.snapshot().await, before);

    let rotated_at = now();
    let r = admin
        .rotate_client_secret(authed(rotate(None, 2)))
        .await
        .unwrap()
        .into_inner();
    let new = old.with_secret(r.generated_secret.as_deref().expect("a new secret"));
    assert_ne!(new.secret, old.secret);
    assert!(
        (rotated_at + 2..=rotated_at + 3).contains(&r.previous_secret_expires_at),
        "{r:?}"
    );
    // Both work during the overlap…
    token(&server, &new, &[]).await.ok();
    token(&server, &old, &[]).await.ok();
    // …then only the new one.
    let started = Instant::now();
    loop {
        let reply = token(&server, &old, &[]).await;
        if reply.status == 401 {
            reply.assert_invalid_client();
            break;
        }
        reply.ok();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the previous secret still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "previous secret refused {} ms after the rotation",
        started.elapsed().as_millis()
    );
    token(&server, &new, &[]).await.ok();
    let audit = db.audit().await;
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with("client.secret_rotated|admin-api|app|")),
        "{audit:?}"
    );
}

/// `expect_secret_fingerprint`: an upsert that names the current secret by the
/// fingerprint an earlier answer gave keeps it (and may change the spec); a fingerprint
/// that is not the current secret's, or a client that does not exist, is ABORTED and
/// changes nothing.
async fn a_secret_known_by_its_fingerprint_is_kept_without_being_sent(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (server, mut admin) = serve_with_admin(&db).await;
    let created = upsert(&mut admin, machine_spec("app")).await;
    let creds = Creds {
        id: "app".into(),
        secret: created.generated_secret.clone(),
    };
    let secret = creds.secret.clone().expect("a generated secret");
    let fingerprint = created.client.expect("the client").secret_fingerprint;
    assert_eq!(fingerprint.len(), 22, "{fingerprint}");
    assert!(!fingerprint.contains(&secret[..8]));
    let got = crate::harness::admin::get_client(&mut admin, "app").await;
    assert_eq!(
        got.secret_fingerprint, fingerprint,
        "GetClient says the same"
    );

    let expect = |spec: ClientSpec, fingerprint: &str| {
        crate::harness::admin::upsert_request(
            spec,
            proto::upsert_client_request::Secret::ExpectSecretFingerprint(fingerprint.to_owned()),
        )
    };
    let snapshot = db.snapshot().await;
    let same = admin
        .upsert_client(expect(machine_spec("app"), &fingerprint))
        .await
        .unwrap()
        .into_inner();
    crate::harness::admin::assert_upsert_outcome(&same, "unchanged");
    assert_eq!(same.generated_secret, None);
    assert_eq!(db.snapshot().await, snapshot, "nothing written");

    // Not the current secret's, or no such client: refused, nothing written.
    for (id, fp) in [
        ("app", "AAAAAAAAAAAAAAAAAAAAAA"),
        ("app", ""),
        ("other", fingerprint.as_str()),
    ] {
        let e = admin
            .upsert_client(expect(machine_spec(id), fp))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Aborted, "{id} {fp:?}: {e:?}");
        assert_eq!(
            db.snapshot().await,
            snapshot,
            "{id} {fp:?}: nothing written"
        );
    }

    // A spec change with the known secret: updated, the secret kept.
    let changed = admin
        .upsert_client(expect(
            ClientSpec {
                scopes: vec!["read".into()],
                ..machine_spec("app")
            },
            &fingerprint,
        ))
        .await
        .unwrap()
        .into_inner();
    crate::harness::admin::assert_upsert_outcome(&changed, "updated");
    assert_eq!(changed.client.unwrap().secret_fingerprint, fingerprint);
    token(&server, &creds, &[("scope", "read")]).await.ok();

    // After a rotation the old fingerprint names the previous secret, not the current.
    admin
        .rotate_client_secret(authed(RotateClientSecretRequest {
            tenant_id: "main".into(),
            client_id: "app".into(),
            supplied_secret: None,
            overlap_seconds: 60,
        }))
        .await
        .unwrap();
    let e = admin
        .upsert_client(expect(machine_spec("app"), &fingerprint))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
}

#[allow(clippy::too_many_lines)] // the tenant life cycle, asserted step by step
async fn tenants_are_upserted_read_and_deleted(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (server, mut admin) = serve_with_admin(&db).await;
    let issuer = db.issuer("/t/acme");
    let request = || UpsertTenantRequest {
        id: "acme".into(),
        issuer: issuer.clone(),
        display_name: "ACME".into(),
        settings_json: r#"{"session_lifetime_seconds":3600}"#.into(),
    };
    let r = admin
        .upsert_tenant(authed(request()))
        .await
        .unwrap()
        .into_inner();
    assert!(r.changed);
    let t = r.tenant.unwrap();
    assert_eq!(
        (t.id.as_str(), t.issuer.as_str()),
        ("acme", issuer.as_str())
    );
    let again = admin
        .upsert_tenant(authed(request()))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed, "an unchanged upsert reports no change");

    let got = admin
        .get_tenant(authed(GetTenantRequest { id: "acme".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.display_name, "ACME");
    let settings: serde_json::Value = serde_json::from_str(&got.settings_json).unwrap();
    assert_eq!(settings["session_lifetime_seconds"], 3600);

    // The running server routes the new issuer within a second.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, _, doc) = server
            .get_json("/t/acme/.well-known/openid-configuration")
            .await;
        if status == 200 {
            assert_eq!(doc["issuer"], issuer.as_str());
            break;
        }
        assert!(Instant::now() < deadline, "new tenant not routed: {status}");
        tokio::time::sleep(POLL).await;
    }

    // Another tenant may not claim the same issuer.
    let e = admin
        .upsert_tenant(authed(UpsertTenantRequest {
            id: "copycat".into(),
            ..request()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    // Security review, item 10: nor one that routes the same (scheme and host case,
    // default port, trailing slash), which would share every request with it.
    admin
        .upsert_tenant(authed(UpsertTenantRequest {
            id: "named".into(),
            issuer: "http://localhost/t/named".into(),
            ..request()
        }))
        .await
        .unwrap();
    let before = db.snapshot().await;
    for variant in [
        "HTTP://LocalHost/t/named",
        "http://localhost:80/t/named/",
        "http://LOCALHOST:80/t/named//",
    ] {
        let e = admin
            .upsert_tenant(authed(UpsertTenantRequest {
                id: "copycat".into(),
                issuer: variant.into(),
                ..request()
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{variant}: {e:?}");
    }
    // A different path or port is another issuer.
    for (id, other) in [
        ("deeper", "http://localhost/t/named/x"),
        ("port", "http://localhost:81/t/named"),
    ] {
        admin
            .upsert_tenant(authed(UpsertTenantRequest {
                id: id.into(),
                issuer: other.into(),
                ..request()
            }))
            .await
            .unwrap();
        admin
            .delete_tenant(authed(DeleteTenantRequest { id: id.into() }))
            .await
            .unwrap();
    }
    assert_eq!(db.snapshot().await, before);

    let deleted = admin
        .delete_tenant(authed(DeleteTenantRequest { id: "acme".into() }))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted);
    let e = admin
        .get_tenant(authed(GetTenantRequest { id: "acme".into() }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let again = admin
        .delete_tenant(authed(DeleteTenantRequest { id: "acme".into() }))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.deleted);
    let events: Vec<String> = db
        .audit()
        .await
        .into_iter()
        .map(|r| r.split('|').take(3).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(
        events,
        [
            "tenant.upserted|admin-api|acme",
            "tenant.upserted|admin-api|named",
            "tenant.upserted|admin-api|deeper",
            "tenant.deleted|admin-api|deeper",
            "tenant.upserted|admin-api|port",
            "tenant.deleted|admin-api|port",
            "tenant.deleted|admin-api|acme"
        ]
    );
}

async fn kids(admin: &mut AdminClient<Channel>) -> Vec<String> {
    let mut kids: Vec<String> = admin
        .list_signing_keys(authed(ListSigningKeysRequest {
            tenant_id: "main".into(),
            policy: None,
        }))
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    kids.sort();
    kids
}

async fn signing_keys_are_rotated_and_imported(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (server, mut admin) = serve_with_admin(&db).await;
    let initial = kids(&mut admin).await;
    assert_eq!(initial.len(), 3);
    assert_eq!(server.kids("/jwks").await, initial);

    let rotated = admin
        .rotate_signing_keys(authed(RotateSigningKeysRequest {
            tenant_id: "main".into(),
            mode: "force".into(),
            policy: None,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.created.len(), 3);
    let new_kids: Vec<String> = rotated.created.iter().map(|k| k.kid.clone()).collect();
    server
        .wait_for_kids("/jwks", Duration::from_secs(2), |kids| {
            new_kids.iter().all(|k| kids.contains(k))
        })
        .await;

    // A PKCS#8 PEM made here: its kid is the RFC 7638 thumbprint of its public key.
    let key = ClientKey::es256();
    let import = |pem: String| ImportSigningKeyRequest {
        tenant_id: "main".into(),
        alg: "ES256".into(),
        private_key_pem: pem,
        policy: None,
    };
    let r = admin
        .import_signing_key(authed(import(key.pem())))
        .await
        .unwrap()
        .into_inner();
    assert!(r.imported);
    assert_eq!(r.kid, key.kid);
    server
        .wait_for_kids("/jwks", Duration::from_secs(2), |kids| {
            kids.contains(&key.kid)
        })
        .await;
    let before = db.snapshot().await;
    let again = admin
        .import_signing_key(authed(import(key.pem())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.kid.as_str(), again.imported),
        (key.kid.as_str(), false)
    );

    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n";
    assert_invalid(
        admin.import_signing_key(authed(import(sec1.into()))).await,
        "private_key_pem",
    );
    let not_a_key = crate::harness::jose::pkcs8_pem(b"definitely not DER");
    assert_invalid(
        admin.import_signing_key(authed(import(not_a_key))).await,
        "private_key_pem",
    );
    let ed = ClientKey::ed25519();
    assert_invalid(
        admin.import_signing_key(authed(import(ed.pem()))).await,
        "private_key_pem",
    );
    assert_eq!(db.snapshot().await, before);

    let audit = db.audit().await;
    let rotated_events = audit
        .iter()
        .filter(|r| r.starts_with("signing_key.rotated|admin-api|"))
        .count();
    assert_eq!(rotated_events, 3, "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|r| r.starts_with(&format!("signing_key.imported|admin-api|{}|", key.kid))),
        "{audit:?}"
    );

    assert!(
        rotated.created.iter().all(|k| k.state == "pending"),
        "{rotated:?}"
    );
}

/// Mode `now` (a compromised key): the new keys sign at once and are all the JWKS has
/// left; the audit trail says it was an emergency rotation.
async fn an_emergency_rotation_signs_at_once_and_withdraws_the_previous_keys(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let (server, mut admin) = serve_with_admin(&db).await;
    let scheduled = admin
        .rotate_signing_keys(authed(RotateSigningKeysRequest {
            tenant_id: "main".into(),
            mode: "force".into(),
            policy: None,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        scheduled
            .created
            .iter()
            .all(|k| k.state == "pending" && k.key_state() == proto::KeyState::Pending),
        "{scheduled:?}"
    );
    let emergency = admin
        .rotate_signing_keys(authed(RotateSigningKeysRequest {
            tenant_id: "main".into(),
            // The typed field wins over the legacy name.
            rotation: proto::RotationMode::Now.into(),
            mode: "if_due".into(),
            policy: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(emergency.created.len(), 3);
    assert!(
        emergency.created.iter().all(|k| k.state == "active"),
        "{emergency:?}"
    );
    let mut created: Vec<String> = emergency.created.iter().map(|k| k.kid.clone()).collect();
    created.sort();
    let listed = emergency.key_set.unwrap_or_default().keys;
    assert_eq!(
        listed.iter().filter(|k| k.state == "retired").count(),
        6,
        "{listed:?}"
    );
    server
        .wait_for_kids("/jwks", Duration::from_secs(2), |kids| {
            kids == created.as_slice()
        })
        .await;
    let audit = db.audit().await;
    let events = audit
        .iter()
        .filter(|r| r.starts_with("signing_key.rotated_now|admin-api|"))
        .count();
    assert_eq!(events, 3, "{audit:?}");
}
