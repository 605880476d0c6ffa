//! The authorization request parser: any parameters against a registered client.
#![no_main]

use authserver::authorize::request::validate;
use authserver::domain::client::{ClientSpec, ClientType, GrantType};
use authserver::domain::policy::TenantPolicy;
use authserver::oauth::form::Form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(params) = Form::parse(Some("application/x-www-form-urlencoded"), data) else {
        return;
    };
    let policy = TenantPolicy::default();
    for client_type in [ClientType::Confidential, ClientType::Public] {
        let client = ClientSpec {
            client_id: "app".into(),
            client_type,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            redirect_uris: vec![
                "https://app.example.com/cb".into(),
                "http://127.0.0.1/cb".into(),
            ],
            scopes: vec!["openid".into(), "email".into(), "offline_access".into()],
            ..ClientSpec::default()
        };
        if let Ok(req) = validate(&params, &client, &policy) {
            // Whatever was accepted is one of the registered redirect URIs' shapes.
            assert!(!req.redirect_uri.is_empty());
        }
    }
});
