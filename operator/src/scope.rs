//! Which objects this operator reconciles: the namespaces it watches (`--watch-namespaces`,
//! least privilege: Roles in those namespaces instead of a ClusterRole over Secrets) and
//! its instance (`--instance`, so two releases in one cluster never reconcile each other's
//! objects), and the names that keep two instances' own objects apart.
//!
//! Instances select objects by the label [`INSTANCE_LABEL`]. The default instance (no
//! `--instance`) takes the objects *without* the label rather than all objects: that keeps
//! every existing, unlabelled install working unchanged, and it keeps the default instance
//! away from objects labelled for another one, so the selections of any two instances are
//! disjoint. "All objects" would make a default release fight every named release.

use std::collections::BTreeMap;

use kube::Api;
use kube::runtime::watcher;

pub use crds::INSTANCE_LABEL;

/// The longest instance name: it is a label value (63) and a suffix of object names.
const INSTANCE_MAX: usize = 63;

/// Where the namespaced custom resources (OidcClients) and the Secrets next to them are
/// watched, and which instance's objects are reconciled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The watched namespaces, sorted and without duplicates; empty means cluster-wide.
    namespaces: Vec<String>,
    /// `--instance`; `None` for the default instance.
    instance: Option<String>,
}

/// Whether `value` is a DNS-1123 label (a namespace name; also a valid label value).
fn dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= INSTANCE_MAX
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

impl Scope {
    /// Parses `--watch-namespaces` (comma-separated; blanks around names ignored; empty
    /// for cluster-wide) and `--instance` (empty for the default instance). Errors name
    /// the flag.
    pub fn parse(watch_namespaces: &str, instance: &str) -> Result<Self, String> {
        let mut namespaces = Vec::new();
        for name in watch_namespaces.split(',').map(str::trim) {
            if name.is_empty() {
                // "a,,b" or a trailing comma is a typo, but an unambiguous one; an
                // entirely empty value is the cluster-wide default.
                continue;
            }
            if !dns_label(name) {
                return Err(format!(
                    "--watch-namespaces: {name:?} is not a namespace name (lowercase letters, \
                     digits and '-', at most 63)"
                ));
            }
            namespaces.push(name.to_owned());
        }
        if namespaces.is_empty() && !watch_namespaces.trim().is_empty() {
            // "," alone would silently mean cluster-wide: the opposite of what was asked.
            return Err(format!(
                "--watch-namespaces: {watch_namespaces:?} names no namespace; leave it empty \
                 for cluster-wide"
            ));
        }
        namespaces.sort();
        namespaces.dedup();
        let instance = instance.trim();
        let instance = if instance.is_empty() {
            None
        } else if dns_label(instance) {
            Some(instance.to_owned())
        } else {
            return Err(format!(
                "--instance: {instance:?} is not valid (lowercase letters, digits and '-', \
                 at most 63; it is a label value and part of object names)"
            ));
        };
        Ok(Self {
            namespaces,
            instance,
        })
    }

    /// The watched namespaces; empty when cluster-wide.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Whether the operator watches `namespace` (always, when cluster-wide).
    pub fn watches(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }

    /// The instance name; `None` for the default instance.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// The label selector of this instance's objects: `gatehouse.dev/instance=<name>`, or
    /// for the default instance `!gatehouse.dev/instance` (objects without the label).
    pub fn selector(&self) -> String {
        match &self.instance {
            Some(name) => format!("{INSTANCE_LABEL}={name}"),
            None => format!("!{INSTANCE_LABEL}"),
        }
    }

    /// Whether an object with `labels` belongs to this instance (what [`Self::selector`]
    /// asks the API server for).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get(INSTANCE_LABEL).map(String::as_str) == self.instance.as_deref()
    }

    /// `selector` narrowed to this instance's objects (the `.owns()` watches).
    pub fn narrow(&self, selector: &str) -> String {
        format!("{selector},{}", self.selector())
    }

    /// The watcher configuration of the custom resources: this instance's objects only.
    pub fn watcher_config(&self) -> watcher::Config {
        watcher::Config::default()
            .any_semantic()
            .labels(&self.selector())
    }

    /// One `Api` per watched namespace, or one over all namespaces when cluster-wide. One
    /// watch per namespace (never one reflector over several namespaced watches: each
    /// watch's relist would wipe the other namespaces from a shared store).
    pub fn apis<K>(&self, client: &kube::Client) -> Vec<Api<K>>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        if self.namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        }
    }

    /// The labels this instance adds to what it creates: the instance label, when named.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.instance
            .iter()
            .map(|name| (INSTANCE_LABEL.to_owned(), name.clone()))
            .collect()
    }

    /// `base`, or `base-<instance>` for a named instance: the leader Lease and the status
    /// ConfigMap, so two instances sharing a namespace neither elect one leader between
    /// them nor read each other's migration record.
    pub fn name(&self, base: &str) -> String {
        match &self.instance {
            Some(name) => format!("{base}-{name}"),
            None => base.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_empty_namespace_list_is_cluster_wide() {
        let s = Scope::parse("", "").unwrap();
        assert!(s.namespaces().is_empty());
        assert!(s.watches("anything"));
        let s = Scope::parse("  ", "").unwrap();
        assert!(s.namespaces().is_empty());
    }

    #[test]
    fn namespaces_are_trimmed_sorted_and_deduplicated() {
        let s = Scope::parse(" shop, billing ,shop,", "").unwrap();
        assert_eq!(s.namespaces(), ["billing", "shop"]);
        assert!(s.watches("shop"));
        assert!(!s.watches("kube-system"));
    }

    #[test]
    fn bad_namespace_lists_name_the_flag() {
        for bad in ["Shop", "shop,-x", "a_b", ",", " , ", &"n".repeat(64)] {
            let err = Scope::parse(bad, "").unwrap_err();
            assert!(err.starts_with("--watch-namespaces:"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn bad_instance_names_name_the_flag() {
        for bad in ["Blue", "blue_green", "-blue", &"i".repeat(64)] {
            let err = Scope::parse("", bad).unwrap_err();
            assert!(err.starts_with("--instance:"), "{bad:?}: {err}");
        }
        assert_eq!(Scope::parse("", " blue ").unwrap().instance(), Some("blue"));
    }

    #[test]
    fn the_default_instance_selects_only_objects_without_the_label() {
        let s = Scope::parse("", "").unwrap();
        assert_eq!(s.selector(), "!gatehouse.dev/instance");
        assert!(s.selects(&labels(&[])));
        assert!(s.selects(&labels(&[("team", "shop")])));
        assert!(!s.selects(&labels(&[(INSTANCE_LABEL, "blue")])));
        assert!(s.labels().is_empty(), "nothing added to what it creates");
        assert_eq!(s.name("gatehouse-operator"), "gatehouse-operator");
    }

    #[test]
    fn a_named_instance_selects_only_its_own_objects() {
        let s = Scope::parse("", "blue").unwrap();
        assert_eq!(s.selector(), "gatehouse.dev/instance=blue");
        assert!(s.selects(&labels(&[(INSTANCE_LABEL, "blue")])));
        assert!(!s.selects(&labels(&[(INSTANCE_LABEL, "green")])));
        assert!(
            !s.selects(&labels(&[])),
            "unlabelled objects are the default's"
        );
        assert_eq!(s.labels(), labels(&[(INSTANCE_LABEL, "blue")]));
        assert_eq!(s.name("gatehouse-operator"), "gatehouse-operator-blue");
        assert_eq!(
            s.narrow("app.kubernetes.io/managed-by=gatehouse-operator"),
            "app.kubernetes.io/managed-by=gatehouse-operator,gatehouse.dev/instance=blue"
        );
    }

    #[test]
    fn the_watcher_asks_the_api_server_for_the_instance_selector() {
        let c = Scope::parse("", "blue").unwrap().watcher_config();
        assert_eq!(
            c.label_selector.as_deref(),
            Some("gatehouse.dev/instance=blue")
        );
        let c = Scope::default().watcher_config();
        assert_eq!(c.label_selector.as_deref(), Some("!gatehouse.dev/instance"));
    }

    #[tokio::test]
    async fn one_api_per_watched_namespace() {
        // A client that is never called: building an Api sends nothing.
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = kube::Client::new(service, "default");
        let all: Vec<Api<k8s_openapi::api::core::v1::Secret>> = Scope::default().apis(&client);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].namespace(), None);
        let some: Vec<Api<k8s_openapi::api::core::v1::Secret>> =
            Scope::parse("shop,billing", "").unwrap().apis(&client);
        let namespaces: Vec<_> = some.iter().map(|a| a.namespace()).collect();
        assert_eq!(namespaces, [Some("billing"), Some("shop")]);
    }
}
