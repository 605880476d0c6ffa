//! The directory of tenants by issuer: every tenant with its parsed issuer route,
//! cached per pod and refreshed on change (see `crate::cache`). HTTP routing
//! (`http::tenant_routing`) asks it which tenant owns a request's address.

use std::sync::Arc;

use crate::cache::{Cached, DEFAULT_TTL, Epoch};
use crate::domain::tenant::{IssuerRoute, Tenant};
use crate::store::{self, Store};

/// Issuer routes, longest path first.
type Routes = Vec<(IssuerRoute, Arc<Tenant>)>;

/// All tenants with their parsed issuer routes, cached per pod.
#[derive(Debug)]
pub struct TenantDirectory {
    store: Store,
    cache: Cached<(), Arc<Routes>>,
}

impl TenantDirectory {
    pub fn new(store: Store, epoch: &Epoch) -> Self {
        Self {
            store,
            cache: Cached::new(epoch.clone(), DEFAULT_TTL),
        }
    }

    async fn routes(&self) -> store::Result<Arc<Routes>> {
        if let Some(r) = self.cache.get(&()) {
            return Ok(r);
        }
        // Boxed: the query's future would otherwise be part of every request's routing
        // future, copied whole each time that future is boxed, hit or miss.
        Box::pin(self.load()).await
    }

    async fn load(&self) -> store::Result<Arc<Routes>> {
        let epoch = self.cache.begin_load();
        let tenants = match self.store.list_tenants().await {
            Ok(t) => t,
            // This load found the outage: serve what memory may serve (see `crate::cache`).
            Err(e) if e.is_unavailable() => return self.cache.get(&()).ok_or(e),
            Err(e) => return Err(e),
        };
        let mut routes: Vec<_> = tenants
            .into_iter()
            .filter_map(|t| IssuerRoute::parse(&t.issuer).map(|r| (r, Arc::new(t))))
            .collect();
        // Longest path first, so `/t/acme/x` beats a host-level issuer on the same host.
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.path.len()));
        let routes = Arc::new(routes);
        self.cache.insert((), epoch, Arc::clone(&routes));
        Ok(routes)
    }

    /// The tenant owning `path` on `authority`, and the path relative to its issuer.
    pub async fn resolve(
        &self,
        https: Option<bool>,
        authority: &str,
        path: &str,
    ) -> store::Result<Option<(Arc<Tenant>, String)>> {
        let routes = self.routes().await?;
        Ok(routes.iter().find_map(|(route, tenant)| {
            route
                .strip(https, authority, path)
                .map(|rest| (Arc::clone(tenant), rest.to_owned()))
        }))
    }
}
