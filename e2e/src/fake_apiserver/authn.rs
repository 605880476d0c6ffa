//! Authentication: bearer tokens the fake issued map to a user, as a real API server's
//! token authenticators do; a request without credentials is the test harness, which
//! stays a cluster admin (neither authenticated as anyone nor authorized).
//!
//! Like kube-apiserver: every authenticated user is in `system:authenticated`; a
//! ServiceAccount's user is `system:serviceaccount:<namespace>:<name>` in the groups
//! `system:serviceaccounts` and `system:serviceaccounts:<namespace>`, and its token stops
//! working (401) while the ServiceAccount object does not exist, as bound tokens do when
//! their ServiceAccount is deleted. An unknown token is 401 `Unauthorized`.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::http::{HeaderMap, header};
use ring::rand::{SecureRandom as _, SystemRandom};

use super::error::{ApiError, Result};
use super::store::Store;

/// The group every authenticated user is in.
pub(crate) const AUTHENTICATED: &str = "system:authenticated";
/// The prefix of a ServiceAccount's user name.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Who a request is from: what RBAC subjects (`User`, `Group`, `ServiceAccount`) match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// The user name (`system:serviceaccount:ns:sa` for a ServiceAccount).
    pub name: String,
    /// The groups, `system:authenticated` included.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user in `groups` and, as every authenticated user, `system:authenticated`.
    pub fn new(
        name: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let mut groups: Vec<String> = groups.into_iter().map(Into::into).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_owned());
        }
        Self {
            name: name.into(),
            groups,
        }
    }

    /// The identity of ServiceAccount `namespace/name`'s tokens.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self::new(
            format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
            [
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
            ],
        )
    }

    /// `(namespace, name)` when this is a ServiceAccount's user.
    pub(crate) fn as_service_account(&self) -> Option<(&str, &str)> {
        self.name
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)?
            .split_once(':')
    }
}

/// The tokens the fake issued.
#[derive(Default)]
pub(crate) struct Tokens {
    users: HashMap<String, UserInfo>,
}

impl Tokens {
    /// The token of `user`, issued on first use (one per user, like a long-lived token).
    pub(crate) fn token_for(&mut self, user: &UserInfo) -> String {
        if let Some((token, _)) = self.users.iter().find(|(_, u)| *u == user) {
            return token.clone();
        }
        let mut bytes = [0u8; 24];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source works");
        let token = bytes.iter().fold(String::from("fake."), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        self.users.insert(token.clone(), user.clone());
        token
    }

    /// The user of a request: `None` without an `Authorization` header (the harness),
    /// the token's user for a known bearer token, else 401.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        store: &Store,
    ) -> Result<Option<UserInfo>> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let user = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| self.users.get(token.trim()))
            .ok_or_else(ApiError::unauthorized)?;
        if let Some((namespace, name)) = user.as_service_account() {
            let exists = store
                .resource("", "v1", "serviceaccounts")
                .is_some_and(|sa| store.get(&sa, Some(namespace), name).is_ok());
            if !exists {
                return Err(ApiError::unauthorized());
            }
        }
        Ok(Some(user.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_account_user_is_named_and_grouped_like_kube_apiserver_does() {
        let user = UserInfo::service_account("gatehouse", "gatehouse-operator");
        assert_eq!(
            user.name,
            "system:serviceaccount:gatehouse:gatehouse-operator"
        );
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:gatehouse",
                "system:authenticated"
            ]
        );
        assert_eq!(
            user.as_service_account(),
            Some(("gatehouse", "gatehouse-operator"))
        );
    }

    #[test]
    fn every_user_is_authenticated_once() {
        let user = UserInfo::new("alice", ["dev", AUTHENTICATED]);
        assert_eq!(user.groups, ["dev", AUTHENTICATED]);
        assert_eq!(
            UserInfo::new("bob", Vec::<String>::new()).groups,
            [AUTHENTICATED]
        );
        assert_eq!(UserInfo::new("bob", ["x"]).as_service_account(), None);
    }

    #[test]
    fn one_token_per_user() {
        let mut tokens = Tokens::default();
        let alice = UserInfo::new("alice", ["dev"]);
        let a = tokens.token_for(&alice);
        assert_eq!(tokens.token_for(&alice), a);
        assert_ne!(tokens.token_for(&UserInfo::new("bob", ["dev"])), a);
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        h
    }

    #[test]
    fn a_token_authenticates_its_service_account_while_that_exists() {
        let (changed, _) = tokio::sync::watch::channel(0);
        let mut store = Store::new(100, changed, None);
        store.ensure_namespace("gatehouse").unwrap();
        let mut tokens = Tokens::default();
        let user = UserInfo::service_account("gatehouse", "op");
        let bearer = format!("Bearer {}", tokens.token_for(&user));

        // No credentials: the harness.
        assert_eq!(
            tokens.authenticate(&HeaderMap::new(), &store).unwrap(),
            None
        );
        // Unknown token, other scheme: 401.
        for h in [
            "Bearer nope",
            "Basic YTpi",
            bearer.trim_start_matches("Bearer "),
        ] {
            let e = tokens.authenticate(&headers(h), &store).unwrap_err();
            assert_eq!(
                (e.code, e.reason, &*e.message),
                (401, "Unauthorized", "Unauthorized")
            );
        }
        // The ServiceAccount does not exist (yet): 401.
        assert_eq!(
            tokens
                .authenticate(&headers(&bearer), &store)
                .unwrap_err()
                .code,
            401
        );
        let sa = store.resource("", "v1", "serviceaccounts").unwrap();
        store
            .create(
                &sa,
                Some("gatehouse"),
                serde_json::json!({"metadata": {"name": "op"}}),
                "t",
                false,
            )
            .unwrap();
        assert_eq!(
            tokens.authenticate(&headers(&bearer), &store).unwrap(),
            Some(user)
        );
    }
}
