//! The PostgreSQL storage backend against a real PostgreSQL on loopback: the same cases as the
//! redb backend (one conformance suite runs on both), and quotas under writers on two "daemons"
//! (two connection pools).

use std::sync::Arc;
use warden_cluster::test_services::shared_postgres;
use warden_cluster::{ClusterError, Database, DatabaseOptions, PgStorage};
use warden_host::storage::{RedbStorage, StorageBackend, StorageError};

async fn database() -> Option<Database> {
    let server = shared_postgres()?;
    let url = server.fresh_database().await.expect("a fresh database");
    Some(
        Database::connect(&url, &DatabaseOptions::default())
            .await
            .expect("connect"),
    )
}

/// What every backend must do alike, byte counts included.
async fn conformance(store: &dyn StorageBackend) {
    store.set("p", "a/1", b"one", 1000).await.unwrap();
    store.set("p", "a/2", b"two", 1000).await.unwrap();
    store.set("p", "b", b"three", 1000).await.unwrap();
    store
        .set("p\0board", "a/3", b"other partition", 1000)
        .await
        .unwrap();
    assert_eq!(
        store.get("p", "a/1").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(store.get("p", "zz").await.unwrap(), None);
    assert_eq!(store.list("p", "a/", 10).await.unwrap(), ["a/1", "a/2"]);
    assert_eq!(store.list("p", "", 10).await.unwrap(), ["a/1", "a/2", "b"]);
    assert_eq!(store.list("p", "", 2).await.unwrap(), ["a/1", "a/2"]);
    assert_eq!(store.list("p\0board", "", 10).await.unwrap(), ["a/3"]);
    // Keys sort by their bytes, whatever the database's collation.
    store.set("s", "Z", b"", 1000).await.unwrap();
    store.set("s", "a", b"", 1000).await.unwrap();
    store.set("s", "é", b"", 1000).await.unwrap();
    store.set("s", "éa/1", b"", 1000).await.unwrap();
    assert_eq!(
        store.list("s", "", 10).await.unwrap(),
        ["Z", "a", "é", "éa/1"]
    );
    assert_eq!(store.list("s", "éa/", 10).await.unwrap(), ["éa/1"]);
    // Usage counts keys plus values; replacing counts the difference.
    assert_eq!(store.usage("p").await.unwrap(), 3 + 3 + 3 + 3 + 1 + 5);
    store.set("p", "b", b"3", 1000).await.unwrap();
    assert_eq!(store.usage("p").await.unwrap(), 3 + 3 + 3 + 3 + 1 + 1);
    assert!(store.delete("p", "a/1").await.unwrap());
    assert!(!store.delete("p", "a/1").await.unwrap());
    assert_eq!(store.usage("p").await.unwrap(), 3 + 3 + 1 + 1);
    assert_eq!(store.usage("nothing").await.unwrap(), 0);

    // Quota: a write that would pass it is refused and changes nothing.
    store.set("q", "k", &[0; 90], 100).await.unwrap();
    let refused = store.set("q", "k2", &[0; 20], 100).await.unwrap_err();
    assert_eq!(
        refused,
        StorageError::QuotaExceeded {
            needed: 91 + 22,
            quota: 100
        }
    );
    assert_eq!(store.get("q", "k2").await.unwrap(), None);
    assert_eq!(store.usage("q").await.unwrap(), 91);
    // Replacing a value within the quota fits even when adding it would not.
    store.set("q", "k", &[1; 95], 100).await.unwrap();
    assert_eq!(store.usage("q").await.unwrap(), 96);

    // The cache: expiry, its header in the count, and reclaiming expired entries for room.
    store
        .cache_set("c", "x", b"12345", 2_000, 100, 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.cache_get("c", "x", 1_999).await.unwrap().as_deref(),
        Some(&b"12345"[..])
    );
    assert_eq!(store.cache_get("c", "x", 2_000).await.unwrap(), None);
    assert_eq!(store.usage("c").await.unwrap(), 1 + 8 + 5);
    store
        .cache_set("c", "y", &[0; 70], 10_000, 100, 1_000)
        .await
        .unwrap();
    assert_eq!(store.usage("c").await.unwrap(), 14 + 1 + 8 + 70);
    // At 3,000, "x" has expired: writing "z" reclaims it rather than refusing.
    store
        .cache_set("c", "z", &[0; 10], 10_000, 100, 3_000)
        .await
        .unwrap();
    assert_eq!(store.usage("c").await.unwrap(), 79 + 1 + 8 + 10);
    let refused = store
        .cache_set("c", "w", &[0; 10], 10_000, 100, 3_000)
        .await
        .unwrap_err();
    assert!(matches!(refused, StorageError::QuotaExceeded { .. }));
    assert!(store.cache_remove("c", "y").await.unwrap());
    assert!(!store.cache_remove("c", "y").await.unwrap());
    assert_eq!(store.usage("c").await.unwrap(), 19);
    // Cache entries and storage keys of one name are apart.
    assert_eq!(store.get("c", "z").await.unwrap(), None);

    // A write refused even after reclaiming keeps what it reclaimed: a partition with more
    // expired entries than one write reclaims makes progress write after write.
    store
        .cache_set("r", "old", &[0; 11], 2_000, 100, 1_000)
        .await
        .unwrap();
    store
        .cache_set("r", "live", &[0; 66], 90_000, 100, 1_000)
        .await
        .unwrap();
    assert_eq!(store.usage("r").await.unwrap(), 3 + 8 + 11 + 4 + 8 + 66);
    let refused = store
        .cache_set("r", "big", &[0; 40], 90_000, 100, 5_000)
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        StorageError::QuotaExceeded {
            needed: 78 + 3 + 8 + 40,
            quota: 100
        }
    );
    assert_eq!(store.usage("r").await.unwrap(), 4 + 8 + 66);

    // The written key's own expired entry is replaced, not reclaimed as well: "k" (49 bytes)
    // and "e" (19) have expired, "l" (29) lives; rewriting "k" with 69 bytes reclaims "e" only.
    let set = |partition: &'static str, key: &'static str, len: usize, expiry: u64| async move {
        let value = vec![0; len];
        store
            .cache_set(partition, key, &value, expiry, 100, 1_000)
            .await
    };
    set("rewrite", "k", 40, 2_000).await.unwrap();
    set("rewrite", "e", 10, 2_000).await.unwrap();
    set("rewrite", "l", 20, 99_000).await.unwrap();
    store
        .cache_set("rewrite", "k", &[1; 60], 99_000, 100, 3_000)
        .await
        .unwrap();
    assert_eq!(store.usage("rewrite").await.unwrap(), 29 + 69);
    // Refused after reclaiming "e", a rewrite of expired "k" leaves "k" reclaimable later.
    set("refuse", "k", 40, 2_000).await.unwrap();
    set("refuse", "e", 10, 2_000).await.unwrap();
    set("refuse", "l", 20, 99_000).await.unwrap();
    let refused = store
        .cache_set("refuse", "k", &[1; 95], 99_000, 100, 3_000)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StorageError::QuotaExceeded { .. }),
        "{refused}"
    );
    assert_eq!(store.usage("refuse").await.unwrap(), 49 + 29);
    store
        .cache_set("refuse", "m", &[1; 50], 99_000, 100, 3_000)
        .await
        .unwrap();
    assert_eq!(store.usage("refuse").await.unwrap(), 29 + 59);

    // `exists` answers for storage keys, not cache entries.
    assert!(store.exists("p", "b").await.unwrap());
    assert!(!store.exists("p", "a/1").await.unwrap());
    assert!(!store.exists("rewrite", "l").await.unwrap());
}

#[tokio::test]
async fn redb_passes_the_conformance_suite() {
    conformance(&RedbStorage::in_memory().unwrap()).await;
}

#[tokio::test]
async fn postgres_passes_the_conformance_suite() {
    let Some(database) = database().await else {
        return;
    };
    conformance(&PgStorage::new(&database)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_held_up_by_a_lock_is_told_busy_and_deletes_of_nothing_write_nothing() {
    let Some(database) = database().await else {
        return;
    };
    let store = PgStorage::new(&database);
    store.set("held", "k", b"v", 1000).await.unwrap();
    // Another daemon, gone silent in the middle of a write to the partition.
    let mut silent = database.pool().begin().await.unwrap();
    sqlx::query("SELECT bytes FROM warden_usage WHERE partition = $1 FOR UPDATE")
        .bind(&b"held"[..])
        .execute(&mut *silent)
        .await
        .unwrap();
    let refused = store.set("held", "k", b"w", 1000).await.unwrap_err();
    // Told after the lock timeout, in words that name nothing of the database.
    assert_eq!(
        refused,
        StorageError::Backend("the storage is busy with other writers; try again".into())
    );
    silent.rollback().await.unwrap();
    store.set("held", "k", b"w", 1000).await.unwrap();

    assert!(!store.delete("empty", "k").await.unwrap());
    assert!(!store.cache_remove("empty", "k").await.unwrap());
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM warden_usage WHERE partition = $1")
        .bind(&b"empty"[..])
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn urls_with_unknown_parameters_are_refused_without_their_values() {
    let options = DatabaseOptions::default();
    let url = "postgres://warden@localhost/db?pasword=hunter2";
    let refused = Database::connect(url, &options).await.unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, ClusterError::Url(_)), "{message}");
    assert!(message.contains("`pasword`"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    let refused = Database::connect("http://db/warden", &options)
        .await
        .unwrap_err();
    assert!(matches!(refused, ClusterError::Url(_)), "{refused}");
}

#[tokio::test]
async fn a_missing_database_is_named_in_the_error() {
    let Some(server) = shared_postgres() else {
        return;
    };
    let refused = Database::connect(&server.url("no_such_database"), &DatabaseOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(refused, ClusterError::Connect(_)), "{refused}");
    assert!(
        refused.to_string().contains("no_such_database"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_holds_under_writers_on_two_daemons() {
    let Some(server) = shared_postgres() else {
        return;
    };
    let url = server.fresh_database().await.unwrap();
    // A stricter default isolation must not turn contention into failures: writes pick
    // READ COMMITTED themselves.
    let name = url
        .split('/')
        .nth(3)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let admin = Database::connect(&url, &DatabaseOptions::default())
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {name} SET default_transaction_isolation = 'serializable'"
    ))
    .execute(admin.pool())
    .await
    .unwrap();
    let options = DatabaseOptions::default();
    // Two pools are two daemons: nothing is shared but the database.
    let (first, second) = tokio::join!(
        Database::connect(&url, &options),
        Database::connect(&url, &options)
    );
    let daemons = [
        Arc::new(PgStorage::new(&first.unwrap())),
        Arc::new(PgStorage::new(&second.unwrap())),
    ];
    // Each write is 10 bytes (a 2-byte key, 8 bytes of value); the quota fits 25 of 64.
    let writers = (0..64).map(|i| {
        let store = daemons[i % 2].clone();
        tokio::spawn(async move { store.set("shared", &format!("{i:02}"), &[0; 8], 250).await })
    });
    let mut stored = 0;
    for writer in writers {
        match writer.await.unwrap() {
            Ok(()) => stored += 1,
            Err(StorageError::QuotaExceeded { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(stored, 25);
    assert_eq!(daemons[0].usage("shared").await.unwrap(), 250);
    assert_eq!(daemons[1].list("shared", "", 100).await.unwrap().len(), 25);
}

#[tokio::test]
async fn daemons_starting_together_migrate_once_and_newer_schemas_are_refused() {
    let Some(server) = shared_postgres() else {
        return;
    };
    let url = server.fresh_database().await.unwrap();
    let options = DatabaseOptions::default();
    let (first, second, third) = tokio::join!(
        Database::connect(&url, &options),
        Database::connect(&url, &options),
        Database::connect(&url, &options)
    );
    let database = first.unwrap();
    second.unwrap();
    third.unwrap();
    let version = database.schema_version().await.unwrap();
    assert!(version >= 1);
    sqlx::query("INSERT INTO warden_schema (version, description) VALUES ($1, 'from the future')")
        .bind(version + 1)
        .execute(database.pool())
        .await
        .unwrap();
    let refused = Database::connect(&url, &options).await.unwrap_err();
    assert!(
        matches!(refused, ClusterError::SchemaTooNew { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("upgrade this daemon"));
}

#[tokio::test]
async fn a_database_that_is_not_utf8_is_refused() {
    let Some(server) = shared_postgres() else {
        return;
    };
    let url = server.fresh_database().await.unwrap();
    let admin = Database::connect(&url, &DatabaseOptions::default())
        .await
        .unwrap();
    sqlx::raw_sql("CREATE DATABASE ascii ENCODING 'SQL_ASCII' TEMPLATE template0")
        .execute(admin.pool())
        .await
        .unwrap();
    let refused = Database::connect(&server.url("ascii"), &DatabaseOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(refused, ClusterError::Encoding(_)), "{refused}");
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_after_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = DatabaseOptions {
        connect_timeout: std::time::Duration::from_millis(300),
        ..DatabaseOptions::default()
    };
    let url = format!("postgres://warden:secret-password@127.0.0.1:{port}/db");
    let refused = Database::connect(&url, &options).await.unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, ClusterError::Connect(_)), "{message}");
    assert!(!message.contains("secret-password"), "{message}");
    let bad = Database::connect("mysql://nope", &options)
        .await
        .unwrap_err();
    assert!(matches!(bad, ClusterError::Url(_)), "{bad}");
}
