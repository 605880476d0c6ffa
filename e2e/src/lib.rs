//! Gatehouse end-to-end tests.
//!
//! - [`fake_apiserver`]: an in-memory Kubernetes API server that kube-runtime controllers
//!   (the operator included) run against without a cluster — the "local" mode.
//! - [`kubelet`]: the fake's kubelet, which runs Jobs (and manually triggered CronJobs)
//!   as local processes.
//!
//! The scenario shared by the local and the cluster mode lives in `tests/it/scenario.rs`;
//! `README.md` says how to run both and what the fake does not model.

pub mod fake_apiserver;
pub mod kubelet;

pub use fake_apiserver::{FakeApiServer, Options, UserInfo};
pub use kubelet::{ImageMapping, JobRun, KubeletError};
