//! The audit log's one chain, appended by two daemons at once, against a real PostgreSQL on
//! loopback.

use warden_cluster::test_services::shared_postgres;
use warden_cluster::{AUDIT_GENESIS, Database, DatabaseOptions, PgAudit, line_hash};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_appending_at_once_make_one_unbroken_chain() {
    let Some(server) = shared_postgres() else {
        return;
    };
    let url = server.fresh_database().await.expect("a fresh database");
    let connect = || async {
        Database::connect(&url, &DatabaseOptions::default())
            .await
            .expect("connect")
    };
    let (a, b) = (connect().await, connect().await);
    let (a, b) = (PgAudit::new(&a), PgAudit::new(&b));
    assert!(a.last(10).await.unwrap().is_empty());

    // Each daemon appends 40 batches of 1 to 5 records, at the same time.
    let append = |audit: PgAudit, who: &'static str| async move {
        for batch in 0..40usize {
            let entries: Vec<usize> = (0..batch % 5 + 1).collect();
            audit
                .append(&entries, |entry, seq, prev| {
                    format!("{seq} {prev} {who}-{batch}-{entry}")
                })
                .await
                .unwrap();
        }
    };
    let (first, second) = tokio::join!(
        tokio::spawn(append(a.clone(), "a")),
        tokio::spawn(append(b.clone(), "b"))
    );
    first.unwrap();
    second.unwrap();

    // Read the whole chain back in pages, and check every link.
    let mut rows = Vec::new();
    loop {
        let page = b
            .after(
                rows.last()
                    .map_or(0, |row: &warden_cluster::AuditRow| row.seq),
                37,
            )
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        rows.extend(page);
    }
    let expected: usize = 2 * (0..40).map(|batch| batch % 5 + 1).sum::<usize>();
    assert_eq!(rows.len(), expected);
    let mut prev = AUDIT_GENESIS.to_string();
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, index as i64 + 1);
        let mut parts = row.line.split(' ');
        assert_eq!(parts.next(), Some(row.seq.to_string().as_str()));
        assert_eq!(
            parts.next(),
            Some(prev.as_str()),
            "record {} forks",
            row.seq
        );
        assert_eq!(row.hash, line_hash(&row.line));
        prev = row.hash.clone();
    }
    // A batch is appended whole: its records are consecutive.
    for who in ["a", "b"] {
        let batch: Vec<i64> = rows
            .iter()
            .filter(|row| row.line.contains(&format!(" {who}-9-")))
            .map(|row| row.seq)
            .collect();
        assert_eq!(batch.len(), 5);
        assert!(
            batch.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "{batch:?}"
        );
    }
    // The last records, oldest first.
    let last = a.last(3).await.unwrap();
    assert_eq!(
        last.iter().map(|row| row.seq).collect::<Vec<_>>(),
        vec![expected as i64 - 2, expected as i64 - 1, expected as i64]
    );
}
