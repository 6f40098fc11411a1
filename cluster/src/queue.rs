//! Queued runs in PostgreSQL: any daemon of the cluster takes any run.
//!
//! A run is one row of `warden_runs`. A caller's request adds it as `queued`; a worker on any
//! daemon claims the oldest with `FOR UPDATE SKIP LOCKED` (workers never wait on each other's
//! rows) and holds it under a lease that it renews while the node runs. A daemon that dies stops
//! renewing; once the lease has run out, another worker claims the run again, so delivery is at
//! least once.
//!
//! Each claim increments the run's `attempts`, and a worker renews, finishes or gives back only
//! the attempt it claimed: a worker whose lease ran out (a daemon paused past its lease) can no
//! longer record an answer, so a run has exactly one answer, the first recorded by a worker that
//! held the lease. An idempotency key is unique per caller, so a retried request finds the run
//! its first attempt queued instead of queueing another.
//!
//! `NOTIFY` tells idle workers that a run was queued, and waiting callers that a run finished.
//! Notifications are a shortcut, not the mechanism: they can be lost while a listener
//! reconnects, so workers and waiters also look again on a timer.

use crate::database::{BEGIN_SHORT, Database};
use crate::error::ClusterError;
use sqlx::{PgPool, Row};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The channel a queued run is announced on (payload: its package).
pub const QUEUED_CHANNEL: &str = "warden_run_queued";
/// The channel a finished run is announced on (payload: its id).
pub const FINISHED_CHANNEL: &str = "warden_run_finished";
/// The channel new events of a running run are announced on (payload: its id).
pub const EVENTS_CHANNEL: &str = "warden_run_events";

/// A run to queue.
#[derive(Clone, Debug)]
pub struct NewRun<'a> {
    pub id: &'a str,
    /// Who asked: an idempotency key is unique per caller.
    pub caller: &'a str,
    pub idempotency_key: Option<&'a str>,
    /// The request's hash: a key used again for another request is refused.
    pub request_sha256: &'a str,
    /// The package that serves it: only daemons that serve it claim it.
    pub package: &'a str,
    /// What the worker needs to run it (the daemon's own JSON).
    pub request: &'a str,
}

/// How many unfinished runs may wait, per caller and in all.
#[derive(Clone, Copy, Debug)]
pub struct QueueBounds {
    pub per_caller: u32,
    pub total: u32,
}

/// What queueing a run did.
#[derive(Debug)]
pub enum Enqueued {
    /// The run was queued.
    Queued,
    /// The caller's idempotency key was used before: the run it stands for.
    Existing(Box<QueuedRun>),
    /// The caller already has `per_caller` unfinished runs.
    CallerFull,
    /// The queue holds `total` unfinished runs.
    QueueFull,
}

/// What taking an idempotency key for a run answered at once did.
#[derive(Debug)]
pub enum SyncBegun {
    /// This daemon runs it, as run `id` (the first attempt's id when taken over), attempt
    /// `attempt`.
    Started { id: String, attempt: i32 },
    /// The key stands for this run (queued, or answered at once, running or finished).
    Existing(Box<QueuedRun>),
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Queued,
    Running,
    Finished,
}

impl RunState {
    fn parse(text: &str) -> RunState {
        match text {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            _ => RunState::Finished,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Finished => "finished",
        }
    }
}

/// A run's row, as a caller sees it.
#[derive(Clone, Debug)]
pub struct QueuedRun {
    pub id: String,
    pub caller: String,
    pub request_sha256: String,
    pub package: String,
    pub state: RunState,
    /// Claims so far: more than one means a worker's lease ran out (its daemon died or stalled).
    pub attempts: i32,
    /// The HTTP status and the JSON answer, once finished.
    pub status: Option<i32>,
    pub result: Option<String>,
    /// The run's record (what `GET /v1/runs/{id}` shows), once finished.
    pub record: Option<String>,
    /// A run answered at once by the daemon that took the request, not queued: its row keeps
    /// its idempotency key and record only.
    pub sync: bool,
}

/// A run a worker holds under its lease.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: String,
    pub caller: String,
    pub package: String,
    pub request: String,
    /// This claim's number: the lease is this attempt's only.
    pub attempt: i32,
    /// The claim took a run whose previous lease had run out.
    pub redelivered: bool,
    /// Leases of this run that ran out, this claim's included: its workers stopped answering
    /// (their daemons died or stalled) this many times. Runs given back do not count.
    pub lost_leases: i32,
}

/// A notification: a run was queued (for a package), or finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wakeup {
    Queued(String),
    Finished(String),
    /// A running run has new events.
    Events(String),
    /// The listener lost its connection (or fell behind): anything may have happened; look.
    Missed,
}

/// The queue of runs in the cluster's database.
#[derive(Clone, Debug)]
pub struct RunQueue {
    pool: PgPool,
    /// Connections of the renewals' own: a lease is renewed even while storage calls hold every
    /// connection of the main pool.
    leases: PgPool,
    /// Who claims, as the leases name it (for operators reading the table).
    owner: String,
    /// When a claim last found no run whose lease ran out: the next claims skip that statement
    /// for `EXPIRED_CHECK_INTERVAL` (such runs are rare; each claim would pay a round trip).
    no_expired_since: Arc<Mutex<Option<Instant>>>,
}

/// How long claims go without looking for runs whose lease ran out, after finding none.
const EXPIRED_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Connections of a daemon's pool for renewing leases (apart from `max_connections`).
const LEASE_CONNECTIONS: u32 = 2;
/// How long a renewal waits for one of them.
const LEASE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

const RUN_COLUMNS: &str = "id, caller, request_sha256, package, state, attempts, status, result, \
     record::text AS record, mode";

fn queued_run(row: &sqlx::postgres::PgRow) -> Result<QueuedRun, sqlx::Error> {
    Ok(QueuedRun {
        id: row.try_get("id")?,
        caller: row.try_get("caller")?,
        request_sha256: row.try_get("request_sha256")?,
        package: row.try_get("package")?,
        state: RunState::parse(row.try_get::<&str, _>("state")?),
        attempts: row.try_get("attempts")?,
        status: row.try_get("status")?,
        result: row.try_get("result")?,
        record: row.try_get("record")?,
        sync: row.try_get::<&str, _>("mode")? == "sync",
    })
}

/// Batches one sweep works through at most, per kind of row.
const MAX_SWEEP_BATCHES: usize = 100;

/// A duration as PostgreSQL seconds (`make_interval(secs => …)` takes a double).
fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// A count as PostgreSQL's `bigint`.
fn bigint(count: u32) -> i64 {
    i64::from(count)
}

impl RunQueue {
    pub fn new(database: &Database, owner: &str) -> Self {
        RunQueue {
            pool: database.pool().clone(),
            leases: database
                .side_pool(LEASE_CONNECTIONS, LEASE_ACQUIRE_TIMEOUT)
                .pool()
                .clone(),
            owner: owner.to_string(),
            no_expired_since: Arc::new(Mutex::new(None)),
        }
    }

    /// Queues `run` unless its idempotency key was used before or a bound is reached. Writers
    /// of one caller take turns on an advisory lock, so the caller's bound holds across daemons.
    pub async fn enqueue(
        &self,
        run: &NewRun<'_>,
        bounds: QueueBounds,
    ) -> Result<Enqueued, ClusterError> {
        let mut tx = self.pool.begin_with(BEGIN_SHORT).await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(run.caller)
            .execute(&mut *tx)
            .await?;
        if let Some(key) = run.idempotency_key {
            let existing = sqlx::query(&format!(
                "SELECT {RUN_COLUMNS} FROM warden_runs WHERE caller = $1 AND idempotency_key = $2"
            ))
            .bind(run.caller)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                return Ok(Enqueued::Existing(Box::new(queued_run(&row)?)));
            }
        }
        // Counted up to the bound only: a full queue costs a bounded scan, not a count of all.
        let mine: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM warden_runs
              WHERE caller = $1 AND state <> 'finished' AND mode = 'queued' LIMIT $2)
              AS unfinished",
        )
        .bind(run.caller)
        .bind(bigint(bounds.per_caller))
        .fetch_one(&mut *tx)
        .await?;
        if mine >= bigint(bounds.per_caller) {
            return Ok(Enqueued::CallerFull);
        }
        let all: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM warden_runs
              WHERE state <> 'finished' AND mode = 'queued' LIMIT $1) AS unfinished",
        )
        .bind(bigint(bounds.total))
        .fetch_one(&mut *tx)
        .await?;
        if all >= bigint(bounds.total) {
            return Ok(Enqueued::QueueFull);
        }
        sqlx::query(
            "INSERT INTO warden_runs
               (id, caller, idempotency_key, request_sha256, package, request, state)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued')",
        )
        .bind(run.id)
        .bind(run.caller)
        .bind(run.idempotency_key)
        .bind(run.request_sha256)
        .bind(run.package)
        .bind(run.request)
        .execute(&mut *tx)
        .await?;
        // Delivered when the transaction commits, never before the row is there.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(QUEUED_CHANNEL)
            .bind(run.package)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Enqueued::Queued)
    }

    /// Claims the oldest run of one of `packages` under a lease of `lease`: first a run whose
    /// lease ran out (its worker is gone), then the oldest queued one. `None` when there is none.
    pub async fn claim(
        &self,
        packages: &[String],
        lease: Duration,
    ) -> Result<Option<Claimed>, ClusterError> {
        // Two statements, each able to use its own partial index: a condition with OR over
        // both states would scan.
        for (redelivered, condition) in [
            (
                true,
                "state = 'running' AND lease_until < now() AND mode = 'queued'",
            ),
            (false, "state = 'queued'"),
        ] {
            if redelivered && !self.expired_check_due() {
                continue;
            }
            let (order, lost) = if redelivered {
                ("lease_until", "run.lost_leases + 1")
            } else {
                ("created_at", "run.lost_leases")
            };
            let row = sqlx::query(&format!(
                "WITH next AS (
                   SELECT id FROM warden_runs
                    WHERE {condition} AND package = ANY($1)
                    ORDER BY {order} LIMIT 1
                    FOR UPDATE SKIP LOCKED)
                 UPDATE warden_runs AS run
                    SET state = 'running', attempts = run.attempts + 1, lost_leases = {lost},
                        lease_owner = $2, lease_until = now() + make_interval(secs => $3)
                   FROM next WHERE run.id = next.id
                 RETURNING run.id, run.caller, run.package, run.request, run.attempts,
                           run.lost_leases"
            ))
            .bind(packages)
            .bind(&self.owner)
            .bind(seconds(lease))
            .fetch_optional(&self.pool)
            .await?;
            if redelivered {
                *lock(&self.no_expired_since) = row.is_none().then(Instant::now);
            }
            if let Some(row) = row {
                return Ok(Some(Claimed {
                    id: row.try_get("id")?,
                    caller: row.try_get("caller")?,
                    package: row.try_get("package")?,
                    request: row.try_get("request")?,
                    attempt: row.try_get("attempts")?,
                    redelivered,
                    lost_leases: row.try_get("lost_leases")?,
                }));
            }
        }
        Ok(None)
    }

    /// Whether a claim should look for runs whose lease ran out: not within
    /// `EXPIRED_CHECK_INTERVAL` of finding none.
    fn expired_check_due(&self) -> bool {
        lock(&self.no_expired_since).is_none_or(|since| since.elapsed() >= EXPIRED_CHECK_INTERVAL)
    }

    /// Renews the lease of attempt `attempt` of run `id` (answered at once) for `lease` from
    /// now. False when that attempt no longer holds it.
    pub async fn renew_attempt(
        &self,
        id: &str,
        attempt: i32,
        lease: Duration,
    ) -> Result<bool, ClusterError> {
        let renewed = sqlx::query(
            "UPDATE warden_runs SET lease_until = now() + make_interval(secs => $3)
              WHERE id = $1 AND attempts = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(seconds(lease))
        .execute(&self.leases)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Renews the lease of `claimed` for `lease` from now. False when the lease is no longer
    /// this claim's: it ran out and another worker took the run, or the run finished.
    pub async fn renew(&self, claimed: &Claimed, lease: Duration) -> Result<bool, ClusterError> {
        self.renew_attempt(&claimed.id, claimed.attempt, lease)
            .await
    }

    /// Records the answer of `claimed` and tells waiting callers. False when the lease was no
    /// longer this claim's: the answer is not recorded (the run has, or will have, another).
    pub async fn finish(
        &self,
        claimed: &Claimed,
        status: u16,
        result: &str,
        record: &str,
    ) -> Result<bool, ClusterError> {
        self.finish_attempt(&claimed.id, claimed.attempt, status, Some(result), record)
            .await
    }

    /// Records the answer (`None`: too large to keep for replays) and the record of attempt
    /// `attempt` of run `id`, queued or answered at once. False when that attempt no longer
    /// holds the run.
    pub async fn finish_attempt(
        &self,
        id: &str,
        attempt: i32,
        status: u16,
        result: Option<&str>,
        record: &str,
    ) -> Result<bool, ClusterError> {
        let finished = sqlx::query(
            "WITH done AS (
               UPDATE warden_runs
                  SET state = 'finished', status = $3, result = $4, record = $5::jsonb,
                      finished_at = now(), lease_until = NULL, request = ''

                WHERE id = $1 AND attempts = $2 AND state = 'running'
               RETURNING id)
             SELECT pg_notify($6, id) FROM done",
        )
        .bind(id)
        .bind(attempt)
        .bind(i32::from(status))
        .bind(result)
        .bind(record)
        .bind(FINISHED_CHANNEL)
        .fetch_optional(&self.pool)
        .await?;
        Ok(finished.is_some())
    }

    /// Gives `claimed` back to the queue at once (this daemon is stopping, or cannot run it),
    /// rather than leaving it until its lease runs out.
    pub async fn give_back(&self, claimed: &Claimed) -> Result<(), ClusterError> {
        sqlx::query(
            "WITH back AS (
               UPDATE warden_runs SET state = 'queued', lease_owner = NULL, lease_until = NULL
                WHERE id = $1 AND attempts = $2 AND state = 'running'
               RETURNING package)
             SELECT pg_notify($3, package) FROM back",
        )
        .bind(&claimed.id)
        .bind(claimed.attempt)
        .bind(QUEUED_CHANNEL)
        .fetch_optional(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes `caller`'s idempotency `key` for run `id`, answered at once by this daemon, for
    /// `lease` (the longest the run can take): the key's row is written `running`, with no
    /// package or request, so no worker claims it. A key used before gives its run instead,
    /// except a run answered at once whose lease ran out (its daemon died mid-run), which this
    /// daemon takes over, under the run's first id.
    pub async fn begin_sync(
        &self,
        id: &str,
        caller: &str,
        key: &str,
        request_sha256: &str,
        lease: Duration,
    ) -> Result<SyncBegun, ClusterError> {
        let mut tx = self.pool.begin_with(BEGIN_SHORT).await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(caller)
            .execute(&mut *tx)
            .await?;
        let existing = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS}, (state = 'running' AND lease_until < now()) AS lapsed
               FROM warden_runs WHERE caller = $1 AND idempotency_key = $2"
        ))
        .bind(caller)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let begun = match existing {
            Some(row) => {
                let run = queued_run(&row)?;
                let lapsed: Option<bool> = row.try_get("lapsed")?;
                if !(run.sync && lapsed == Some(true) && run.request_sha256 == request_sha256) {
                    return Ok(SyncBegun::Existing(Box::new(run)));
                }
                // Fenced: the run may have finished (its daemon was slow, not dead) since the
                // look above, which `finish_attempt` does without the caller's lock.
                let attempt: Option<i32> = sqlx::query_scalar(
                    "UPDATE warden_runs
                        SET attempts = attempts + 1, lost_leases = lost_leases + 1,
                            lease_owner = $2, lease_until = now() + make_interval(secs => $3)
                      WHERE id = $1 AND attempts = $4 AND state = 'running'
                        AND lease_until < now()
                      RETURNING attempts",
                )
                .bind(&run.id)
                .bind(&self.owner)
                .bind(seconds(lease))
                .bind(run.attempts)
                .fetch_optional(&mut *tx)
                .await?;
                match attempt {
                    Some(attempt) => SyncBegun::Started {
                        id: run.id,
                        attempt,
                    },
                    None => {
                        let now = sqlx::query(&format!(
                            "SELECT {RUN_COLUMNS} FROM warden_runs WHERE id = $1"
                        ))
                        .bind(&run.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        match now {
                            Some(row) => SyncBegun::Existing(Box::new(queued_run(&row)?)),
                            None => SyncBegun::Existing(Box::new(run)),
                        }
                    }
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO warden_runs
                       (id, caller, idempotency_key, request_sha256, package, request, state,
                        mode, attempts, lease_owner, lease_until)
                     VALUES ($1, $2, $3, $4, '', '', 'running', 'sync', 1, $5,
                             now() + make_interval(secs => $6))",
                )
                .bind(id)
                .bind(caller)
                .bind(key)
                .bind(request_sha256)
                .bind(&self.owner)
                .bind(seconds(lease))
                .execute(&mut *tx)
                .await?;
                SyncBegun::Started {
                    id: id.to_string(),
                    attempt: 1,
                }
            }
        };
        tx.commit().await?;
        Ok(begun)
    }

    /// Gives back the key that attempt `attempt` of run `id` took with
    /// [`begin_sync`](Self::begin_sync): the request was refused before it ran, or its answer
    /// is worth a retry.
    pub async fn release_sync(&self, id: &str, attempt: i32) -> Result<(), ClusterError> {
        sqlx::query(
            "DELETE FROM warden_runs
              WHERE id = $1 AND attempts = $2 AND state = 'running' AND mode = 'sync'",
        )
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps the record of run `id`, answered at once without an idempotency key, so that
    /// `GET /v1/runs/{id}` finds it on any daemon (until the sweep forgets it).
    pub async fn record_sync(
        &self,
        id: &str,
        caller: &str,
        status: u16,
        record: &str,
    ) -> Result<(), ClusterError> {
        sqlx::query(
            "INSERT INTO warden_runs
               (id, caller, request_sha256, package, request, state, mode, attempts, status,
                record, finished_at)
             VALUES ($1, $2, '', '', '', 'finished', 'sync', 1, $3, $4::jsonb, now())
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(caller)
        .bind(i32::from(status))
        .bind(record)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds `events` (their JSON) to attempt `attempt` of run `id`, numbered from `first`,
    /// and tells listeners. False when that attempt no longer holds the run (nothing added).
    pub async fn append_events(
        &self,
        id: &str,
        attempt: i32,
        first: i32,
        events: &[String],
    ) -> Result<bool, ClusterError> {
        let numbers: Vec<i32> = (first..).take(events.len()).collect();
        let added = sqlx::query(
            "WITH added AS (
               INSERT INTO warden_run_events (run_id, attempt, seq, event)
               SELECT $1, $2, seq, event FROM UNNEST($3::integer[], $4::text[]) AS e(seq, event)
                WHERE EXISTS (SELECT 1 FROM warden_runs
                               WHERE id = $1 AND attempts = $2 AND state = 'running')
               RETURNING 1)
             SELECT count(*) AS added, pg_notify($5, $1) FROM added HAVING count(*) > 0",
        )
        .bind(id)
        .bind(attempt)
        .bind(&numbers)
        .bind(events)
        .bind(EVENTS_CHANNEL)
        .fetch_optional(&self.pool)
        .await?;
        Ok(added.is_some() || events.is_empty())
    }

    /// Up to `limit` events of attempt `attempt` of run `id` numbered after `after`, in order:
    /// their numbers and JSON.
    pub async fn events(
        &self,
        id: &str,
        attempt: i32,
        after: i32,
        limit: u32,
    ) -> Result<Vec<(i32, String)>, ClusterError> {
        let rows = sqlx::query(
            "SELECT seq, event FROM warden_run_events
              WHERE run_id = $1 AND attempt = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(id)
        .bind(attempt)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("seq")?, row.try_get("event")?)))
            .collect()
    }

    /// The run that `caller`'s idempotency `key` stands for, if any.
    pub async fn find(&self, caller: &str, key: &str) -> Result<Option<QueuedRun>, ClusterError> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM warden_runs WHERE caller = $1 AND idempotency_key = $2"
        ))
        .bind(caller)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(queued_run).transpose()?)
    }

    /// The run `id`, in whatever state.
    pub async fn get(&self, id: &str) -> Result<Option<QueuedRun>, ClusterError> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM warden_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(queued_run).transpose()?)
    }

    /// Runs waiting to be claimed.
    pub async fn depth(&self) -> Result<i64, ClusterError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM warden_runs WHERE state = 'queued'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Forgets finished runs older than `keep` (their answers, records and idempotency keys),
    /// and finishes with `expired` (the status and the answer a caller then gets) runs queued
    /// longer than `wait`, and with `abandoned` runs whose lease ran out longer than `wait` ago
    /// (no daemon that serves their package is left to take them again). Works in batches of `batch` rows until
    /// a batch comes back short, at most `MAX_SWEEP_BATCHES` of them. Returns what it forgot
    /// and what it finished.
    pub async fn sweep(
        &self,
        keep: Duration,
        wait: Duration,
        expired: (u16, &str),
        abandoned: (u16, &str),
        batch: u32,
    ) -> Result<(u64, u64), ClusterError> {
        let (mut forgotten, mut timed_out) = (0, 0);
        for _ in 0..MAX_SWEEP_BATCHES {
            // A run's events go with it (ON DELETE CASCADE). So does the key of a run answered
            // at once whose daemon died and which no retry took over within `wait`.
            let gone = sqlx::query(
                "DELETE FROM warden_runs WHERE id IN (
                   SELECT id FROM warden_runs
                    WHERE (state = 'finished' AND finished_at < now() - make_interval(secs => $1))
                       OR (mode = 'sync' AND state = 'running'
                           AND lease_until < now() - make_interval(secs => $3))
                    LIMIT $2)",
            )
            .bind(seconds(keep))
            .bind(bigint(batch))
            .bind(seconds(wait))
            .execute(&self.pool)
            .await?
            .rows_affected();
            forgotten += gone;
            if gone < u64::from(batch) {
                break;
            }
        }
        for (condition, answer) in [
            (
                "state = 'queued' AND created_at < now() - make_interval(secs => $1)",
                expired,
            ),
            (
                "state = 'running' AND mode = 'queued'
                 AND lease_until < now() - make_interval(secs => $1)",
                abandoned,
            ),
        ] {
            for _ in 0..MAX_SWEEP_BATCHES {
                let finished = sqlx::query(&format!(
                    "WITH gone AS (
                       UPDATE warden_runs
                          SET state = 'finished', status = $3, result = $4, finished_at = now(),
                              lease_until = NULL, request = ''
                        WHERE id IN (
                          SELECT id FROM warden_runs WHERE {condition}
                           LIMIT $2 FOR UPDATE SKIP LOCKED)
                       RETURNING id)
                     SELECT pg_notify($5, id) FROM gone"
                ))
                .bind(seconds(wait))
                .bind(bigint(batch))
                .bind(i32::from(answer.0))
                .bind(answer.1)
                .bind(FINISHED_CHANNEL)
                .fetch_all(&self.pool)
                .await?
                .len() as u64;
                timed_out += finished;
                if finished < u64::from(batch) {
                    break;
                }
            }
        }
        Ok((forgotten, timed_out))
    }

    /// Announces queued and finished runs on `wakeups`, listening on a connection of its own
    /// for as long as that sender lives. A lost connection is taken up again and announced as
    /// [`Wakeup::Missed`].
    /// `on` is a connection pool of the listener's own (`Database::probe` makes one): a
    /// listener holds its connection for good.
    pub async fn listen(
        on: &Database,
        wakeups: &broadcast::Sender<Wakeup>,
    ) -> Result<(), ClusterError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(on.pool()).await?;
        listener
            .listen_all([QUEUED_CHANNEL, FINISHED_CHANNEL, EVENTS_CHANNEL])
            .await?;
        let wakeups = wakeups.downgrade();
        tokio::spawn(async move {
            loop {
                let wakeup = match listener.try_recv().await {
                    Ok(Some(notification)) => match notification.channel() {
                        QUEUED_CHANNEL => Wakeup::Queued(notification.payload().to_string()),
                        EVENTS_CHANNEL => Wakeup::Events(notification.payload().to_string()),
                        _ => Wakeup::Finished(notification.payload().to_string()),
                    },
                    // The connection was lost; the next call connects again.
                    Ok(None) => Wakeup::Missed,
                    Err(error) => {
                        tracing::warn!(%error, "listening to the cluster's database failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Wakeup::Missed
                    }
                };
                let Some(wakeups) = wakeups.upgrade() else {
                    return;
                };
                // No one waiting is fine.
                let _ = wakeups.send(wakeup);
            }
        });
        Ok(())
    }
}
