//! SQLite backend: one file, WAL mode, one writer connection (SQLite allows one writer at a time; serialising
//! writes in-process avoids `SQLITE_BUSY` on lock upgrades) and a pool of readers.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

use kefu_store::StoreError;

use crate::common::map_err;

pub struct SqliteStore {
    write: Pool<Sqlite>,
    read: Pool<Sqlite>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs migrations.
    pub async fn open(path: &Path, max_readers: u32) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(map_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await
            .map_err(map_err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        let read = SqlitePoolOptions::new()
            .max_connections(max_readers.max(1))
            .connect_with(opts.read_only(true))
            .await
            .map_err(map_err)?;
        Ok(Self { write, read })
    }
}

crate::sql_store!(SqliteStore, Sqlite, sqlx::sqlite::SqliteRow, "sqlite");
crate::kb_store!(SqliteStore, Sqlite, sqlx::sqlite::SqliteRow);
