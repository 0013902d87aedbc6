//! PostgreSQL backend: the multi-node deployment. Row locks on the conversation serialise sequence numbers.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};

use kefu_store::StoreError;

use crate::common::map_err;

pub struct PgStore {
    write: Pool<Postgres>,
    read: Pool<Postgres>,
}

impl PgStore {
    /// Connects and runs migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(map_err)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        Ok(Self {
            write: pool.clone(),
            read: pool,
        })
    }
}

crate::sql_store!(PgStore, Postgres, sqlx::postgres::PgRow, "postgres");
crate::kb_store!(PgStore, Postgres, sqlx::postgres::PgRow);
