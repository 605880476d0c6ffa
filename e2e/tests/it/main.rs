//! The e2e crate's one integration-test binary (STYLE §7: each file in `tests/` links
//! separately, so everything lives in modules here).
//!
//! - `api`: a kube `Client` against the fake API server (CRUD, errors, list/watch,
//!   server-side apply with field ownership and conflicts, finalizers, status,
//!   generation, garbage collection, schemas);
//! - `controller`: a real `kube::runtime::Controller` reconciling through the fake;
//! - `crd_upgrade`: the CRD upgrade runbook (new CRDs applied server-side first);
//! - `kubelet`: Jobs and CronJobs run as local processes;
//! - `rbac`: ServiceAccount clients authenticated by token and authorized by RBAC;
//! - `scenario`: issue 6's end-to-end scenario, local (fake) or on a real cluster.

// All of this crate is test code, but clippy.toml's allow-*-in-tests only covers
// `#[test]` functions, not the helpers they share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod controller;
mod crd_upgrade;
mod kubelet;
mod rbac;
mod scenario;
mod support;
