//! The conformance suite against both real backends.

use std::sync::Arc;

use kefu_store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_conformance() {
    let dir = std::env::temp_dir().join(format!("kefu-store-{}", uuid_like()));
    let store = kefu_store_sql::SqliteStore::open(&dir.join("kefu.db"), 4)
        .await
        .unwrap();
    kefu_store::conformance::run_all(Arc::new(store) as Arc<dyn Store>).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_conformance() {
    let url = kefu_testkit::pg::fresh_database().await;
    let store = kefu_store_sql::connect(&url, 8).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    kefu_store::conformance::run_all(store).await;
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode_and_migrations_are_idempotent() {
    let dir = std::env::temp_dir().join(format!("kefu-store-{}", uuid_like()));
    let path = dir.join("nested").join("kefu.db");
    drop(kefu_store_sql::SqliteStore::open(&path, 1).await.unwrap());
    assert!(path.exists());
    // Reopening runs migrations again without error and keeps data.
    let s = kefu_store_sql::SqliteStore::open(&path, 1).await.unwrap();
    s.ping().await.unwrap();
    let wal = dir.join("nested").join("kefu.db-wal");
    assert!(wal.exists(), "WAL journal expected beside the database");
    let _ = std::fs::remove_dir_all(dir);
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
