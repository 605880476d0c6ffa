//! `authserver serve`: startup sequence, HTTP listener, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::{Context, open};
use crate::admin::AdminService;
use crate::config::Settings;
use crate::http::{self, AppServices, AppState, Readiness, metrics::Metrics};
use crate::oauth::OAuthService;
use crate::oauth::client_documents::{self, DocumentCache};
use crate::oauth::dpop::Dpop;
use crate::oauth::rate_limit::RateLimiter;
use crate::tenants::TenantDirectory;
use crate::throttle::LoginThrottle;

#[allow(clippy::too_many_lines)] // the start-up sequence, in order, reads best in one place
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    if let Some(path) = settings.encryption_key_file.clone() {
        wait_for_key(&settings, &path).await?;
    }
    let ctx = open(settings, true).await?;
    let state = build_state(&ctx).await?;
    // Keep caches coherent with writes from other pods, the CLI and the operator.
    let watcher = ctx.store.spawn_change_watcher(ctx.epoch.clone());

    start_up(&ctx, &state).await?;
    if ctx.store.schema_status().await?.is_current() {
        state.readiness.set_startup(None);
    }

    let listener = tokio::net::TcpListener::bind(ctx.settings.listen)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {} (server.listen)",
                ctx.settings.listen
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(
        listen = %addr,
        backend = ctx.store.backend().as_str(),
        startup_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "serving"
    );
    for t in &ctx.settings.tenants {
        tracing::info!(tenant = %t.id, issuer = %t.issuer, "tenant configured");
    }
    let ops_listener = match ctx.settings.ops_listen {
        Some(addr) => Some(bind_ops(addr).await?),
        None => None,
    };
    // Before serving anything: a certificate that does not parse or match its key
    // stops the process naming the setting, instead of a pod that is ready without
    // its admin API.
    let admin_tls = match (&ctx.settings.admin.token, &ctx.settings.admin.tls) {
        (Some(_), Some(files)) => Some(
            crate::admin::tls::acceptor(files.clone())
                .await
                .map_err(anyhow::Error::msg)?,
        ),
        _ => None,
    };

    let public_ops = if ops_listener.is_some() {
        http::PublicOps::ProbesOnly
    } else {
        http::PublicOps::All
    };
    let federation = Arc::clone(&state.federation);
    let ops_app = http::ops_app(state.clone());
    let readiness = Arc::clone(&state.readiness);
    let app = http::public_app(state, public_ops);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(drain_on_signal(
        readiness,
        Duration::from_secs(ctx.settings.shutdown_delay_seconds),
        stop_tx,
    ));
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let admin = if let Some(token) = ctx.settings.admin.token.clone() {
        let service = AdminService {
            store: ctx.store.clone(),
            keys: Arc::clone(&ctx.keys),
            clients: Arc::clone(&ctx.clients),
            users: Arc::clone(&ctx.users),
            mfa: Arc::clone(&ctx.mfa),
            federation,
            clock: Arc::clone(&ctx.clock),
        };
        Some(tokio::spawn(crate::admin::serve(
            ctx.settings.admin.listen,
            service,
            token,
            admin_tls,
            stopped(stop_rx.clone()),
        )))
    } else {
        tracing::info!("admin gRPC API disabled (set GATEHOUSE_ADMIN_TOKEN or admin.token_file)");
        None
    };

    // Probes and scrapes keep answering while in-flight requests drain (no graceful
    // shutdown of their own): a liveness failure then would kill the drain.
    let ops = ops_listener.map(|l| tokio::spawn(http::serve(l, ops_app, std::future::pending())));
    // Stops with the listener: mail queued by the last requests is sent by the next pod
    // (or this one, restarted); a send in flight finishes or its lease runs out.
    let mail = spawn_mail_sender(&ctx, stop_rx.clone())?;
    let server = http::serve(listener, app, stopped(stop_rx.clone()));
    let grace = Duration::from_secs(ctx.settings.shutdown_timeout_seconds);
    tokio::select! {
        res = server => res.context("HTTP server failed")?,
        () = async {
            stopped(stop_rx.clone()).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish in time; exiting"),
    }
    // In order, once the public listener has drained: the admin API (it stopped
    // accepting with the public listener), the operations listener (probes were answered
    // until now), the background tasks, and last the pool, which nothing uses any more.
    if let Some(admin) = admin {
        match tokio::time::timeout(grace, admin).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %format!("{e:#}"), "admin API failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "admin API task failed"),
            Ok(Ok(Ok(()))) | Err(_) => {}
        }
    }
    if let Some(ops) = ops {
        ops.abort();
        let _ = ops.await;
    }
    if let Some(mail) = mail
        && Box::pin(tokio::time::timeout(grace, mail)).await.is_err()
    {
        tracing::warn!("the e-mail sender did not stop in time");
    }
    watcher.abort();
    let _ = watcher.await;
    ctx.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM/SIGINT, then shuts down in the order that loses no request behind
/// a load balancer: `/readyz` fails at once (the kubelet, a load balancer's health check
/// stop routing here) while requests are still served for `delay`
/// (`server.shutdown_delay_seconds`: until they have stopped, and endpoint changes have
/// reached every proxy), then `stop` tells the listeners to stop accepting and drain. A
/// second signal ends the delay early.
async fn drain_on_signal(
    readiness: Arc<http::Readiness>,
    delay: Duration,
    stop: tokio::sync::watch::Sender<bool>,
) {
    shutdown_signal().await;
    readiness.start_draining();
    if !delay.is_zero() {
        tracing::info!(
            delay_seconds = delay.as_secs(),
            "shutting down: not ready; serving on until load balancers stop routing here"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown_signal() => tracing::info!("second signal: not waiting any longer"),
        }
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    stop.send_replace(true);
}

/// Binds the operations listener, naming its setting when that fails.
async fn bind_ops(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to listen on {addr} (server.ops_listen)"))?;
    tracing::info!(listen = %listener.local_addr()?, "health and metrics listening");
    Ok(listener)
}

/// How often a missing ENCRYPTION_KEY file is looked for again.
const KEY_POLL: Duration = Duration::from_secs(2);

/// Until `encryption.key_file` holds a key (its Secret may be created after the pod
/// starts — the operator bootstraps it once), serves `/healthz` and a `/readyz` that
/// answers 503 with the reason, so the pod stays alive, unready and explains itself.
async fn wait_for_key(settings: &Settings, path: &std::path::Path) -> anyhow::Result<()> {
    let Err(reason) = super::read_key_file(path) else {
        return Ok(());
    };
    tracing::warn!(reason = %reason, "not ready");
    let reason = Arc::new(std::sync::RwLock::new(reason));
    let probes = |with_reason: bool| http::waiting_probes(Arc::clone(&reason), with_reason);
    // As in `http::PublicOps::ProbesOnly`: with an ops listener only it gives the reason.
    let app = probes(settings.ops_listen.is_none());
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("failed to listen on {} (server.listen)", settings.listen))?;
    // The kubelet probes the operations listener when there is one: answer there too.
    let ops_listener = match settings.ops_listen {
        Some(addr) => Some(bind_ops(addr).await?),
        None => None,
    };
    let (found_tx, found_rx) = tokio::sync::watch::channel(false);
    let until_found = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|found| *found).await;
    };
    let ops = ops_listener.map(|l| {
        let (app, stop) = (probes(true), until_found(found_rx.clone()));
        tokio::spawn(http::serve(l, app, stop))
    });
    let server = tokio::spawn(http::serve(listener, app, until_found(found_rx)));
    loop {
        tokio::select! {
            () = tokio::time::sleep(KEY_POLL) => {}
            () = shutdown_signal() => anyhow::bail!("stopped while waiting for the ENCRYPTION_KEY"),
        }
        match super::read_key_file(path) {
            Ok(_) => break,
            Err(r) => {
                if let Ok(mut slot) = reason.write() {
                    *slot = r;
                }
            }
        }
    }
    tracing::info!(path = %path.display(), "ENCRYPTION_KEY file found; starting");
    let _ = found_tx.send(true);
    server.await.context("readiness server task")??;
    if let Some(ops) = ops {
        ops.await.context("readiness server task")??;
    }
    Ok(())
}

/// Initialises now when the schema is current; otherwise serves a failing `/readyz`
/// naming the missing migration and finishes start-up once the migration Job has run.
async fn start_up(ctx: &Context, state: &AppState) -> anyhow::Result<()> {
    if ctx.store.schema_status().await?.is_current() {
        // The usual case: initialise before accepting traffic so that a wrong
        // ENCRYPTION_KEY stops the process with a clear error.
        initialise(ctx).await?;
    } else {
        // Schema behind (PostgreSQL; the migration Job has not run yet): serve /healthz
        // and a failing /readyz naming the missing migration, and finish start-up once
        // the schema is current.
        {
            let _ = state.readiness.check().await;
            let ctx = ctx.clone();
            let readiness = Arc::clone(&state.readiness);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if ctx
                        .store
                        .schema_status()
                        .await
                        .is_ok_and(|s| s.is_current())
                    {
                        break;
                    }
                }
                match initialise(&ctx).await {
                    Ok(()) => readiness.set_startup(None),
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "start-up failed after migration");
                        readiness.set_startup(Some(format!("start-up failed: {e:#}")));
                    }
                }
            });
        }
    }
    Ok(())
}

/// The HTTP state for a context (also used by tests).
pub(crate) async fn build_state(ctx: &Context) -> anyhow::Result<AppState> {
    let s = &ctx.settings;
    let oauth = OAuthService {
        store: ctx.store.clone(),
        clients: Arc::clone(&ctx.clients),
        keys: Arc::clone(&ctx.keys),
        clock: Arc::clone(&ctx.clock),
        tokens: s.tokens.clone(),
        rate_limits: s.rate_limits.clone(),
        dpop: Dpop::new(s.dpop.clone(), ctx.store.clone(), Arc::clone(&ctx.clock)),
        limiter: RateLimiter::new(
            s.rate_limits.window_seconds,
            s.rate_limits.redis_url.as_ref(),
        )
        .await?,
        jwks: DocumentCache::new(Arc::clone(&ctx.outbound), client_documents::JWKS),
        sectors: DocumentCache::new(
            Arc::clone(&ctx.outbound),
            client_documents::SECTOR_DOCUMENTS,
        ),
        subjects: Arc::new(crate::subject::Subjects::new(
            ctx.store.clone(),
            Arc::clone(&ctx.kek),
            Arc::clone(&ctx.clock),
        )),
        issued: Arc::default(),
        verified: crate::oauth::verified::VerifiedTokens::new(&ctx.epoch, s.cache.verified_tokens),
    };
    let ui = Arc::new(
        crate::ui::Templates::load(s.ui.templates_dir.as_deref(), s.ui.locales_dir.as_deref())
            .context(
                "failed to load the page templates and catalogues (ui.templates_dir, \
                 ui.locales_dir)",
            )?,
    );
    let sessions = Arc::new(crate::session::SessionService::new(
        ctx.store.clone(),
        Arc::clone(&ctx.clock),
        s.sessions.clone(),
        &ctx.kek,
    ));
    let email = Arc::new(crate::email::EmailFlows::new(
        ctx.store.clone(),
        Arc::clone(&ctx.clock),
        Arc::clone(&ctx.kek),
        Arc::clone(&ui),
        Arc::clone(&ctx.users),
        Arc::clone(&sessions),
        s.email.clone(),
    ));
    // A configured database that cannot be read stops start-up: sign-ins would
    // otherwise go unlocated (and impossible travel unchecked) without anyone noticing.
    let geoip = match &s.geoip_database {
        Some(path) => Some(Arc::new(
            crate::devices::GeoIp::open(path).context("invalid geoip.database")?,
        )),
        None => None,
    };
    let devices = Arc::new(crate::devices::DeviceService::new(
        ctx.store.clone(),
        Arc::clone(&ctx.clock),
        geoip,
    ));
    Ok(AppState::new(AppServices {
        store: ctx.store.clone(),
        oauth: Arc::new(oauth),
        keys: Arc::clone(&ctx.keys),
        tenants: Arc::new(TenantDirectory::new(ctx.store.clone(), &ctx.epoch)),
        metrics: Arc::new(
            Metrics::new(&ctx.settings.metrics_prefix).context("failed to set up metrics")?,
        ),
        readiness: Readiness::new(ctx.store.clone()),
        trusted_proxies: Arc::new(ctx.settings.trusted_proxies.clone()),
        tracing_export: std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")
            .is_some_and(|v| !v.is_empty()),
        clock: Arc::clone(&ctx.clock),
        ui,
        sessions,
        users: Arc::clone(&ctx.users),
        mfa: Arc::clone(&ctx.mfa),
        passkeys: Arc::new(crate::passkeys::PasskeyService::new(
            ctx.store.clone(),
            Arc::clone(&ctx.clock),
        )),
        login_throttle: Arc::new(LoginThrottle::new(
            ctx.store.clone(),
            Arc::clone(&ctx.clock),
            ctx.settings.login,
        )),
        email,
        devices,
        documents: Arc::default(),
        federation: Arc::new(crate::federation::FederationService::new(
            Arc::clone(&ctx.outbound),
            Arc::clone(&ctx.clock),
            ctx.store.clone(),
            Arc::clone(&ctx.kek),
        )),
    }))
}

/// The outbox sender of this pod (`None` without an SMTP relay): see `email::sender`.
pub(crate) fn spawn_mail_sender(
    ctx: &Context,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let outbox = crate::email::Outbox::new(
        ctx.store.clone(),
        Arc::clone(&ctx.kek),
        Arc::clone(&ctx.clock),
        &ctx.settings.email,
    )
    .context("invalid SMTP relay (email.smtp_host)")?;
    Ok(outbox.map(|o| tokio::spawn(o.run(stop))))
}

/// Declared tenants are upserted, existing keys must decrypt, missing keys are created.
pub(crate) async fn initialise(ctx: &Context) -> anyhow::Result<()> {
    for spec in &ctx.settings.tenants {
        if ctx.store.upsert_tenant(spec, ctx.clock.now()).await? {
            tracing::info!(tenant = %spec.id, issuer = %spec.issuer, "tenant created or updated");
        }
    }
    for (id, settings) in &ctx.settings.tenant_settings {
        if ctx
            .store
            .set_tenant_settings(id, settings, ctx.clock.now())
            .await?
        {
            tracing::info!(tenant = %id, "tenant settings updated from the config file");
        }
    }
    let readable = ctx
        .keys
        .check_decryptable()
        .await
        .context("cannot use the stored signing keys")?;
    tracing::debug!(keys = readable, "stored signing keys decrypt");
    for spec in &ctx.settings.tenants {
        ctx.keys.bootstrap(&spec.id).await?;
    }
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
