//! Whether this process can use its database right now, one state shared by every
//! request, cache and probe of the process.
//!
//! Without it, every request that needs PostgreSQL during an outage queues on the pool for
//! the whole acquire timeout and then fails: callers wait, pile up and retry into the same
//! wall, and a readiness probe gives up before the answer comes. With it, the first failed
//! acquisition (or the change listener failing to reconnect) marks the database
//! unavailable, and from then on every request that needs it is refused at once
//! ([`super::Error::Unavailable`], which the HTTP edge answers with 503 and
//! `Retry-After`) instead of queuing. One probe at a time checks for recovery in the
//! background, once per [`PROBE_INTERVAL`]: the process recovers without a restart, no
//! request pays for the probing, and a database coming back sees one connection attempt
//! per interval from each process instead of every queued request at once. The first
//! success, whoever sees it (the probe, the change listener, a request admitted earlier),
//! clears the state.
//!
//! The state machine is pure (the caller passes `now`) so it is unit-tested without a
//! database; `Store` in `store/mod.rs` wires it to the pool.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pause between two recovery probes while the database is unavailable.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// `Retry-After` of a request refused because the database is unavailable: long enough
/// for a probe or two, short enough that a brief failover costs callers little.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Why a database call failed or was refused without trying. [`super::Error::Unavailable`]
/// carries it as its source, so callers several layers up (whose errors wrap the store's,
/// some transparently) can still recognise an outage: see [`super::is_unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// Not tried: the database failed recently and no probe has succeeded since.
    #[error("not tried: the database has been unavailable for {seconds} s ({reason})")]
    Refused { seconds: u64, reason: String },
    /// No connection within the request deadline (`database.acquire_timeout_ms`).
    #[error("no database connection within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// No connection within the request deadline, but the database answered another
    /// request within it: every connection is in use, this process is overloaded. Only
    /// this request is refused; the database is not marked unavailable, or a burst of
    /// load would turn into refusing everything until the next probe.
    #[error(
        "no database connection within {} ms: all are in use while the database answers (overloaded)",
        .0.as_millis()
    )]
    Busy(Duration),
    /// The connection failed (refused, reset, closed, shut down by the server).
    #[error("{0}")]
    Failed(#[source] sqlx::Error),
}

/// What a reported outcome changed, for the caller to log and act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The state is as it was.
    Unchanged,
    /// The database just became unavailable.
    BecameUnavailable,
    /// The database is available again after `outage`.
    Recovered { outage: Duration },
}

#[derive(Debug)]
enum State {
    Available,
    Unavailable { since: Instant, reason: String },
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// A probe task is running (at most one per process).
    probing: bool,
    /// When the database last answered.
    last_success: Option<Instant>,
}

/// The shared availability state of one database (one per `Store`, shared by its clones).
#[derive(Debug)]
pub struct DatabaseHealth {
    inner: Mutex<Inner>,
    /// How long a request may wait for a connection (`database.acquire_timeout_ms`).
    acquire_timeout: Duration,
}

impl DatabaseHealth {
    /// An available database whose requests wait at most `acquire_timeout` for a
    /// connection.
    pub fn new(acquire_timeout: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: State::Available,
                probing: false,
                last_success: None,
            }),
            acquire_timeout,
        }
    }

    /// How long a request may wait for a connection before the database counts as
    /// unavailable.
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state half-written (every
        // update is one assignment), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Ok` when a request may use the database now; otherwise why not, without trying.
    pub fn admit(&self, now: Instant) -> Result<(), Unavailable> {
        match &self.lock().state {
            State::Available => Ok(()),
            State::Unavailable { since, reason } => Err(Unavailable::Refused {
                seconds: now.saturating_duration_since(*since).as_secs(),
                reason: reason.clone(),
            }),
        }
    }

    /// Whether a connection that did not come in time means overload rather than an
    /// outage: the database is available and answered within the last acquire timeout
    /// (a partitioned or stopped database answers nobody, so its requests time out
    /// without a recent success and mark it unavailable).
    pub fn busy(&self, now: Instant) -> bool {
        let inner = self.lock();
        matches!(inner.state, State::Available)
            && inner
                .last_success
                .is_some_and(|t| now.saturating_duration_since(t) < self.acquire_timeout)
    }

    /// Whether the database is currently marked unavailable.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.lock().state, State::Unavailable { .. })
    }

    /// Since when and why the database is unavailable; `None` while it is available.
    pub fn outage(&self) -> Option<(Instant, String)> {
        match &self.lock().state {
            State::Available => None,
            State::Unavailable { since, reason } => Some((*since, reason.clone())),
        }
    }

    /// Reports a failure to reach the database. Returns the transition, and whether the
    /// caller must start the probe (none is running yet; the caller owns it from now on
    /// and ends it through [`DatabaseHealth::probe_result`]).
    pub fn failed(&self, reason: &str, now: Instant) -> (Transition, bool) {
        let mut inner = self.lock();
        let transition = match inner.state {
            State::Available => {
                inner.state = State::Unavailable {
                    since: now,
                    reason: reason.to_owned(),
                };
                Transition::BecameUnavailable
            }
            State::Unavailable { .. } => Transition::Unchanged,
        };
        let start_probe = !inner.probing;
        inner.probing = true;
        (transition, start_probe)
    }

    /// Reports that the database answered (a connection was acquired, a query ran).
    pub fn succeeded(&self, now: Instant) -> Transition {
        let mut inner = self.lock();
        inner.last_success = Some(now);
        match inner.state {
            State::Available => Transition::Unchanged,
            State::Unavailable { since, .. } => {
                inner.state = State::Available;
                Transition::Recovered {
                    outage: now.saturating_duration_since(since),
                }
            }
        }
    }

    /// Reports a probe's outcome (`None`: the probe did not run because the state was
    /// already cleared). Returns the transition and whether to probe again after
    /// [`PROBE_INTERVAL`]; when not, the probe has ended and a later failure starts a new
    /// one. Deciding both under one lock means a failure racing the probe's end can never
    /// leave the database unavailable with nobody probing.
    pub fn probe_result(&self, ok: Option<bool>, now: Instant) -> (Transition, bool) {
        let mut inner = self.lock();
        let transition = match (ok, &inner.state) {
            (Some(true), State::Unavailable { since, .. }) => {
                let outage = now.saturating_duration_since(*since);
                inner.state = State::Available;
                Transition::Recovered { outage }
            }
            _ => Transition::Unchanged,
        };
        let again = matches!(inner.state, State::Unavailable { .. });
        inner.probing = again;
        (transition, again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> (DatabaseHealth, Instant) {
        (DatabaseHealth::new(Duration::from_secs(1)), Instant::now())
    }

    #[test]
    fn a_timeout_while_others_are_answered_is_overload_not_an_outage() {
        let (h, t0) = health();
        assert!(!h.busy(t0), "nothing answered yet: a timeout is an outage");
        h.succeeded(t0);
        assert!(
            h.busy(t0 + Duration::from_millis(900)),
            "answered 0.9 s ago"
        );
        assert!(
            !h.busy(t0 + Duration::from_millis(1100)),
            "no answer for longer than the acquire timeout: partitioned or down"
        );
        h.failed("connection refused", t0 + Duration::from_millis(100));
        assert!(
            !h.busy(t0 + Duration::from_millis(200)),
            "once unavailable, requests are refused, not counted as overload"
        );
    }

    #[test]
    fn a_failure_refuses_later_requests_without_trying_until_a_success() {
        let (h, t0) = health();
        assert!(h.admit(t0).is_ok());
        let (transition, start_probe) = h.failed("connection refused", t0);
        assert_eq!(transition, Transition::BecameUnavailable);
        assert!(start_probe);
        let refused = h.admit(t0 + Duration::from_secs(3)).unwrap_err();
        assert!(
            matches!(&refused, Unavailable::Refused { seconds: 3, reason } if reason == "connection refused"),
            "{refused:?}"
        );
        assert_eq!(
            h.succeeded(t0 + Duration::from_secs(4)),
            Transition::Recovered {
                outage: Duration::from_secs(4)
            }
        );
        assert!(h.admit(t0 + Duration::from_secs(4)).is_ok());
        assert_eq!(h.succeeded(t0), Transition::Unchanged);
    }

    #[test]
    fn only_one_probe_runs_however_many_requests_fail() {
        let (h, t0) = health();
        assert_eq!(h.failed("a", t0), (Transition::BecameUnavailable, true));
        assert_eq!(h.failed("b", t0), (Transition::Unchanged, false));
        assert_eq!(h.failed("c", t0), (Transition::Unchanged, false));
        // The probe fails: it goes on, still the only one.
        assert_eq!(
            h.probe_result(Some(false), t0),
            (Transition::Unchanged, true)
        );
        assert_eq!(h.failed("d", t0), (Transition::Unchanged, false));
        // The first reason stays: it is the one that started the outage.
        assert!(h.outage().is_some_and(|(_, r)| r == "a"));
    }

    #[test]
    fn a_successful_probe_recovers_and_ends_probing() {
        let (h, t0) = health();
        h.failed("down", t0);
        let later = t0 + Duration::from_secs(7);
        assert_eq!(
            h.probe_result(Some(true), later),
            (
                Transition::Recovered {
                    outage: Duration::from_secs(7)
                },
                false
            )
        );
        assert!(!h.is_unavailable());
        // The next outage starts a new probe.
        assert_eq!(
            h.failed("down again", later),
            (Transition::BecameUnavailable, true)
        );
    }

    #[test]
    fn a_probe_stops_when_someone_else_saw_the_database_recover() {
        let (h, t0) = health();
        h.failed("down", t0);
        // The change listener reconnected meanwhile.
        assert!(matches!(h.succeeded(t0), Transition::Recovered { .. }));
        assert_eq!(h.probe_result(None, t0), (Transition::Unchanged, false));
        assert_eq!(
            h.failed("down again", t0),
            (Transition::BecameUnavailable, true)
        );
    }

    #[test]
    fn a_failure_while_probing_is_still_probed() {
        let (h, t0) = health();
        h.failed("down", t0);
        // Recovered by a request, then failed again before the probe looked.
        h.succeeded(t0);
        assert_eq!(
            h.failed("again", t0),
            (Transition::BecameUnavailable, false)
        );
        // The running probe sees the new outage and keeps going.
        assert_eq!(h.probe_result(None, t0), (Transition::Unchanged, true));
    }
}
