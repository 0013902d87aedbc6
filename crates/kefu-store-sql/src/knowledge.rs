//! Knowledge-base queries shared by both backends, instantiated per backend by [`kb_store!`].

pub(crate) const DOC_COLS: &str =
    "id, tenant_id, collection, source, title, format, lang, tags, content_hash, bytes, \
     chunk_count, created_at, updated_at";

pub(crate) const CHUNK_COLS: &str = "c.id, c.tenant_id, c.document_id, c.ord, c.headings, c.text, c.location, c.lang, \
     c.tags, c.tokens, c.content_hash, c.faq, d.collection, d.title AS document_title, d.source AS document_source";

/// Implements `kefu_store::KnowledgeStore` for a struct with `write` and `read` pools of database `$db`.
#[macro_export]
#[doc(hidden)]
macro_rules! kb_store {
    ($ty:ty, $db:ty, $row:ty) => {
        mod kb_impl {
            use super::*;
            use async_trait::async_trait;
            use kefu_store::*;
            use sqlx::Row;
            use uuid::Uuid;
            use $crate::common::{corrupt, json, map_err, uuid};
            use $crate::knowledge::{CHUNK_COLS, DOC_COLS};

            type R<T> = kefu_store::Result<T>;

            fn get<'r, T: sqlx::Decode<'r, $db> + sqlx::Type<$db>>(r: &'r $row, col: &str) -> R<T> {
                r.try_get::<T, _>(col).map_err(map_err)
            }

            fn strings(s: &str) -> R<Vec<String>> {
                serde_json::from_str(s).map_err(|e| StoreError::Backend(format!("bad json list: {e}")))
            }

            fn to_json(v: &[String]) -> String {
                serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
            }

            fn document(r: &$row) -> R<KbDocument> {
                Ok(KbDocument {
                    id: uuid(&get::<String>(r, "id")?)?,
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    collection: get(r, "collection")?,
                    source: get(r, "source")?,
                    title: get(r, "title")?,
                    format: get(r, "format")?,
                    lang: get(r, "lang")?,
                    tags: strings(&get::<String>(r, "tags")?)?,
                    content_hash: get(r, "content_hash")?,
                    bytes: get(r, "bytes")?,
                    chunk_count: get(r, "chunk_count")?,
                    created_at: from_ms(get(r, "created_at")?),
                    updated_at: from_ms(get(r, "updated_at")?),
                })
            }

            fn chunk(r: &$row) -> R<KbChunk> {
                Ok(KbChunk {
                    id: uuid(&get::<String>(r, "id")?)?,
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    document_id: uuid(&get::<String>(r, "document_id")?)?,
                    collection: get(r, "collection")?,
                    document_title: get(r, "document_title")?,
                    document_source: get(r, "document_source")?,
                    ord: get(r, "ord")?,
                    headings: strings(&get::<String>(r, "headings")?)?,
                    text: get(r, "text")?,
                    location: json(&get::<String>(r, "location")?)?,
                    lang: get(r, "lang")?,
                    tags: strings(&get::<String>(r, "tags")?)?,
                    tokens: get(r, "tokens")?,
                    content_hash: get(r, "content_hash")?,
                    faq: get::<Option<String>>(r, "faq")?.as_deref().map(json).transpose()?,
                })
            }

            fn job(r: &$row) -> R<KbJob> {
                let status: String = get(r, "status")?;
                Ok(KbJob {
                    id: uuid(&get::<String>(r, "id")?)?,
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    status: KbJobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
                    total: get(r, "total")?,
                    done: get(r, "done")?,
                    report: json(&get::<String>(r, "report")?)?,
                    created_at: from_ms(get(r, "created_at")?),
                    updated_at: from_ms(get(r, "updated_at")?),
                })
            }

            /// Appends a change inside `tx`. Updating the head row first locks it until the transaction ends, so
            /// sequence numbers are handed out in commit order.
            async fn log_change(
                tx: &mut sqlx::Transaction<'_, $db>,
                tenant: Uuid,
                document: Uuid,
                op: KbChangeOp,
                now: i64,
            ) -> R<i64> {
                let row = sqlx::query("UPDATE kb_log_head SET seq = seq + 1 WHERE id = 1 RETURNING seq")
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(map_err)?;
                let seq: i64 = get(&row, "seq")?;
                sqlx::query(
                    "INSERT INTO kb_changes (seq, tenant_id, document_id, op, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(seq)
                .bind(tenant.to_string())
                .bind(document.to_string())
                .bind(op.as_str())
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(map_err)?;
                Ok(seq)
            }

            #[async_trait]
            impl KnowledgeStore for $ty {
                async fn kb_find_document(&self, tenant: Uuid, collection: &str, source: &str) -> R<Option<KbDocument>> {
                    let sql = format!(
                        "SELECT {DOC_COLS} FROM kb_documents WHERE tenant_id = $1 AND collection = $2 AND source = $3"
                    );
                    let row = sqlx::query(&sql)
                        .bind(tenant.to_string())
                        .bind(collection)
                        .bind(source)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(map_err)?;
                    row.as_ref().map(document).transpose()
                }

                async fn kb_get_document(&self, tenant: Uuid, id: Uuid) -> R<Option<KbDocument>> {
                    let sql = format!("SELECT {DOC_COLS} FROM kb_documents WHERE tenant_id = $1 AND id = $2");
                    let row = sqlx::query(&sql)
                        .bind(tenant.to_string())
                        .bind(id.to_string())
                        .fetch_optional(&self.read)
                        .await
                        .map_err(map_err)?;
                    row.as_ref().map(document).transpose()
                }

                async fn kb_list_documents(
                    &self,
                    tenant: Uuid,
                    collection: Option<&str>,
                    limit: u32,
                    offset: u32,
                ) -> R<Vec<KbDocument>> {
                    let sql = format!(
                        "SELECT {DOC_COLS} FROM kb_documents WHERE tenant_id = $1 AND ($2 IS NULL OR collection = $2) \
                         ORDER BY updated_at DESC, id DESC LIMIT $3 OFFSET $4"
                    );
                    let rows = sqlx::query(&sql)
                        .bind(tenant.to_string())
                        .bind(collection)
                        .bind(i64::from(limit))
                        .bind(i64::from(offset))
                        .fetch_all(&self.read)
                        .await
                        .map_err(map_err)?;
                    rows.iter().map(document).collect()
                }

                async fn kb_document_vectors(&self, doc: Uuid, model: &str) -> R<Vec<StoredVectors>> {
                    let rows = sqlx::query(
                        "SELECT v.text_hash, v.data FROM kb_vectors v JOIN kb_chunks c ON c.id = v.chunk_id \
                         WHERE c.document_id = $1 AND v.model = $2",
                    )
                    .bind(doc.to_string())
                    .bind(model)
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter()
                        .map(|r| Ok(StoredVectors { text_hash: get(r, "text_hash")?, data: get(r, "data")? }))
                        .collect()
                }

                async fn kb_put_document(
                    &self,
                    new: NewKbDocument,
                    chunks: Vec<NewKbChunk>,
                    model: Option<&str>,
                ) -> R<KbDocument> {
                    let now = now_ms().timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    let existing = sqlx::query(
                        "SELECT id, created_at FROM kb_documents WHERE tenant_id = $1 AND collection = $2 AND source = $3",
                    )
                    .bind(new.tenant_id.to_string())
                    .bind(&new.collection)
                    .bind(&new.source)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    let id = match &existing {
                        Some(r) => {
                            let id = uuid(&get::<String>(r, "id")?)?;
                            sqlx::query("DELETE FROM kb_chunks WHERE document_id = $1")
                                .bind(id.to_string())
                                .execute(&mut *tx)
                                .await
                                .map_err(map_err)?;
                            sqlx::query(
                                "UPDATE kb_documents SET title = $1, format = $2, lang = $3, tags = $4, content_hash = $5, \
                                 bytes = $6, chunk_count = $7, updated_at = $8 WHERE id = $9",
                            )
                            .bind(&new.title)
                            .bind(&new.format)
                            .bind(&new.lang)
                            .bind(to_json(&new.tags))
                            .bind(&new.content_hash)
                            .bind(new.bytes)
                            .bind(chunks.len() as i64)
                            .bind(now)
                            .bind(id.to_string())
                            .execute(&mut *tx)
                            .await
                            .map_err(map_err)?;
                            id
                        }
                        None => {
                            let id = Uuid::now_v7();
                            sqlx::query(&format!(
                                "INSERT INTO kb_documents ({DOC_COLS}) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)"
                            ))
                            .bind(id.to_string())
                            .bind(new.tenant_id.to_string())
                            .bind(&new.collection)
                            .bind(&new.source)
                            .bind(&new.title)
                            .bind(&new.format)
                            .bind(&new.lang)
                            .bind(to_json(&new.tags))
                            .bind(&new.content_hash)
                            .bind(new.bytes)
                            .bind(chunks.len() as i64)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err(map_err)?;
                            id
                        }
                    };
                    for (ord, c) in chunks.iter().enumerate() {
                        let chunk_id = Uuid::now_v7();
                        sqlx::query(
                            "INSERT INTO kb_chunks (id, tenant_id, document_id, ord, headings, text, location, lang, tags, \
                             tokens, content_hash, faq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                        )
                        .bind(chunk_id.to_string())
                        .bind(new.tenant_id.to_string())
                        .bind(id.to_string())
                        .bind(ord as i64)
                        .bind(to_json(&c.headings))
                        .bind(&c.text)
                        .bind(c.location.to_string())
                        .bind(&c.lang)
                        .bind(to_json(&c.tags))
                        .bind(c.tokens)
                        .bind(&c.content_hash)
                        .bind(c.faq.as_ref().map(|f| f.to_string()))
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                        if let (Some(model), Some(v)) = (model, &c.vectors) {
                            sqlx::query(
                                "INSERT INTO kb_vectors (chunk_id, model, text_hash, data) VALUES ($1, $2, $3, $4)",
                            )
                            .bind(chunk_id.to_string())
                            .bind(model)
                            .bind(&v.text_hash)
                            .bind(&v.data)
                            .execute(&mut *tx)
                            .await
                            .map_err(map_err)?;
                        }
                    }
                    log_change(&mut tx, new.tenant_id, id, KbChangeOp::Upsert, now).await?;
                    let row = sqlx::query(&format!("SELECT {DOC_COLS} FROM kb_documents WHERE id = $1"))
                        .bind(id.to_string())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    let doc = document(&row)?;
                    tx.commit().await.map_err(map_err)?;
                    Ok(doc)
                }

                async fn kb_delete_document(&self, tenant: Uuid, id: Uuid) -> R<bool> {
                    let now = now_ms().timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    let done = sqlx::query("DELETE FROM kb_documents WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant.to_string())
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                    if done == 0 {
                        tx.rollback().await.map_err(map_err)?;
                        return Ok(false);
                    }
                    log_change(&mut tx, tenant, id, KbChangeOp::Delete, now).await?;
                    tx.commit().await.map_err(map_err)?;
                    Ok(true)
                }

                async fn kb_get_chunks(&self, tenant: Uuid, ids: &[Uuid]) -> R<Vec<KbChunk>> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    // Portable IN list: at most a page of hits is hydrated at a time.
                    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
                    let sql = format!(
                        "SELECT {CHUNK_COLS} FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id \
                         WHERE c.tenant_id = $1 AND c.id IN ({})",
                        marks.join(", ")
                    );
                    let mut q = sqlx::query(&sql).bind(tenant.to_string());
                    for id in ids {
                        q = q.bind(id.to_string());
                    }
                    let rows = q.fetch_all(&self.read).await.map_err(map_err)?;
                    rows.iter().map(chunk).collect()
                }

                async fn kb_document_chunks(
                    &self,
                    doc: Uuid,
                    model: Option<&str>,
                ) -> R<Vec<(KbChunk, Option<Vec<u8>>)>> {
                    let sql = format!(
                        "SELECT {CHUNK_COLS}, v.data FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id \
                         LEFT JOIN kb_vectors v ON v.chunk_id = c.id AND v.model = $2 \
                         WHERE c.document_id = $1 ORDER BY c.ord"
                    );
                    let rows = sqlx::query(&sql)
                        .bind(doc.to_string())
                        .bind(model.unwrap_or(""))
                        .fetch_all(&self.read)
                        .await
                        .map_err(map_err)?;
                    rows.iter().map(|r| Ok((chunk(r)?, get::<Option<Vec<u8>>>(r, "data")?))).collect()
                }

                async fn kb_document_ids(&self, after: Option<Uuid>, limit: u32) -> R<Vec<(Uuid, Uuid)>> {
                    let rows = sqlx::query(
                        "SELECT id, tenant_id FROM kb_documents WHERE id > $1 ORDER BY id LIMIT $2",
                    )
                    .bind(after.map(|a| a.to_string()).unwrap_or_default())
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter()
                        .map(|r| Ok((uuid(&get::<String>(r, "id")?)?, uuid(&get::<String>(r, "tenant_id")?)?)))
                        .collect()
                }

                async fn kb_put_vectors(
                    &self,
                    doc: Uuid,
                    model: &str,
                    vectors: Vec<(Uuid, StoredVectors)>,
                ) -> R<()> {
                    let now = now_ms().timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    let row = sqlx::query("SELECT tenant_id FROM kb_documents WHERE id = $1")
                        .bind(doc.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    let Some(row) = row else {
                        return Err(StoreError::NotFound);
                    };
                    let tenant = uuid(&get::<String>(&row, "tenant_id")?)?;
                    for (chunk_id, v) in &vectors {
                        // Only chunks of this document: a chunk replaced meanwhile simply gets nothing.
                        sqlx::query(
                            "INSERT INTO kb_vectors (chunk_id, model, text_hash, data) \
                             SELECT id, $2, $3, $4 FROM kb_chunks WHERE id = $1 AND document_id = $5 \
                             ON CONFLICT (chunk_id, model) DO UPDATE SET text_hash = excluded.text_hash, data = excluded.data",
                        )
                        .bind(chunk_id.to_string())
                        .bind(model)
                        .bind(&v.text_hash)
                        .bind(&v.data)
                        .bind(doc.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    }
                    log_change(&mut tx, tenant, doc, KbChangeOp::Upsert, now).await?;
                    tx.commit().await.map_err(map_err)?;
                    Ok(())
                }

                async fn kb_changes_after(&self, after: i64, limit: u32) -> R<Vec<KbChange>> {
                    let rows = sqlx::query(
                        "SELECT seq, tenant_id, document_id, op FROM kb_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                    )
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter()
                        .map(|r| {
                            let op: String = get(r, "op")?;
                            Ok(KbChange {
                                seq: get(r, "seq")?,
                                tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                                document_id: uuid(&get::<String>(r, "document_id")?)?,
                                op: KbChangeOp::parse(&op).ok_or_else(|| corrupt("change op", &op))?,
                            })
                        })
                        .collect()
                }

                async fn kb_head(&self) -> R<i64> {
                    let row = sqlx::query("SELECT seq FROM kb_log_head WHERE id = 1")
                        .fetch_one(&self.read)
                        .await
                        .map_err(map_err)?;
                    get(&row, "seq")
                }

                async fn kb_create_job(&self, tenant: Uuid, total: i64) -> R<KbJob> {
                    let now = now_ms();
                    let j = KbJob {
                        id: Uuid::now_v7(),
                        tenant_id: tenant,
                        status: KbJobStatus::Running,
                        total,
                        done: 0,
                        report: serde_json::json!([]),
                        created_at: now,
                        updated_at: now,
                    };
                    sqlx::query(
                        "INSERT INTO kb_jobs (id, tenant_id, status, total, done, report, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, 0, '[]', $5, $5)",
                    )
                    .bind(j.id.to_string())
                    .bind(tenant.to_string())
                    .bind(j.status.as_str())
                    .bind(total)
                    .bind(now.timestamp_millis())
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    Ok(j)
                }

                async fn kb_update_job(
                    &self,
                    tenant: Uuid,
                    id: Uuid,
                    status: KbJobStatus,
                    done: i64,
                    report: &serde_json::Value,
                ) -> R<()> {
                    let n = sqlx::query(
                        "UPDATE kb_jobs SET status = $1, done = $2, report = $3, updated_at = $4 \
                         WHERE tenant_id = $5 AND id = $6",
                    )
                    .bind(status.as_str())
                    .bind(done)
                    .bind(report.to_string())
                    .bind(now_ms().timestamp_millis())
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                    if n == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn kb_get_job(&self, tenant: Uuid, id: Uuid) -> R<Option<KbJob>> {
                    let row = sqlx::query(
                        "SELECT id, tenant_id, status, total, done, report, created_at, updated_at FROM kb_jobs \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(map_err)?;
                    row.as_ref().map(job).transpose()
                }
            }
        }
    };
}
