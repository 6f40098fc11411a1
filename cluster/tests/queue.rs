//! The queue of runs against a real PostgreSQL on loopback: claims that skip each other's rows,
//! leases that run out and fence the worker that lost them, idempotency keys, bounds,
//! notifications and the sweep. Two `RunQueue`s on two pools stand for two daemons.

use std::time::Duration;
use tokio::sync::broadcast;
use warden_cluster::test_services::shared_postgres;
use warden_cluster::{
    Database, DatabaseOptions, Enqueued, NewRun, QueueBounds, RunQueue, RunState, SyncBegun, Wakeup,
};

const BOUNDS: QueueBounds = QueueBounds {
    per_caller: 100,
    total: 1000,
};

/// Two daemons' queues on one fresh database.
async fn queues() -> Option<(RunQueue, RunQueue, Database)> {
    let server = shared_postgres()?;
    let url = server.fresh_database().await.expect("a fresh database");
    let connect = || async {
        Database::connect(&url, &DatabaseOptions::default())
            .await
            .expect("connect")
    };
    let (a, b) = (connect().await, connect().await);
    Some((RunQueue::new(&a, "a"), RunQueue::new(&b, "b"), a))
}

fn run<'a>(id: &'a str, key: Option<&'a str>, sha: &'a str) -> NewRun<'a> {
    NewRun {
        id,
        caller: "ann",
        idempotency_key: key,
        request_sha256: sha,
        package: "pkg",
        request: r#"{"node":"pkg"}"#,
    }
}

fn packages() -> Vec<String> {
    vec!["pkg".to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_claimed_once_and_its_lease_fences_a_worker_that_lost_it() {
    let Some((a, b, _db)) = queues().await else {
        return;
    };
    assert!(matches!(
        a.enqueue(&run("r1", Some("k1"), "s1"), BOUNDS)
            .await
            .unwrap(),
        Enqueued::Queued
    ));
    let lease = Duration::from_millis(1500);
    let first = a.claim(&packages(), lease).await.unwrap().expect("claimed");
    assert_eq!((first.id.as_str(), first.attempt), ("r1", 1));
    assert!(!first.redelivered);
    // The other daemon finds nothing: the row is taken, and packages it does not serve are not
    // its to take.
    assert!(b.claim(&packages(), lease).await.unwrap().is_none());
    assert!(matches!(
        b.enqueue(
            &NewRun {
                package: "other",
                ..run("r2", None, "s2")
            },
            BOUNDS
        )
        .await
        .unwrap(),
        Enqueued::Queued
    ));
    assert!(b.claim(&packages(), lease).await.unwrap().is_none());
    assert!(a.renew(&first, lease).await.unwrap());

    // A's lease runs out (its daemon paused): B takes the run again, and A can neither renew
    // nor answer it any more.
    tokio::time::sleep(lease + Duration::from_millis(500)).await;
    let second = b
        .claim(&packages(), lease)
        .await
        .unwrap()
        .expect("taken again");
    assert_eq!((second.id.as_str(), second.attempt), ("r1", 2));
    assert!(second.redelivered);
    assert_eq!(second.lost_leases, 1);
    assert!(!a.renew(&first, lease).await.unwrap());
    assert!(
        !a.finish(&first, 200, "{\"late\":true}", "{}")
            .await
            .unwrap()
    );
    assert!(
        b.finish(&second, 200, "{\"ok\":true}", "{\"run_id\":\"r1\"}")
            .await
            .unwrap()
    );
    // Once answered, the answer stays the first one recorded.
    assert!(!b.finish(&second, 500, "{}", "{}").await.unwrap());
    let done = a.get("r1").await.unwrap().expect("the run");
    assert_eq!(done.state, RunState::Finished);
    assert_eq!(done.attempts, 2);
    assert_eq!(done.status, Some(200));
    assert_eq!(done.result.as_deref(), Some("{\"ok\":true}"));
    assert_eq!(done.record.as_deref(), Some("{\"run_id\": \"r1\"}"));

    // The key stands for that run, answered; another request under it is told apart by hash.
    match a
        .enqueue(&run("r3", Some("k1"), "s1"), BOUNDS)
        .await
        .unwrap()
    {
        Enqueued::Existing(existing) => {
            assert_eq!(existing.id, "r1");
            assert_eq!(existing.request_sha256, "s1");
        }
        other => panic!("{other:?}"),
    }
    assert!(a.get("r3").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_two_daemons_share_a_queue_without_taking_a_run_twice() {
    let Some((a, b, _db)) = queues().await else {
        return;
    };
    let ids: Vec<String> = (0..40).map(|i| format!("run-{i:02}")).collect();
    for id in &ids {
        a.enqueue(&run(id, None, "s"), BOUNDS).await.unwrap();
    }
    assert_eq!(a.depth().await.unwrap(), 40);
    let lease = Duration::from_secs(30);
    let drain = |queue: RunQueue| async move {
        let mut taken = Vec::new();
        while let Some(claimed) = queue.claim(&packages(), lease).await.unwrap() {
            assert!(queue.finish(&claimed, 200, "{}", "{}").await.unwrap());
            taken.push(claimed.id);
        }
        taken
    };
    let (from_a, from_b) = tokio::join!(
        tokio::spawn(drain(a.clone())),
        tokio::spawn(drain(b.clone()))
    );
    let mut all: Vec<String> = from_a.unwrap().into_iter().chain(from_b.unwrap()).collect();
    all.sort();
    assert_eq!(all, ids, "every run taken exactly once");
    assert_eq!(a.depth().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_give_back_notifications_and_the_sweep() {
    let Some((a, b, db)) = queues().await else {
        return;
    };
    let (wakeups, _) = broadcast::channel(64);
    RunQueue::listen(&db.probe(Duration::from_secs(5)), &wakeups)
        .await
        .unwrap();
    let mut heard = wakeups.subscribe();

    let tight = QueueBounds {
        per_caller: 2,
        total: 3,
    };
    a.enqueue(&run("r1", None, "s"), tight).await.unwrap();
    a.enqueue(&run("r2", None, "s"), tight).await.unwrap();
    assert!(matches!(
        a.enqueue(&run("r3", None, "s"), tight).await.unwrap(),
        Enqueued::CallerFull
    ));
    assert!(matches!(
        a.enqueue(
            &NewRun {
                caller: "bob",
                ..run("r3", None, "s")
            },
            tight
        )
        .await
        .unwrap(),
        Enqueued::Queued
    ));
    assert!(matches!(
        a.enqueue(
            &NewRun {
                caller: "cat",
                ..run("r4", None, "s")
            },
            tight
        )
        .await
        .unwrap(),
        Enqueued::QueueFull
    ));
    let within = Duration::from_secs(10);
    for _ in 0..3 {
        let wakeup = tokio::time::timeout(within, heard.recv()).await.unwrap();
        assert_eq!(wakeup.unwrap(), Wakeup::Queued("pkg".into()));
    }

    // Given back, a run is at once claimable again, by anyone.
    let claimed = a
        .claim(&packages(), Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    a.give_back(&claimed).await.unwrap();
    let wakeup = tokio::time::timeout(within, heard.recv()).await.unwrap();
    assert_eq!(wakeup.unwrap(), Wakeup::Queued("pkg".into()));
    let again = b
        .claim(&packages(), Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id.clone(), again.attempt), (claimed.id.clone(), 2));
    assert!(!again.redelivered, "given back, not lost");
    assert_eq!(again.lost_leases, 0, "a run given back has lost no lease");
    assert!(b.finish(&again, 200, "{}", "{}").await.unwrap());
    let wakeup = tokio::time::timeout(within, heard.recv()).await.unwrap();
    assert_eq!(wakeup.unwrap(), Wakeup::Finished(again.id.clone()));

    // The sweep: queued too long is answered as expired (and announced); finished long enough
    // ago is forgotten, its key with it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (forgotten, expired) = a
        .sweep(
            Duration::from_secs(1),
            Duration::from_secs(1),
            (503, "{\"error\":\"expired\"}"),
            (503, "{\"error\":\"abandoned\"}"),
            100,
        )
        .await
        .unwrap();
    assert_eq!((forgotten, expired), (1, 2));
    assert!(a.get(&again.id).await.unwrap().is_none());
    let waited = a.get("r3").await.unwrap().unwrap();
    assert_eq!(waited.state, RunState::Finished);
    assert_eq!(waited.status, Some(503));
    assert_eq!(a.depth().await.unwrap(), 0);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_running_with_no_daemon_to_take_it_again_is_swept() {
    let Some((a, _b, _db)) = queues().await else {
        return;
    };
    a.enqueue(&run("r1", None, "s"), BOUNDS).await.unwrap();
    let claimed = a
        .claim(&packages(), Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap();
    // Its worker died; no daemon serving `pkg` is left to claim it again.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let swept = a
        .sweep(
            Duration::from_secs(3600),
            Duration::from_secs(1),
            (503, "expired"),
            (503, "abandoned"),
            100,
        )
        .await
        .unwrap();
    assert_eq!(swept, (0, 1));
    let run = a.get("r1").await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Finished);
    assert_eq!(run.result.as_deref(), Some("abandoned"));
    // The worker, were it to come back, can no longer answer.
    assert!(!a.finish(&claimed, 200, "{}", "{}").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_runs_answered_at_once_are_shared_and_taken_over_when_their_daemon_dies() {
    let Some((a, b, _db)) = queues().await else {
        return;
    };
    let lease = Duration::from_millis(1200);
    let started = a
        .begin_sync("s1", "ann", "k1", "sha1", lease)
        .await
        .unwrap();
    assert!(
        matches!(&started, SyncBegun::Started { id, attempt: 1 } if id == "s1"),
        "{started:?}"
    );
    // Another daemon finds the key's run in progress, and no worker claims it.
    match b
        .begin_sync("s2", "ann", "k1", "sha1", lease)
        .await
        .unwrap()
    {
        SyncBegun::Existing(run) => {
            assert_eq!(
                (run.id.as_str(), run.state, run.sync),
                ("s1", RunState::Running, true)
            );
        }
        other => panic!("{other:?}"),
    }
    // Queueing with the key finds the run answered at once, for the daemon to refuse.
    match b
        .enqueue(&run("q1", Some("k1"), "sha1"), BOUNDS)
        .await
        .unwrap()
    {
        Enqueued::Existing(run) => assert!(run.sync),
        other => panic!("{other:?}"),
    }
    // Its daemon dies: once the lease has run out, a worker still does not claim it (it has no
    // request), but a retry on another daemon takes it over, under the first run's id.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert!(b.claim(&packages(), lease).await.unwrap().is_none());
    // A daemon that has not looked yet (its first claim looks for lapsed leases), even one
    // serving the empty package name, does not take it.
    let fresh = RunQueue::new(&_db, "c");
    assert!(
        fresh
            .claim(&[String::new()], lease)
            .await
            .unwrap()
            .is_none()
    );
    // A different request under the key does not take it over.
    assert!(matches!(
        b.begin_sync("s3", "ann", "k1", "other", lease)
            .await
            .unwrap(),
        SyncBegun::Existing(_)
    ));
    let taken = b
        .begin_sync("s3", "ann", "k1", "sha1", lease)
        .await
        .unwrap();
    assert!(
        matches!(&taken, SyncBegun::Started { id, attempt: 2 } if id == "s1"),
        "{taken:?}"
    );
    // The dead daemon's attempt can no longer answer; the new one's answer is the key's.
    assert!(
        !a.finish_attempt("s1", 1, 200, Some("{}"), "{}")
            .await
            .unwrap()
    );
    assert!(
        b.finish_attempt("s1", 2, 200, Some("{\"ok\":1}"), "{\"caller\":\"ann\"}")
            .await
            .unwrap()
    );
    match a
        .begin_sync("s4", "ann", "k1", "sha1", lease)
        .await
        .unwrap()
    {
        SyncBegun::Existing(run) => {
            assert_eq!(run.state, RunState::Finished);
            assert_eq!(run.result.as_deref(), Some("{\"ok\":1}"));
            assert_eq!(run.attempts, 2);
        }
        other => panic!("{other:?}"),
    }

    // A key given back (the request was refused before it ran) is free again.
    assert!(matches!(
        a.begin_sync("s5", "ann", "k2", "sha2", lease)
            .await
            .unwrap(),
        SyncBegun::Started { attempt: 1, .. }
    ));
    a.release_sync("s5", 1).await.unwrap();
    assert!(a.find("ann", "k2").await.unwrap().is_none());
    // An answer too large to keep leaves the record, without the answer.
    assert!(matches!(
        a.begin_sync("s6", "ann", "k3", "sha3", lease)
            .await
            .unwrap(),
        SyncBegun::Started { attempt: 1, .. }
    ));
    assert!(
        a.finish_attempt("s6", 1, 200, None, "{\"caller\":\"ann\"}")
            .await
            .unwrap()
    );
    let kept = b.get("s6").await.unwrap().unwrap();
    assert_eq!((kept.result, kept.record.is_some()), (None, true));

    // The record of a run without a key is found on any daemon, once.
    a.record_sync("s7", "ann", 200, "{\"run_id\":\"s7\"}")
        .await
        .unwrap();
    a.record_sync("s7", "ann", 500, "{}").await.unwrap();
    let found = b.get("s7").await.unwrap().unwrap();
    assert_eq!(
        (found.state, found.status, found.sync),
        (RunState::Finished, Some(200), true)
    );

    // Runs answered at once do not count against the queue's bounds.
    let tight = QueueBounds {
        per_caller: 1,
        total: 1,
    };
    assert!(matches!(
        b.begin_sync("s8", "ann", "k8", "sha8", lease)
            .await
            .unwrap(),
        SyncBegun::Started { .. }
    ));
    assert!(matches!(
        b.enqueue(&run("q2", None, "shaq"), tight).await.unwrap(),
        Enqueued::Queued
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_renewed_while_the_main_pool_is_taken() {
    let Some(server) = shared_postgres() else {
        return;
    };
    let url = server.fresh_database().await.expect("a fresh database");
    let options = DatabaseOptions {
        max_connections: 1,
        acquire_timeout: Duration::from_millis(300),
        ..DatabaseOptions::default()
    };
    let database = Database::connect(&url, &options).await.expect("connect");
    let queue = RunQueue::new(&database, "a");
    queue.enqueue(&run("r1", None, "s1"), BOUNDS).await.unwrap();
    let lease = Duration::from_secs(30);
    let claimed = queue.claim(&packages(), lease).await.unwrap().unwrap();
    // Storage calls hold every connection of the main pool: queue calls on it wait in vain...
    let held = database.pool().acquire().await.unwrap();
    assert!(queue.get("r1").await.is_err());
    // ...but the renewal has connections of its own.
    assert!(queue.renew(&claimed, lease).await.unwrap());
    drop(held);
    assert!(queue.get("r1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_events_are_kept_for_its_attempt_and_go_with_it() {
    let Some((a, b, _db)) = queues().await else {
        return;
    };
    a.enqueue(&run("r1", None, "s1"), BOUNDS).await.unwrap();
    let lease = Duration::from_millis(1200);
    let first = a.claim(&packages(), lease).await.unwrap().unwrap();
    let events: Vec<String> = (1..=5).map(|i| format!("{{\"n\":{i}}}")).collect();
    assert!(a.append_events("r1", 1, 1, &events[..3]).await.unwrap());
    assert!(a.append_events("r1", 1, 4, &events[3..]).await.unwrap());
    let page = b.events("r1", 1, 2, 2).await.unwrap();
    assert_eq!(page, vec![(3, events[2].clone()), (4, events[3].clone())]);
    // The lease runs out and another worker takes the run: the first attempt adds no more.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let second = b.claim(&packages(), lease).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    assert!(!a.append_events("r1", 1, 6, &events[..1]).await.unwrap());
    assert_eq!(b.events("r1", 1, 0, 100).await.unwrap().len(), 5);
    assert!(b.append_events("r1", 2, 1, &events[..1]).await.unwrap());
    assert_eq!(b.events("r1", 2, 0, 100).await.unwrap().len(), 1);
    // Finished and forgotten, its events go too.
    assert!(b.finish(&second, 200, "{}", "{}").await.unwrap());
    drop(first);
    b.sweep(
        Duration::ZERO,
        Duration::from_secs(3600),
        (503, "{}"),
        (503, "{}"),
        100,
    )
    .await
    .unwrap();
    assert!(b.get("r1").await.unwrap().is_none());
    assert!(b.events("r1", 1, 0, 100).await.unwrap().is_empty());
    assert!(b.events("r1", 2, 0, 100).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_key_is_not_taken_over_and_a_forgotten_one_is_swept() {
    let Some((a, b, _db)) = queues().await else {
        return;
    };
    let lease = Duration::from_millis(800);
    assert!(matches!(
        a.begin_sync("s1", "ann", "k1", "sha1", lease)
            .await
            .unwrap(),
        SyncBegun::Started { attempt: 1, .. }
    ));
    // Renewed past its first lease, the key is still its daemon's.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(a.renew_attempt("s1", 1, lease).await.unwrap());
    }
    match b
        .begin_sync("s2", "ann", "k1", "sha1", lease)
        .await
        .unwrap()
    {
        SyncBegun::Existing(run) => assert_eq!(run.state, RunState::Running),
        other => panic!("{other:?}"),
    }
    // Its daemon stops renewing and no retry comes: the sweep forgets the key after `wait`.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    b.sweep(
        Duration::from_secs(3600),
        Duration::ZERO,
        (503, "{}"),
        (503, "{}"),
        100,
    )
    .await
    .unwrap();
    assert!(b.get("s1").await.unwrap().is_none());
    assert!(!a.renew_attempt("s1", 1, lease).await.unwrap());
    assert!(matches!(
        b.begin_sync("s3", "ann", "k1", "sha1", lease)
            .await
            .unwrap(),
        SyncBegun::Started { attempt: 1, .. }
    ));
}
