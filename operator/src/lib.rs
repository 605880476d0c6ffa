//! Gatehouse operator: reconciles IdentityTenant, OidcClient and SigningKeySet resources
//! into the auth server (through its admin gRPC API only: the operator never holds the
//! database password or `ENCRYPTION_KEY`), credentials Secrets, purge CronJobs and the
//! schema migration Job.
//!
//! [`run`] wires it up: probes, leader election, the migration gate and one kube-runtime
//! `Controller` per resource ([`tenant`], [`client`], [`keyset`]) — for OidcClients one
//! per watched namespace with `--watch-namespaces` ([`scope`]).

pub mod admin_client;
pub mod args;
pub mod authserver_pod;
pub mod bootstrap;
pub mod client;
pub mod context;
pub mod controller;
pub mod health;
pub mod keyset;
pub mod leader;
pub mod metrics;
pub mod migration;
pub mod probes;
pub mod scope;
pub mod settled;
pub mod telemetry;
pub mod tenant;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;

use anyhow::Context as _;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;

use crate::admin_client::GrpcAdmin;
use crate::args::Args;
use crate::context::{Context, Events, SystemClock};
use crate::metrics::Metrics;
use crate::migration::MigrationState;

/// Resolves when `rx` turns true (or its sender is gone).
async fn turned_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Sets `tx` to true on SIGTERM or SIGINT.
fn on_signal(tx: watch::Sender<bool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        tx.send_replace(true);
    });
    Ok(())
}

/// Runs the operator until SIGTERM/SIGINT or until it loses the leader Lease (both
/// `Ok`: after a loss the process exits 0 and restarts as a standby, with clean state).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config().map_err(anyhow::Error::msg)?;
    // The token file may not exist yet (its Secret is bootstrapped below once this
    // replica leads); calls fail as unauthenticated until it does.
    let admin = GrpcAdmin::from_flags(
        &args.admin_addr,
        args.admin_ca_file.as_deref(),
        &args.admin_token_file,
    )
    .map_err(anyhow::Error::msg)?;
    let identity = args.identity();

    let (stop_tx, stop) = watch::channel(false);
    on_signal(stop_tx.clone())?;
    let metrics = Arc::new(Metrics::new());
    let (ready_tx, ready) = watch::channel(false);
    let (leader_tx, leader) = watch::channel(!args.leader_election);
    let probes = tokio::spawn(probes::serve(
        args.probe_addr,
        probes::ProbeState {
            metrics: Arc::clone(&metrics),
            ready,
            leader: leader.clone(),
            health_threshold: health::threshold(config.resync),
        },
        stop.clone(),
    ));

    // Every LIST and WATCH of the custom resources also tells /healthz whether the
    // controllers still see their objects.
    let kube_config = kube::Config::infer()
        .await
        .context("failed to configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let client = kube::client::ClientBuilder::try_from(kube_config)
        .context("failed to configure the Kubernetes client (in-cluster or KUBECONFIG)")?
        .with_layer(&health::WatchHealthLayer::new(Arc::clone(&metrics.health)))
        .build();
    let version = client
        .apiserver_version()
        .await
        .context("failed to reach the Kubernetes API server")?;
    tracing::info!(
        kubernetes = %version.git_version,
        %identity,
        admin = %args.admin_addr,
        image = %config.authserver_image,
        "starting"
    );
    ready_tx.send_replace(true);

    let clock: Arc<dyn context::Clock> = Arc::new(SystemClock);
    // The Lease is released only once the controllers stopped (or never started).
    let (release_tx, release) = watch::channel(false);
    let elector = if args.leader_election {
        let candidate = leader::Candidate {
            namespace: config.namespace.clone(),
            lease: config.scope.name(leader::LEASE_NAME),
            identity: identity.clone(),
        };
        Some(tokio::spawn(leader::run(
            leader::Elector::new(client.clone(), candidate, clock.clone()),
            leader_tx,
            Arc::clone(&metrics),
            release,
        )))
    } else {
        metrics.leader.set(1);
        drop(leader_tx);
        None
    };

    // Standby until leader (or told to stop).
    tokio::select! {
        () = turned_true(leader.clone()) => {}
        () = turned_true(stop.clone()) => {}
    }
    let mut lost_lease = false;
    if !*stop.borrow() {
        let setup = Setup {
            bootstrap: args.bootstrap(),
            client,
            admin,
            config,
            identity,
            clock,
            metrics,
        };
        lost_lease = lead(setup, leader, stop.clone()).await;
    }

    release_tx.send_replace(true);
    stop_tx.send_replace(true);
    if let Some(elector) = elector {
        let _ = elector.await;
    }
    if let Ok(Err(e)) = probes.await {
        tracing::warn!(error = %e, "probe server failed");
    }
    if lost_lease {
        // Not an error: during an API server upgrade or a network partition this is the
        // election working. Exiting 0 restarts the pod as a standby with clean state.
        tracing::warn!("lost the leader Lease: exiting to restart as a standby");
    } else {
        tracing::info!("stopped");
    }
    Ok(())
}

/// What the leader needs to run the controllers.
struct Setup {
    bootstrap: Vec<bootstrap::Wanted>,
    client: kube::Client,
    admin: GrpcAdmin,
    config: context::Config,
    identity: String,
    clock: Arc<dyn context::Clock>,
    metrics: Arc<Metrics>,
}

/// Runs the migration gate and the three controllers until `stop` or until leadership
/// is lost; returns whether leadership was lost.
async fn lead(
    setup: Setup,
    mut leading: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) -> bool {
    let Setup {
        bootstrap,
        client,
        admin,
        config,
        identity,
        clock,
        metrics,
    } = setup;
    tracing::info!(%identity, "leading: starting the controllers");
    // Stop the controllers on SIGTERM, or when the Lease is lost.
    let (halt_tx, halt) = watch::channel(false);
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = turned_true(stop) => {}
                () = async {
                    while *leading.borrow_and_update() {
                        if leading.changed().await.is_err() {
                            // No election (single replica): lead until stopped.
                            std::future::pending::<()>().await;
                        }
                    }
                } => tracing::error!("lost the leader Lease: stopping the controllers"),
            }
            halt_tx.send_replace(true);
        });
    }

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "gatehouse-operator".to_owned(),
            instance: Some(identity),
        },
    );
    let events = Events::Kube(Arc::new(recorder));
    // Before anything needs them: the auth pods wait (unready) for these Secrets, and the
    // migration Job started next reads the ENCRYPTION_KEY from one of them.
    if !bootstrap.is_empty()
        && let Err(e) = bootstrap::ensure(&client, &config.namespace, &bootstrap, &events).await
    {
        tracing::error!(error = %e, "failed to create the bootstrap Secrets; the auth server stays unready until they exist");
    }
    let (state_tx, state) = watch::channel(MigrationState::unchecked(&config.authserver_image));
    let migration = tokio::spawn(migration::run(
        client.clone(),
        config.clone(),
        clock.clone(),
        events.clone(),
        state_tx,
        Arc::clone(&metrics),
        halt.clone(),
    ));
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(admin),
        config,
        events,
        metrics,
        clock,
        state,
    ));
    // A controller that ends by itself fails /healthz; the others go on until the
    // kubelet restarts the pod (the standby takes over meanwhile).
    let beats = &ctx.metrics.health;
    tokio::join!(
        health::supervise(
            Arc::clone(beats),
            tenant::CONTROLLER,
            halt.clone(),
            tenant::run(Arc::clone(&ctx), turned_true(halt.clone())),
        ),
        health::supervise(
            Arc::clone(beats),
            client::CONTROLLER,
            halt.clone(),
            client::run(Arc::clone(&ctx), turned_true(halt.clone())),
        ),
        health::supervise(
            Arc::clone(beats),
            keyset::CONTROLLER,
            halt.clone(),
            keyset::run(Arc::clone(&ctx), turned_true(halt.clone())),
        ),
    );
    migration.abort();
    tracing::info!("controllers stopped");
    !*stop.borrow()
}
