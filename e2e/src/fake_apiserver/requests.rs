//! Counts of the requests the fake answered, by user, verb and resource, as a real API
//! server's `apiserver_request_total` metric counts them (verb and resource as its
//! `RequestInfo` names them: `get`, `list`, `watch`, `create`, `patch`, …; `secrets`,
//! `oidcclients/status`). For measuring what a controller costs the API server (the
//! operator-scale benchmark), never for asserting timing.

use std::collections::BTreeMap;
use std::fmt;

use super::rbac::RequestInfo;

/// The user name the harness's requests (no credentials) are counted under.
pub const HARNESS: &str = "(harness)";

/// What a request is counted by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    /// The authenticated user's name, or [`HARNESS`].
    pub user: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// for a non-resource path (discovery) the lower-case method.
    pub verb: String,
    /// `plural[.group][/subresource]` (`oidcclients.gatehouse.dev/status`, `secrets`), or
    /// the path of a non-resource request (`/version`, `/apis`).
    pub resource: String,
}

impl RequestKey {
    pub(crate) fn new(user: Option<&str>, info: &RequestInfo) -> Self {
        let resource = if info.resource_request {
            let mut r = info.resource.clone();
            if !info.group.is_empty() {
                r = format!("{r}.{}", info.group);
            }
            if !info.subresource.is_empty() {
                r = format!("{r}/{}", info.subresource);
            }
            r
        } else {
            info.path.clone()
        };
        Self {
            user: user.unwrap_or(HARNESS).to_owned(),
            verb: info.verb.clone(),
            resource,
        }
    }
}

impl fmt::Display for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.user, self.verb, self.resource)
    }
}

/// A snapshot of the counts; [`RequestCounts::since`] gives the requests of a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts(pub BTreeMap<RequestKey, u64>);

impl RequestCounts {
    pub(crate) fn record(&mut self, key: RequestKey) {
        *self.0.entry(key).or_default() += 1;
    }

    /// The requests counted here and not in `earlier` (a snapshot taken before).
    #[must_use]
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts(
            self.0
                .iter()
                .filter_map(|(k, n)| {
                    let before = earlier.0.get(k).copied().unwrap_or(0);
                    (*n > before).then(|| (k.clone(), n - before))
                })
                .collect(),
        )
    }

    /// Only the requests of `user`.
    #[must_use]
    pub fn of(&self, user: &str) -> RequestCounts {
        RequestCounts(
            self.0
                .iter()
                .filter(|(k, _)| k.user == user)
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
        )
    }

    /// The number of requests.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The number of requests with `verb` on `resource`.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.verb == verb && k.resource == resource)
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, path: &str, query: &[(&str, &str)]) -> RequestInfo {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RequestInfo::parse(method, path, &query)
    }

    #[test]
    fn requests_are_keyed_like_the_api_servers_request_metric() {
        let status = RequestKey::new(
            Some("op"),
            &info(
                "PATCH",
                "/apis/gatehouse.dev/v1alpha1/namespaces/a/oidcclients/web/status",
                &[],
            ),
        );
        assert_eq!(status.verb, "patch");
        assert_eq!(status.resource, "oidcclients.gatehouse.dev/status");
        let watch = RequestKey::new(None, &info("GET", "/api/v1/secrets", &[("watch", "1")]));
        assert_eq!(
            (
                watch.user.as_str(),
                watch.verb.as_str(),
                watch.resource.as_str()
            ),
            (HARNESS, "watch", "secrets")
        );
        let discovery = RequestKey::new(Some("op"), &info("GET", "/version", &[]));
        assert_eq!(
            (discovery.verb.as_str(), discovery.resource.as_str()),
            ("get", "/version")
        );
    }

    #[test]
    fn a_window_holds_only_the_requests_made_in_it() {
        let get = RequestKey::new(
            Some("op"),
            &info("GET", "/api/v1/namespaces/a/secrets/s", &[]),
        );
        let list = RequestKey::new(Some("other"), &info("GET", "/api/v1/secrets", &[]));
        let mut counts = RequestCounts::default();
        counts.record(get.clone());
        let before = counts.clone();
        counts.record(get.clone());
        counts.record(get.clone());
        counts.record(list);
        let window = counts.since(&before);
        assert_eq!(window.count("get", "secrets"), 2);
        assert_eq!(window.total(), 3);
        assert_eq!(window.of("op").total(), 2);
        assert_eq!(counts.of("op").since(&before).0.get(&get), Some(&2));
    }
}
