//! `authserver purge [--only a,b] [--timeout 10m] [--tenant T]`: what the purge CronJob
//! runs. Each target is cleaned in bounded batches; one failing target is logged and the
//! others still run; the exit code says whether everything succeeded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{UsageError, open, require_current_schema};
use crate::cli::PurgeArgs;
use crate::config::Settings;
use crate::store::purge::{self, TARGETS, Target};

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

#[allow(clippy::too_many_lines)] // one linear sequence: parse, open, loop, report
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
    if args.batch_size < 1 {
        return Err(UsageError("--batch-size must be at least 1".to_owned()).into());
    }

    let ctx = open(settings.clone(), true).await?;
    require_current_schema(&ctx.store).await?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            super::serve::shutdown_signal().await;
            tracing::warn!("stop requested: finishing the current batch");
            stop.store(true, Ordering::SeqCst);
        });
    }
    let started = Instant::now();
    let deadline = (!timeout.is_zero()).then(|| started + timeout);
    let now = ctx.clock.now();
    let retention =
        i64::try_from(settings.audit_retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let mut failed = Vec::new();
    let mut interrupted = false;
    for target in targets {
        let cutoff = if target.name == "audit" {
            now.saturating_sub(retention)
        } else {
            now
        };
        let t0 = Instant::now();
        let mut rows: u64 = 0;
        let outcome = loop {
            if stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
                interrupted = true;
                break Ok(false);
            }
            match ctx
                .store
                .purge_batch(target, cutoff, args.tenant.as_deref(), args.batch_size)
                .await
            {
                Ok(n) => {
                    rows += n;
                    if n < u64::try_from(args.batch_size).unwrap_or(u64::MAX) {
                        break Ok(true);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(complete) => {
                tracing::info!(
                    target = target.name,
                    rows,
                    elapsed_ms = ms,
                    complete,
                    "purged"
                );
                println!(
                    "target={} rows={rows} elapsed_ms={ms}{}",
                    target.name,
                    if complete { "" } else { " incomplete" }
                );
            }
            Err(e) => {
                tracing::error!(target = target.name, rows, elapsed_ms = ms, error = %e, "purge failed");
                println!("target={} rows={rows} elapsed_ms={ms} error", target.name);
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
