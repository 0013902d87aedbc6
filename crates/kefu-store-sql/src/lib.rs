//! SQLite and PostgreSQL backends for [`kefu_store::Store`].
//!
//! Both schemas use the same portable column types (UUID text, epoch-millisecond integers, JSON text), and both
//! engines accept `$N` placeholders, `RETURNING` and `ON CONFLICT`, so the queries are written once in
//! [`sql_store!`] and instantiated per backend. Migrations are per backend (`migrations/sqlite`, `migrations/postgres`)
//! so each can diverge when a feature needs it.

mod common;
mod knowledge;
mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::sync::Arc;

use kefu_store::{Store, StoreError};

/// Opens the store a database URL names: `postgres://…` / `postgresql://…` for PostgreSQL, `sqlite://PATH` or a
/// plain file path for SQLite. Runs pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, max_connections).await?))
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Ok(Arc::new(
            SqliteStore::open(std::path::Path::new(path), max_connections).await?,
        ))
    }
}
