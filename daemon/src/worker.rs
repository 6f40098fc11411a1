//! The daemon's workers for queued runs, in a cluster.
//!
//! One dispatcher per daemon claims runs from the cluster's queue while this daemon has room:
//! a free worker (`cluster.workers`, as many as `host.concurrency` by default) and a free host
//! slot. One claim at a time per daemon, so a queued run wakes each daemon once, not each of its
//! workers. Each claimed run is taken in a task of its own, which renews the run's lease every
//! third of `cluster.lease` while the node runs, and records the answer in the queue.
//!
//! A run whose lease is lost (the database did not renew it in time: another worker may already
//! have taken it) is stopped at once and its answer dropped: the run's answer is the one
//! recorded under the lease. A run this daemon cannot start now (its node's queue is full, the
//! daemon is stopping) is given back to the queue at once, for any daemon.

use crate::api::Shared;
use crate::api::runs::{Answer, NotRun, StoredRun, run_stored};
use crate::cluster::ClusterLink;
use crate::telemetry;
use axum::http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::sync::broadcast::error::RecvError;
use warden_cluster::{Claimed, Wakeup};

/// How often an idle dispatcher looks at the queue without a notification: runs whose lease ran
/// out announce nothing, and a notification can be lost while the listener reconnects.
const POLL: Duration = Duration::from_secs(1);
/// How long a dispatcher waits after the database failed it.
const BACKOFF: Duration = Duration::from_secs(1);
/// How long this daemon's dispatcher waits after a run was given back before it claims again:
/// another daemon with room takes the run meanwhile.
const AFTER_GIVING_BACK: Duration = Duration::from_millis(200);
/// The longest one call to the queue may take (renewals wait at most a third of the lease):
/// a connection that hangs must not hold a worker past its lease.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A call to the queue, failed after `within`.
async fn bounded<T>(
    within: Duration,
    call: impl std::future::Future<Output = Result<T, warden_cluster::ClusterError>>,
) -> Result<T, String> {
    match tokio::time::timeout(within, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("the database did not answer within {within:?}")),
    }
}

/// The workers of a daemon in a cluster.
pub struct Workers {
    free: Arc<Semaphore>,
    count: u32,
    lease: Duration,
}

/// What the dispatcher and the runs it took share.
struct Dispatch {
    free: Arc<Semaphore>,
    /// Set when a run was given back: the dispatcher waits before it claims again.
    gave_back: std::sync::atomic::AtomicBool,
    /// Told when a run taken here ends: its worker and slots are free, and a backlog can be
    /// claimed from at once rather than at the next poll.
    done: tokio::sync::Notify,
}

impl Workers {
    /// Starts the dispatcher of `daemon`, if it is one of a cluster.
    pub fn start(daemon: &Shared) -> Option<Workers> {
        let link = daemon.cluster.clone()?;
        let count = link
            .settings
            .workers
            .unwrap_or(daemon.started_with.host.concurrency)
            .max(1);
        let free = Arc::new(Semaphore::new(count as usize));
        let lease = link.settings.lease;
        let dispatching = Arc::new(Dispatch {
            free: free.clone(),
            gave_back: std::sync::atomic::AtomicBool::new(false),
            done: tokio::sync::Notify::new(),
        });
        tokio::spawn(dispatch(daemon.clone(), link.clone(), dispatching));
        tokio::spawn(sweep(daemon.clone(), link));
        Some(Workers { free, count, lease })
    }

    /// Waits for the runs taken to be answered or given back (the dispatcher stops claiming
    /// once the daemon is shutting down): at most a lease and a call, as long as recording an
    /// answer may keep trying.
    pub async fn drain(&self) {
        let within = self.lease + CALL_TIMEOUT;
        let _ = tokio::time::timeout(within, self.free.acquire_many(self.count)).await;
    }
}

async fn dispatch(daemon: Shared, link: Arc<ClusterLink>, dispatching: Arc<Dispatch>) {
    use std::sync::atomic::Ordering;
    let mut wakeups = link.wakeups();
    let lease = link.settings.lease;
    loop {
        if daemon.is_shutting_down() {
            return;
        }
        if dispatching.gave_back.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(AFTER_GIVING_BACK).await;
        }
        let Ok(worker) = dispatching.free.clone().acquire_owned().await else {
            return;
        };
        // A host slot and a slot of the run's node free now: a claimed run starts at once
        // rather than waiting behind the runs this daemon answers directly (it may still lose
        // the slot to one of them, and then waits in the queue like any run).
        let packages: Vec<String> = daemon
            .current()
            .nodes
            .iter()
            .filter(|live| live.stopped().is_none() && !live.is_retired())
            .filter(|live| live.admission.in_use() < live.admission.capacity())
            .map(|live| live.name().to_string())
            .collect();
        // Answers waiting for slow callers past their budget: admission would refuse the run.
        let answers_waiting = daemon.undelivered.load(Ordering::SeqCst);
        let room = daemon.admission.in_use() < daemon.admission.capacity()
            && answers_waiting <= crate::daemon::MAX_UNDELIVERED_BYTES;
        if !room || packages.is_empty() || daemon.is_shutting_down() {
            drop(worker);
            idle(&mut wakeups, &dispatching.done).await;
            continue;
        }
        // The lease starts in the database during the claim: counted from before it was sent.
        let claimed_at = tokio::time::Instant::now();
        match bounded(CALL_TIMEOUT, link.queue.claim(&packages, lease)).await {
            Ok(Some(claimed)) => {
                let delivery = if claimed.redelivered {
                    "redelivered"
                } else {
                    "first"
                };
                metrics::counter!(telemetry::CLUSTER_CLAIMS, "delivery" => delivery).increment(1);
                if claimed.redelivered {
                    tracing::warn!(
                        run_id = %claimed.id,
                        attempt = claimed.attempt,
                        "taking a queued run again: the lease of the worker that had it ran out"
                    );
                }
                let (daemon, link, dispatching) =
                    (daemon.clone(), link.clone(), dispatching.clone());
                tokio::spawn(async move {
                    take(&daemon, &link, &dispatching, claimed, claimed_at).await;
                    drop(worker);
                    dispatching.done.notify_one();
                });
            }
            Ok(None) => {
                drop(worker);
                idle(&mut wakeups, &dispatching.done).await;
            }
            Err(error) => {
                drop(worker);
                tracing::warn!(%error, "claiming a queued run failed");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// How often each daemon sweeps the queue (every daemon does; a sweep is idempotent).
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Rows one sweep touches at most, so that one sweep stays a short statement.
const SWEEP_BATCH: u32 = 1000;

/// Forgets finished runs older than `host.run_record_ttl` (their answers, records and
/// idempotency keys), and answers runs queued longer than `cluster.max_queue_wait` with
/// `queue_expired` (no daemon serving their node took them).
async fn sweep(daemon: Shared, link: Arc<ClusterLink>) {
    let wait = link.settings.max_queue_wait;
    let answer = |message: String| {
        crate::api::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "queue_expired", message)
            .body()
            .to_string()
    };
    let expired = answer(format!(
        "the run waited in the queue longer than cluster.max_queue_wait ({wait:?}): no daemon serving its node took it"
    ));
    let abandoned = answer(format!(
        "the worker running this run stopped answering, and no daemon serving its node took it again within cluster.max_queue_wait ({wait:?})"
    ));
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if daemon.is_shutting_down() {
            return;
        }
        let keep = daemon.started_with.host.run_record_ttl;
        match link
            .queue
            .sweep(keep, wait, (503, &expired), (503, &abandoned), SWEEP_BATCH)
            .await
        {
            Ok((0, 0)) => {}
            Ok((forgotten, expired)) => {
                tracing::info!(forgotten, expired, "swept the cluster's queue")
            }
            Err(error) => tracing::warn!(%error, "sweeping the cluster's queue failed"),
        }
    }
}

/// Waits for a run to be queued, a run taken here to end, or `POLL` (after which the dispatcher
/// also sees a shutdown).
async fn idle(wakeups: &mut tokio::sync::broadcast::Receiver<Wakeup>, done: &tokio::sync::Notify) {
    let until = tokio::time::Instant::now() + POLL;
    loop {
        tokio::select! {
            wakeup = wakeups.recv() => match wakeup {
                Ok(Wakeup::Finished(_) | Wakeup::Events(_)) => continue,
                Err(RecvError::Closed) => tokio::time::sleep_until(until).await,
                _ => {}
            },
            () = tokio::time::sleep_until(until) => {}
            () = done.notified() => {}
        }
        return;
    }
}

/// Takes `claimed` (claimed at `claimed_at`): runs it under its lease and records its answer,
/// or gives it back.
async fn take(
    daemon: &Shared,
    link: &ClusterLink,
    dispatching: &Dispatch,
    claimed: Claimed,
    claimed_at: tokio::time::Instant,
) {
    let settings = &link.settings;
    let answer = if claimed.lost_leases >= i32::try_from(settings.max_attempts).unwrap_or(i32::MAX)
    {
        // Its workers stopped answering while running it this often: the run may be what
        // kills their daemons.
        tracing::warn!(run_id = %claimed.id, lost_leases = claimed.lost_leases, "a queued run is answered run_lost");
        lost(&claimed, settings.max_attempts)
    } else {
        match serde_json::from_str::<StoredRun>(&claimed.request) {
            Err(error) => crate::api::queued::refused(
                &claimed.id,
                &claimed.caller,
                crate::api::ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the queued request could not be read: {error}"),
                ),
            ),
            Ok(stored) => match run_leased(daemon, link, &claimed, claimed_at, stored).await {
                Some(answer) => answer,
                // The lease was lost: the run's answer is someone else's to record.
                None => return,
            },
        }
    };
    let shutting_down = answer.body["error"]["code"] == "shutting_down";
    if shutting_down || answer.status == StatusCode::TOO_MANY_REQUESTS {
        // Set before the run is back in the queue: the notice of its return must not wake this
        // dispatcher into taking it again at once.
        dispatching
            .gave_back
            .store(true, std::sync::atomic::Ordering::SeqCst);
        give_back(link, &claimed).await;
        return;
    }
    record(link, &claimed, answer).await;
}

/// Runs `stored` while renewing the lease of `claimed`: its answer, or `None` once the lease is
/// lost (the run is then stopped).
async fn run_leased(
    daemon: &Shared,
    link: &ClusterLink,
    claimed: &Claimed,
    claimed_at: tokio::time::Instant,
    stored: StoredRun,
) -> Option<Answer> {
    let (sink, events) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::spawn(write_events(link.queue.clone(), claimed.clone(), events));
    let task = {
        let (daemon, id) = (daemon.clone(), claimed.id.clone());
        tokio::spawn(async move { run_stored(&daemon, &id, stored, sink).await })
    };
    // The run's events are in the queue before its answer: a caller reading them sees the
    // answer after the last of them.
    let answer = run_leased_task(link, claimed, claimed_at, task).await;
    let mut writer = writer;
    if answer.is_none()
        || tokio::time::timeout(CALL_TIMEOUT, &mut writer)
            .await
            .is_err()
    {
        // Not left writing behind the answer: a follower that saw the run finished would
        // never read what it wrote after.
        writer.abort();
    }
    answer
}

/// Events written in one statement at most.
const EVENT_BATCH: usize = 256;

/// Writes the events of `claimed` to the queue in batches as they come, until the run ends
/// (what comes is bounded by `runs::MAX_QUEUED_EVENT_BYTES`).
async fn write_events(
    queue: warden_cluster::RunQueue,
    claimed: Claimed,
    mut events: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let mut next = 1i32;
    while let Some(event) = events.recv().await {
        let mut batch = vec![event.to_string()];
        while batch.len() < EVENT_BATCH {
            match events.try_recv() {
                Ok(event) => batch.push(event.to_string()),
                Err(_) => break,
            }
        }
        if !append(&queue, &claimed, &mut next, batch).await {
            return;
        }
    }
}

/// Appends `events` as numbers `next`, `next + 1`, …; false when the run's lease is gone (or
/// the database failed: the events are lost, the run goes on).
async fn append(
    queue: &warden_cluster::RunQueue,
    claimed: &Claimed,
    next: &mut i32,
    events: Vec<String>,
) -> bool {
    if events.is_empty() {
        return true;
    }
    let count = i32::try_from(events.len()).unwrap_or(i32::MAX);
    match bounded(
        CALL_TIMEOUT,
        queue.append_events(&claimed.id, claimed.attempt, *next, &events),
    )
    .await
    {
        Ok(true) => {
            *next = next.saturating_add(count);
            true
        }
        Ok(false) => false,
        Err(error) => {
            tracing::warn!(%error, run_id = %claimed.id, "a queued run's events could not be kept");
            *next = next.saturating_add(count);
            true
        }
    }
}

/// Waits for the run in `task` while renewing the lease of `claimed`: its answer, or `None`
/// once the lease is lost (the run is then stopped).
async fn run_leased_task(
    link: &ClusterLink,
    claimed: &Claimed,
    claimed_at: tokio::time::Instant,
    task: tokio::task::JoinHandle<Result<Answer, NotRun>>,
) -> Option<Answer> {
    let lease = link.settings.lease;
    let abort = task.abort_handle();
    let mut task = task;
    let every = lease / 3;
    let mut renewals = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The lease in the database runs out `lease` after the database took the last renewal it
    // confirmed, which is later than when that renewal was sent: stopping the run `lease` after
    // the sending stops it before another worker can take it.
    let mut deadline = claimed_at + lease;
    let stop = |why: &str| {
        abort.abort();
        lease_lost(claimed, why);
        None
    };
    loop {
        tokio::select! {
            ran = &mut task => {
                return Some(match ran {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(NotRun::Refused(error))) => {
                        crate::api::queued::refused(&claimed.id, &claimed.caller, error)
                    }
                    Ok(Err(NotRun::NotNow(error))) => {
                        tracing::info!(run_id = %claimed.id, reason = %error.message, "giving a queued run back");
                        Answer {
                            status: StatusCode::TOO_MANY_REQUESTS,
                            body: error.body(),
                            record: Arc::new(json!({})),
                        }
                    }
                    Err(error) => crate::api::queued::refused(
                        &claimed.id,
                        &claimed.caller,
                        crate::api::ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            format!("the run's task failed: {error}"),
                        ),
                    ),
                });
            }
            () = tokio::time::sleep_until(deadline) => {
                return stop("the database did not renew it in time");
            }
            _ = renewals.tick() => {
                let sent = tokio::time::Instant::now();
                let within = every.min(deadline.saturating_duration_since(sent));
                match bounded(within, link.queue.renew(claimed, lease)).await {
                    Ok(true) => deadline = sent + lease,
                    Ok(false) => return stop("another worker holds it now, or it was answered"),
                    Err(error) => {
                        tracing::warn!(%error, run_id = %claimed.id, "renewing a queued run's lease failed; trying again");
                    }
                }
            }
        }
    }
}

fn lease_lost(claimed: &Claimed, why: &str) {
    metrics::counter!(telemetry::CLUSTER_LEASES_LOST).increment(1);
    tracing::warn!(run_id = %claimed.id, "a queued run was stopped: its lease was lost ({why})");
}

/// Records the answer of `claimed`, trying again while the lease may still hold (the database
/// may be restarting); past that, the run is left for redelivery.
async fn record(link: &ClusterLink, claimed: &Claimed, answer: Answer) {
    let mut answer = answer;
    let mut result = answer.body.to_string();
    if result.len() > crate::api::queued::MAX_QUEUED_ANSWER_BYTES {
        let too_large = crate::api::queued::refused(
            &claimed.id,
            &claimed.caller,
            crate::api::ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "answer_too_large",
                format!(
                    "the run's answer was {} bytes, more than the {} a queued run keeps; run it synchronously (leave out \"mode\")",
                    result.len(),
                    crate::api::queued::MAX_QUEUED_ANSWER_BYTES
                ),
            ),
        );
        result = too_large.body.to_string();
        answer.status = too_large.status;
        // The record says what the caller gets.
        answer.record = too_large.record;
    }
    let record = answer.record.to_string();
    let until = tokio::time::Instant::now() + link.settings.lease;
    loop {
        let finishing = link
            .queue
            .finish(claimed, answer.status.as_u16(), &result, &record);
        match bounded(CALL_TIMEOUT, finishing).await {
            Ok(true) => return,
            Ok(false) => {
                lease_lost(claimed, "its answer came after the lease had run out");
                return;
            }
            Err(error) if tokio::time::Instant::now() < until => {
                tracing::warn!(%error, run_id = %claimed.id, "recording a queued run's answer failed; trying again");
                tokio::time::sleep(BACKOFF).await;
            }
            Err(error) => {
                tracing::warn!(%error, run_id = %claimed.id, "a queued run's answer could not be recorded; it will run again");
                return;
            }
        }
    }
}

async fn give_back(link: &ClusterLink, claimed: &Claimed) {
    if let Err(error) = bounded(CALL_TIMEOUT, link.queue.give_back(claimed)).await {
        tracing::warn!(%error, run_id = %claimed.id, "giving a queued run back failed; it is taken again when its lease runs out");
    }
}

/// The answer of a run whose workers stopped answering `max_attempts` times running it.
fn lost(claimed: &Claimed, max_attempts: u32) -> Answer {
    crate::api::queued::refused(
        &claimed.id,
        &claimed.caller,
        crate::api::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "run_lost",
            format!(
                "the daemons running this run stopped answering {max_attempts} times (cluster.max_attempts); it is not run again: queue it anew with a new idempotency key"
            ),
        ),
    )
}
