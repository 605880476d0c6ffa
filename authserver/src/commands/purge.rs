//! `authserver purge [--only a,b] [--timeout 10m] [--tenant T]`: what the purge CronJob
//! runs. Each target is cleaned in bounded batches; one failing target is logged and the
//! others still run; the exit code says whether everything succeeded.
//!
//! A purge paces itself (`purge.batch_size`, `purge.batch_pause_ms`): deleting a million
//! rows flat out keeps a PostgreSQL backend and the WAL busy for seconds, and live
//! requests queue behind it (issue 16: introspection p99 went from 14 to 40 ms). A pause
//! after each full batch bounds the purge's share of the database instead; the rate is
//! at most `batch_size / (batch time + pause)` rows per second.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{UsageError, open, require_current_schema};
use crate::cli::PurgeArgs;
use crate::config::Settings;
use crate::store::purge::{self, Kept, TARGETS, Target};

/// Parses `10m`, `90s`, `1h`, `2d` or a plain number of seconds; `0` = no deadline.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(mult)?))
}

fn valid_targets() -> String {
    TARGETS
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How fast a purge deletes: rows per statement, and the pause after each full batch.
#[derive(Debug, Clone, Copy)]
struct Pace {
    batch_size: i64,
    pause: Duration,
}

impl Pace {
    /// The flags, or else the configuration (`purge.*`, whose env overrides it already
    /// holds).
    fn new(settings: &Settings, args: &PurgeArgs) -> Result<Self, UsageError> {
        let batch_size = args
            .batch_size
            .unwrap_or(i64::from(settings.purge.batch_size));
        if !(1..=100_000).contains(&batch_size) {
            return Err(UsageError(format!(
                "--batch-size must be 1 to 100000, got {batch_size}"
            )));
        }
        let pause = match args.batch_pause_ms {
            None => settings.purge.batch_pause,
            Some(ms) if ms <= 60_000 => Duration::from_millis(ms),
            Some(ms) => {
                return Err(UsageError(format!(
                    "--batch-pause-ms must be 0 to 60000, got {ms}"
                )));
            }
        };
        Ok(Self { batch_size, pause })
    }
}

/// The rate a target was purged at, pauses included, for the report.
fn rows_per_second(rows: u64, elapsed: Duration) -> u64 {
    rows.saturating_mul(1000) / millis(elapsed).max(1)
}

/// What purging one target did.
struct TargetReport {
    rows: u64,
    /// `DELETE` rounds run (the last one finds fewer rows than a batch, possibly none).
    batches: u64,
    /// Time spent in the pauses between batches.
    paused: Duration,
    /// `Ok(true)`: nothing expired is left; `Ok(false)`: stopped by the deadline or a signal.
    outcome: Result<bool, crate::store::Error>,
}

/// Deletes `target`'s expired rows batch by batch, pausing after each full batch (a
/// signal or the deadline ends a pause early), until a batch comes back short.
async fn purge_target(
    store: &crate::store::Store,
    target: Target,
    cutoff: crate::clock::UnixTime,
    tenant: Option<&str>,
    pace: Pace,
    stop: &mut watch::Receiver<bool>,
    deadline: Option<Instant>,
) -> TargetReport {
    let mut report = TargetReport {
        rows: 0,
        batches: 0,
        paused: Duration::ZERO,
        outcome: Ok(false),
    };
    let full = u64::try_from(pace.batch_size).unwrap_or(u64::MAX);
    report.outcome = loop {
        if *stop.borrow() || deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(false);
        }
        match store
            .purge_batch(target, cutoff, tenant, pace.batch_size)
            .await
        {
            Ok(n) => {
                report.rows += n;
                report.batches += 1;
                if n < full {
                    break Ok(true);
                }
            }
            Err(e) => break Err(e),
        }
        // Another batch follows: leave the database to live traffic for a while.
        if !pace.pause.is_zero() {
            let started = Instant::now();
            let pause = deadline.map_or(pace.pause, |d| {
                pace.pause.min(d.saturating_duration_since(started))
            });
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            report.paused += started.elapsed();
        }
    };
    report
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub async fn run(settings: &Settings, args: PurgeArgs) -> anyhow::Result<()> {
    let timeout = parse_duration(&args.timeout).ok_or_else(|| {
        UsageError(format!(
            "invalid --timeout {:?} (examples: 10m, 90s, 1h, 0 for none)",
            args.timeout
        ))
    })?;
    let mut targets: Vec<Target> = Vec::new();
    for name in args.only.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let t = purge::target(name).ok_or_else(|| {
            UsageError(format!(
                "unknown purge target {name:?}; valid targets: {}",
                valid_targets()
            ))
        })?;
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    let pace = Pace::new(settings, &args)?;

    let ctx = open(settings.clone(), true).await?;
    require_current_schema(&ctx.store).await?;
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        super::serve::shutdown_signal().await;
        tracing::warn!("stop requested: finishing the current batch");
        stop_tx.send_replace(true);
    });
    let started = Instant::now();
    let deadline = (!timeout.is_zero()).then(|| started + timeout);
    let now = ctx.clock.now();
    let days = |n: u64| i64::try_from(n.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let audit_retention = days(settings.audit_retention_days);
    let device_retention = days(u64::from(settings.purge.device_retention_days));
    tracing::info!(
        batch_size = pace.batch_size,
        batch_pause_ms = millis(pace.pause),
        "purging"
    );
    let mut failed = Vec::new();
    let mut interrupted = false;
    for target in targets {
        let cutoff = match target.kept {
            Kept::UntilExpiry => now,
            Kept::AuditRetention => now.saturating_sub(audit_retention),
            Kept::DeviceRetention => now.saturating_sub(device_retention),
        };
        let t0 = Instant::now();
        let r = purge_target(
            &ctx.store,
            target,
            cutoff,
            args.tenant.as_deref(),
            pace,
            &mut stop,
            deadline,
        )
        .await;
        let elapsed = t0.elapsed();
        let (ms, paused_ms) = (millis(elapsed), millis(r.paused));
        let rows_per_second = rows_per_second(r.rows, elapsed);
        let (rows, batches) = (r.rows, r.batches);
        let figures = format!(
            "target={} rows={rows} batches={batches} paused_ms={paused_ms} elapsed_ms={ms}",
            target.name
        );
        match r.outcome {
            Ok(complete) => {
                tracing::info!(
                    target = target.name,
                    rows,
                    batches,
                    paused_ms,
                    elapsed_ms = ms,
                    rows_per_second,
                    complete,
                    "purged"
                );
                println!("{figures}{}", if complete { "" } else { " incomplete" });
                interrupted |= !complete;
            }
            Err(e) => {
                tracing::error!(target = target.name, rows, batches, elapsed_ms = ms, error = %e, "purge failed");
                println!("{figures} error");
                failed.push(target.name);
            }
        }
    }
    ctx.store.close().await;
    if !failed.is_empty() {
        anyhow::bail!("purge failed for target(s): {}", failed.join(", "));
    }
    if interrupted {
        anyhow::bail!("purge stopped before finishing (deadline or signal)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_mins(10)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
