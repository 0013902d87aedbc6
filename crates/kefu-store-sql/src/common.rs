//! Queries shared by both backends, instantiated per backend by [`sql_store!`].

use kefu_store::StoreError;

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        e @ (sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)) => StoreError::Unavailable(e.to_string()),
        e => StoreError::Backend(e.to_string()),
    }
}

pub(crate) fn uuid(s: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::parse_str(s).map_err(|e| StoreError::Backend(format!("bad uuid {s:?}: {e}")))
}

pub(crate) fn json(s: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Backend(format!("bad json: {e}")))
}

pub(crate) fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Backend(format!("unexpected {what} {v:?}"))
}

pub(crate) const MSG_COLS: &str =
    "id, tenant_id, conversation_id, seq, role, content, idempotency_key, reply_to_seq, \
     model, prompt_tokens, completion_tokens, latency_ms, fallback, reply_pending, created_at, trace";

pub(crate) const TICKET_COLS: &str =
    "id, tenant_id, number, conversation_id, customer_id, subject, description, department, priority, status, \
     source, created_by, assignee_id, external_ref, created_at, updated_at, first_response_due_at, \
     resolution_due_at, first_responded_at, resolved_at, paused_ms, paused_since, version";

/// Hand-over conditions: the conversation is held by the agent bound as `$5`; or by no agent.
pub(crate) const HELD_BY_FROM: &str = "handler = 'agent' AND assignee_id = $5";
pub(crate) const HELD_BY_NOBODY: &str = "(handler <> 'agent' OR assignee_id IS NULL)";

pub(crate) const CONV_COLS: &str =
    "id, tenant_id, customer_id, channel, status, handler, flagged, subject, metadata, last_seq, \
     created_at, updated_at, closed_at, assignee_id, queued_at, rating, rating_comment, team";

/// Implements `kefu_store::Store` for a struct with `write` and `read` pools of database `$db`.
#[macro_export]
#[doc(hidden)]
macro_rules! sql_store {
    ($ty:ty, $db:ty, $row:ty, $backend:literal) => {
        mod sql_impl {
            use super::*;
            use async_trait::async_trait;
            use kefu_store::*;
            use sqlx::Row;
            use uuid::Uuid;
            use $crate::common::{
                corrupt, json, map_err, uuid, CONV_COLS, HELD_BY_FROM, HELD_BY_NOBODY, MSG_COLS, TICKET_COLS,
            };

            type R<T> = kefu_store::Result<T>;

            fn get<'r, T: sqlx::Decode<'r, $db> + sqlx::Type<$db>>(r: &'r $row, col: &str) -> R<T> {
                r.try_get::<T, _>(col).map_err(map_err)
            }

            fn intent_model_record(r: &$row) -> R<IntentModelRecord> {
                Ok(IntentModelRecord {
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    version: get(r, "version")?,
                    info: json(&get::<String>(r, "info")?)?,
                    bytes: get(r, "bytes")?,
                    created_by: get::<Option<String>>(r, "created_by")?.as_deref().map(uuid).transpose()?,
                    created_at: from_ms(get(r, "created_at")?),
                })
            }

            fn tenant(r: &$row) -> R<Tenant> {
                Ok(Tenant {
                    id: uuid(&get::<String>(r, "id")?)?,
                    slug: get(r, "slug")?,
                    name: get(r, "name")?,
                    customer_secret: get(r, "customer_secret")?,
                    model_config: get::<Option<String>>(r, "model_config")?.as_deref().map(json).transpose()?,
                    desk_config: get::<Option<String>>(r, "desk_config")?.as_deref().map(json).transpose()?,
                    moderation_config: get::<Option<String>>(r, "moderation_config")?.as_deref().map(json).transpose()?,
                    intent_model: get::<Option<i32>>(r, "intent_model")?,
                    created_at: from_ms(get(r, "created_at")?),
                })
            }

            fn api_key(r: &$row) -> R<ApiKey> {
                Ok(ApiKey {
                    id: uuid(&get::<String>(r, "id")?)?,
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    name: get(r, "name")?,
                    prefix: get(r, "prefix")?,
                    key_hash: get(r, "key_hash")?,
                    revoked: get(r, "revoked")?,
                    created_at: from_ms(get(r, "created_at")?),
                })
            }

            fn staff(r: &$row) -> R<StaffUser> {
                let role: String = get(r, "role")?;
                Ok(StaffUser {
                    id: uuid(&get::<String>(r, "id")?)?,
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    email: get(r, "email")?,
                    display_name: get(r, "display_name")?,
                    role: StaffRole::parse(&role).ok_or_else(|| corrupt("role", &role))?,
                    password_hash: get(r, "password_hash")?,
                    teams: teams(&get::<String>(r, "teams")?)?,
                    created_at: from_ms(get(r, "created_at")?),
                })
            }

            fn customer(r: &$row) -> R<Customer> {
                Ok(Customer {
                    id: uuid(&get::<String>(r, "id")?)?,
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    external_id: get(r, "external_id")?,
                    display_name: get(r, "display_name")?,
                    created_at: from_ms(get(r, "created_at")?),
                })
            }

            fn conversation(r: &$row) -> R<Conversation> {
                let status: String = get(r, "status")?;
                let handler: String = get(r, "handler")?;
                Ok(Conversation {
                    id: uuid(&get::<String>(r, "id")?)?,
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    customer_id: uuid(&get::<String>(r, "customer_id")?)?,
                    channel: get(r, "channel")?,
                    status: ConversationStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                    handler: Handler::parse(&handler).ok_or_else(|| corrupt("handler", &handler))?,
                    flagged: get(r, "flagged")?,
                    subject: get(r, "subject")?,
                    metadata: json(&get::<String>(r, "metadata")?)?,
                    last_seq: get(r, "last_seq")?,
                    created_at: from_ms(get(r, "created_at")?),
                    updated_at: from_ms(get(r, "updated_at")?),
                    closed_at: get::<Option<i64>>(r, "closed_at")?.map(from_ms),
                    assignee_id: get::<Option<String>>(r, "assignee_id")?.as_deref().map(uuid).transpose()?,
                    queued_at: get::<Option<i64>>(r, "queued_at")?.map(from_ms),
                    rating: get::<Option<i32>>(r, "rating")?,
                    rating_comment: get(r, "rating_comment")?,
                    team: get(r, "team")?,
                })
            }

            fn teams(v: &str) -> R<Vec<String>> {
                serde_json::from_str(v).map_err(|_| corrupt("teams", v))
            }

            fn opt_uuid(r: &$row, col: &str) -> R<Option<Uuid>> {
                get::<Option<String>>(r, col)?.as_deref().map(uuid).transpose()
            }

            fn ticket(r: &$row) -> R<Ticket> {
                let priority: String = get(r, "priority")?;
                let status: String = get(r, "status")?;
                Ok(Ticket {
                    id: uuid(&get::<String>(r, "id")?)?,
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    number: get(r, "number")?,
                    conversation_id: opt_uuid(r, "conversation_id")?,
                    customer_id: opt_uuid(r, "customer_id")?,
                    subject: get(r, "subject")?,
                    description: get(r, "description")?,
                    department: get(r, "department")?,
                    priority: TicketPriority::parse(&priority).ok_or_else(|| corrupt("priority", &priority))?,
                    status: TicketStatus::parse(&status).ok_or_else(|| corrupt("ticket status", &status))?,
                    source: get(r, "source")?,
                    created_by: opt_uuid(r, "created_by")?,
                    assignee_id: opt_uuid(r, "assignee_id")?,
                    external_ref: get(r, "external_ref")?,
                    created_at: from_ms(get(r, "created_at")?),
                    updated_at: from_ms(get(r, "updated_at")?),
                    first_response_due_at: from_ms(get(r, "first_response_due_at")?),
                    resolution_due_at: from_ms(get(r, "resolution_due_at")?),
                    first_responded_at: get::<Option<i64>>(r, "first_responded_at")?.map(from_ms),
                    resolved_at: get::<Option<i64>>(r, "resolved_at")?.map(from_ms),
                    paused_ms: get(r, "paused_ms")?,
                    paused_since: get::<Option<i64>>(r, "paused_since")?.map(from_ms),
                    version: get(r, "version")?,
                })
            }

            fn ticket_note(r: &$row) -> R<TicketNote> {
                Ok(TicketNote {
                    id: uuid(&get::<String>(r, "id")?)?,
                    ticket_id: uuid(&get::<String>(r, "ticket_id")?)?,
                    author_id: opt_uuid(r, "author_id")?,
                    body: get(r, "body")?,
                    internal: get(r, "internal")?,
                    created_at: from_ms(get(r, "created_at")?),
                })
            }

            fn message(r: &$row) -> R<Message> {
                let role: String = get(r, "role")?;
                Ok(Message {
                    id: uuid(&get::<String>(r, "id")?)?,
                    tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                    conversation_id: uuid(&get::<String>(r, "conversation_id")?)?,
                    seq: get(r, "seq")?,
                    role: MessageRole::parse(&role).ok_or_else(|| corrupt("role", &role))?,
                    content: get(r, "content")?,
                    idempotency_key: get(r, "idempotency_key")?,
                    reply_to_seq: get(r, "reply_to_seq")?,
                    generation: Generation {
                        model: get(r, "model")?,
                        prompt_tokens: get(r, "prompt_tokens")?,
                        completion_tokens: get(r, "completion_tokens")?,
                        latency_ms: get(r, "latency_ms")?,
                        fallback: get(r, "fallback")?,
                        trace: get::<Option<String>>(r, "trace")?.as_deref().map(json).transpose()?,
                    },
                    reply_pending: get(r, "reply_pending")?,
                    created_at: from_ms(get(r, "created_at")?),
                })
            }

            impl $ty {
                /// Takes the next sequence number of a conversation inside `tx`, locking the conversation row
                /// until the transaction ends. `NotFound` for an unknown conversation or another tenant's.
                async fn next_seq(
                    tx: &mut sqlx::Transaction<'_, $db>,
                    tenant: Uuid,
                    conv: Uuid,
                    require_open: bool,
                    now: i64,
                ) -> R<i64> {
                    let sql = if require_open {
                        "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1 \
                         WHERE tenant_id = $2 AND id = $3 AND status = 'open' RETURNING last_seq"
                    } else {
                        "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1 \
                         WHERE tenant_id = $2 AND id = $3 RETURNING last_seq"
                    };
                    let row = sqlx::query(sql)
                        .bind(now)
                        .bind(tenant.to_string())
                        .bind(conv.to_string())
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(map_err)?;
                    match row {
                        Some(r) => get(&r, "last_seq"),
                        None => {
                            let exists = sqlx::query("SELECT 1 FROM conversations WHERE tenant_id = $1 AND id = $2")
                                .bind(tenant.to_string())
                                .bind(conv.to_string())
                                .fetch_optional(&mut **tx)
                                .await
                                .map_err(map_err)?;
                            Err(if exists.is_some() { StoreError::ConversationClosed } else { StoreError::NotFound })
                        }
                    }
                }

                async fn insert_event(
                    tx: &mut sqlx::Transaction<'_, $db>,
                    tenant: Uuid,
                    conv: Uuid,
                    seq: i64,
                    data: &EventData,
                    now: i64,
                ) -> R<()> {
                    let payload = match data {
                        // Message events are joined with their message row when read.
                        EventData::MessageCreated(_) => None,
                        EventData::StatusChanged(s) => Some(serde_json::json!({ "status": s.as_str() }).to_string()),
                        EventData::Flagged { reason } => Some(serde_json::json!({ "reason": reason }).to_string()),
                        EventData::HandlerChanged { handler, reason, assignee } => Some(
                            serde_json::json!({
                                "handler": handler.as_str(),
                                "reason": reason,
                                "assignee": assignee.map(|a| a.to_string()),
                            })
                            .to_string(),
                        ),
                        EventData::Rated { rating, comment } => {
                            Some(serde_json::json!({ "rating": rating, "comment": comment }).to_string())
                        }
                    };
                    sqlx::query(
                        "INSERT INTO conversation_events (tenant_id, conversation_id, seq, kind, payload, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(tenant.to_string())
                    .bind(conv.to_string())
                    .bind(seq)
                    .bind(data.kind())
                    .bind(payload)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err(map_err)?;
                    Ok(())
                }

                /// After a conditional `UPDATE conversations ... RETURNING last_seq`: when it changed the row, appends
                /// `data` as the event at that sequence number.
                async fn event_if_changed(
                    tx: &mut sqlx::Transaction<'_, $db>,
                    changed: Option<$row>,
                    tenant: Uuid,
                    id: Uuid,
                    data: EventData,
                    now_dt: chrono::DateTime<chrono::Utc>,
                ) -> R<Option<Event>> {
                    let Some(r) = changed else { return Ok(None) };
                    let seq: i64 = get(&r, "last_seq")?;
                    Self::insert_event(tx, tenant, id, seq, &data, now_dt.timestamp_millis()).await?;
                    Ok(Some(Event { tenant_id: tenant, conversation_id: id, seq, data, created_at: now_dt }))
                }

                /// A conversation as seen inside `tx` (after its changes).
                async fn get_ticket_in(&self, pool: &sqlx::Pool<$db>, tenant: Uuid, id: Uuid) -> R<Ticket> {
                    let row = sqlx::query(&format!(
                        "SELECT {TICKET_COLS} FROM tickets WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .fetch_optional(pool)
                    .await
                    .map_err(map_err)?;
                    row.as_ref().map(ticket).transpose()?.ok_or(StoreError::NotFound)
                }

                /// Writes `t` if the row still has version `expected`; false when someone changed it first.
                async fn write_ticket(&self, t: &Ticket, expected: i64) -> R<bool> {
                    let ms = |d: chrono::DateTime<chrono::Utc>| d.timestamp_millis();
                    let r = sqlx::query(
                        "UPDATE tickets SET status = $1, priority = $2, department = $3, assignee_id = $4, \
                         updated_at = $5, first_response_due_at = $6, resolution_due_at = $7, first_responded_at = $8, \
                         resolved_at = $9, paused_ms = $10, paused_since = $11, version = $12 \
                         WHERE tenant_id = $13 AND id = $14 AND version = $15",
                    )
                    .bind(t.status.as_str())
                    .bind(t.priority.as_str())
                    .bind(&t.department)
                    .bind(t.assignee_id.map(|a| a.to_string()))
                    .bind(ms(t.updated_at))
                    .bind(ms(t.first_response_due_at))
                    .bind(ms(t.resolution_due_at))
                    .bind(t.first_responded_at.map(ms))
                    .bind(t.resolved_at.map(ms))
                    .bind(t.paused_ms)
                    .bind(t.paused_since.map(ms))
                    .bind(t.version)
                    .bind(t.tenant_id.to_string())
                    .bind(t.id.to_string())
                    .bind(expected)
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    Ok(r.rows_affected() == 1)
                }

                /// A hand-over's compare-and-set UPDATE inside `tx`. `set` is the SET list, `cond` the condition on who
                /// holds the conversation now; binds: `$1` the hand-over's own value, `$2` now (ms), `$3` tenant, `$4`
                /// the conversation, `$5` the current holder when `from` is set (`cond` must then use it). The row
                /// with the new `last_seq`, or `None` when the condition did not match.
                #[allow(clippy::too_many_arguments)]
                async fn hand_over(
                    tx: &mut sqlx::Transaction<'_, $db>,
                    set: &str,
                    cond: &str,
                    value: Option<String>,
                    now: i64,
                    tenant: Uuid,
                    id: Uuid,
                    from: Option<Uuid>,
                ) -> R<Option<$row>> {
                    let sql = format!(
                        "UPDATE conversations SET last_seq = last_seq + 1, {set}, updated_at = $2 \
                         WHERE tenant_id = $3 AND id = $4 AND status = 'open' AND {cond} RETURNING last_seq"
                    );
                    let mut query = sqlx::query(&sql)
                        .bind(value)
                        .bind(now)
                        .bind(tenant.to_string())
                        .bind(id.to_string());
                    if let Some(f) = from {
                        query = query.bind(f.to_string());
                    }
                    query.fetch_optional(&mut **tx).await.map_err(map_err)
                }

                /// Replaces one of the tenant's JSON settings columns (a fixed name, never user input).
                async fn set_tenant_json(&self, id: Uuid, column: &'static str, config: Option<serde_json::Value>) -> R<()> {
                    let r = sqlx::query(&format!("UPDATE tenants SET {column} = $1 WHERE id = $2"))
                        .bind(config.map(|c| c.to_string()))
                        .bind(id.to_string())
                        .execute(&self.write)
                        .await
                        .map_err(map_err)?;
                    if r.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
                }

                async fn conversation_in(
                    tx: &mut sqlx::Transaction<'_, $db>,
                    tenant: Uuid,
                    id: Uuid,
                ) -> R<Conversation> {
                    let row = sqlx::query(&format!(
                        "SELECT {CONV_COLS} FROM conversations WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(map_err)?;
                    row.as_ref().map(conversation).transpose()?.ok_or(StoreError::NotFound)
                }

                async fn existing_by_key(&self, conv: Uuid, key: &str) -> R<Option<Message>> {
                    let sql = format!("SELECT {MSG_COLS} FROM messages WHERE conversation_id = $1 AND idempotency_key = $2");
                    let row = sqlx::query(&sql)
                        .bind(conv.to_string())
                        .bind(key)
                        .fetch_optional(&self.write)
                        .await
                        .map_err(map_err)?;
                    row.as_ref().map(message).transpose()
                }

                async fn try_append(&self, new: &NewMessage) -> R<Appended> {
                    let now_dt = now_ms();
                    let now = now_dt.timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    // Lock the conversation first: everything below is serialised per conversation.
                    let seq = Self::next_seq(&mut tx, new.tenant_id, new.conversation_id, new.require_open, now).await?;
                    if let Some(key) = &new.idempotency_key {
                        let sql = format!(
                            "SELECT {MSG_COLS} FROM messages WHERE conversation_id = $1 AND idempotency_key = $2"
                        );
                        let row = sqlx::query(&sql)
                            .bind(new.conversation_id.to_string())
                            .bind(key)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(map_err)?;
                        if let Some(r) = row {
                            let m = message(&r)?;
                            tx.rollback().await.map_err(map_err)?;
                            return Ok(Appended::Duplicate(m));
                        }
                    }
                    let m = Message {
                        id: Uuid::now_v7(),
                        tenant_id: new.tenant_id,
                        conversation_id: new.conversation_id,
                        seq,
                        role: new.role,
                        content: new.content.clone(),
                        idempotency_key: new.idempotency_key.clone(),
                        reply_to_seq: new.reply_to_seq,
                        generation: new.generation.clone(),
                        reply_pending: new.role == MessageRole::Customer,
                        created_at: now_dt,
                    };
                    sqlx::query(&format!(
                        "INSERT INTO messages ({MSG_COLS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
                    ))
                    .bind(m.id.to_string())
                    .bind(m.tenant_id.to_string())
                    .bind(m.conversation_id.to_string())
                    .bind(m.seq)
                    .bind(m.role.as_str())
                    .bind(&m.content)
                    .bind(&m.idempotency_key)
                    .bind(m.reply_to_seq)
                    .bind(&m.generation.model)
                    .bind(m.generation.prompt_tokens)
                    .bind(m.generation.completion_tokens)
                    .bind(m.generation.latency_ms)
                    .bind(m.generation.fallback)
                    .bind(m.reply_pending)
                    .bind(now)
                    .bind(m.generation.trace.as_ref().map(|t| t.to_string()))
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    if let Some(to) = m.reply_to_seq {
                        sqlx::query("UPDATE messages SET reply_pending = FALSE WHERE conversation_id = $1 AND seq = $2")
                            .bind(m.conversation_id.to_string())
                            .bind(to)
                            .execute(&mut *tx)
                            .await
                            .map_err(map_err)?;
                    }
                    let data = EventData::MessageCreated(m.clone());
                    Self::insert_event(&mut tx, m.tenant_id, m.conversation_id, seq, &data, now).await?;
                    tx.commit().await.map_err(map_err)?;
                    Ok(Appended::Created(m))
                }
            }

            #[async_trait]
            impl Store for $ty {
                async fn ping(&self) -> R<()> {
                    sqlx::query("SELECT 1").execute(&self.read).await.map_err(map_err)?;
                    Ok(())
                }

                fn backend(&self) -> &'static str {
                    $backend
                }

                async fn create_tenant(&self, new: NewTenant) -> R<Tenant> {
                    let t = Tenant {
                        id: Uuid::now_v7(),
                        slug: new.slug,
                        name: new.name,
                        customer_secret: new.customer_secret,
                        model_config: None,
                        desk_config: None,
                        moderation_config: None,
                        intent_model: None,
                        created_at: now_ms(),
                    };
                    sqlx::query(
                        "INSERT INTO tenants (id, slug, name, customer_secret, model_config, created_at) \
                         VALUES ($1, $2, $3, $4, NULL, $5)",
                    )
                    .bind(t.id.to_string())
                    .bind(&t.slug)
                    .bind(&t.name)
                    .bind(&t.customer_secret)
                    .bind(t.created_at.timestamp_millis())
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    Ok(t)
                }

                async fn get_tenant(&self, id: Uuid) -> R<Option<Tenant>> {
                    let row = sqlx::query("SELECT * FROM tenants WHERE id = $1")
                        .bind(id.to_string())
                        .fetch_optional(&self.read)
                        .await
                        .map_err(map_err)?;
                    row.as_ref().map(tenant).transpose()
                }

                async fn get_tenant_by_slug(&self, slug: &str) -> R<Option<Tenant>> {
                    let row = sqlx::query("SELECT * FROM tenants WHERE slug = $1")
                        .bind(slug)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(map_err)?;
                    row.as_ref().map(tenant).transpose()
                }

                async fn count_tenants(&self) -> R<u64> {
                    let row = sqlx::query("SELECT COUNT(*) AS n FROM tenants")
                        .fetch_one(&self.read)
                        .await
                        .map_err(map_err)?;
                    Ok(get::<i64>(&row, "n")? as u64)
                }

                async fn set_tenant_model_config(&self, id: Uuid, config: Option<serde_json::Value>) -> R<()> {
                    self.set_tenant_json(id, "model_config", config).await
                }

                async fn set_tenant_desk_config(&self, id: Uuid, config: Option<serde_json::Value>) -> R<()> {
                    self.set_tenant_json(id, "desk_config", config).await
                }

                async fn set_tenant_moderation_config(&self, id: Uuid, config: Option<serde_json::Value>) -> R<()> {
                    self.set_tenant_json(id, "moderation_config", config).await
                }

                async fn add_intent_model(
                    &self,
                    tenant: Uuid,
                    info: serde_json::Value,
                    data: &[u8],
                    created_by: Option<Uuid>,
                    activate: bool,
                ) -> R<IntentModelRecord> {
                    // The next version is taken inside the insert; two trainers racing for one number collide on the
                    // primary key and the loser tries again.
                    for _ in 0..5 {
                        let created_at = now_ms();
                        let mut tx = self.write.begin().await.map_err(map_err)?;
                        let r = sqlx::query(
                            "INSERT INTO intent_models (tenant_id, version, info, bytes, data, created_by, created_at) \
                             SELECT $1, COALESCE((SELECT MAX(version) FROM intent_models WHERE tenant_id = $1), 0) + 1, \
                             $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) RETURNING version",
                        )
                        .bind(tenant.to_string())
                        .bind(info.to_string())
                        .bind(data.len() as i64)
                        .bind(data)
                        .bind(created_by.map(|u| u.to_string()))
                        .bind(created_at.timestamp_millis())
                        .fetch_optional(&mut *tx)
                        .await;
                        let version: i32 = match r {
                            Ok(Some(row)) => get(&row, "version")?,
                            Ok(None) => return Err(StoreError::NotFound),
                            Err(e) => match map_err(e) {
                                StoreError::Conflict(_) => continue,
                                e => return Err(e),
                            },
                        };
                        if activate {
                            sqlx::query("UPDATE tenants SET intent_model = $1 WHERE id = $2")
                                .bind(version)
                                .bind(tenant.to_string())
                                .execute(&mut *tx)
                                .await
                                .map_err(map_err)?;
                        }
                        tx.commit().await.map_err(map_err)?;
                        return Ok(IntentModelRecord {
                            tenant_id: tenant,
                            version,
                            info,
                            bytes: data.len() as i64,
                            created_by,
                            created_at,
                        });
                    }
                    Err(StoreError::Conflict("could not number the model; try again".into()))
                }

                async fn list_intent_models(&self, tenant: Uuid) -> R<Vec<IntentModelRecord>> {
                    let rows = sqlx::query(
                        "SELECT tenant_id, version, info, bytes, created_by, created_at FROM intent_models \
                         WHERE tenant_id = $1 ORDER BY version DESC",
                    )
                    .bind(tenant.to_string())
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter().map(intent_model_record).collect()
                }

                async fn get_intent_model(&self, tenant: Uuid, version: i32) -> R<Option<(IntentModelRecord, Vec<u8>)>> {
                    let row = sqlx::query(
                        "SELECT tenant_id, version, info, bytes, data, created_by, created_at FROM intent_models \
                         WHERE tenant_id = $1 AND version = $2",
                    )
                    .bind(tenant.to_string())
                    .bind(version)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(map_err)?;
                    let Some(r) = row else { return Ok(None) };
                    Ok(Some((intent_model_record(&r)?, get::<Vec<u8>>(&r, "data")?)))
                }

                async fn set_intent_model(&self, tenant: Uuid, version: Option<i32>) -> R<()> {
                    // Only a version this tenant has (or none).
                    let r = sqlx::query(
                        "UPDATE tenants SET intent_model = $1 WHERE id = $2 AND ($1 IS NULL OR EXISTS \
                         (SELECT 1 FROM intent_models WHERE tenant_id = $2 AND version = $1))",
                    )
                    .bind(version)
                    .bind(tenant.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    if r.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
                }

                async fn delete_intent_model(&self, tenant: Uuid, version: i32) -> R<()> {
                    let r = sqlx::query(
                        "DELETE FROM intent_models WHERE tenant_id = $1 AND version = $2 AND NOT EXISTS \
                         (SELECT 1 FROM tenants WHERE id = $1 AND intent_model = $2)",
                    )
                    .bind(tenant.to_string())
                    .bind(version)
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    if r.rows_affected() > 0 {
                        return Ok(());
                    }
                    match self.get_intent_model(tenant, version).await? {
                        Some(_) => Err(StoreError::Conflict(format!("version {version} is in use"))),
                        None => Err(StoreError::NotFound),
                    }
                }

                async fn set_tenant_customer_secret(&self, id: Uuid, secret: &str) -> R<()> {
                    let r = sqlx::query("UPDATE tenants SET customer_secret = $1 WHERE id = $2")
                        .bind(secret)
                        .bind(id.to_string())
                        .execute(&self.write)
                        .await
                        .map_err(map_err)?;
                    if r.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
                }

                async fn create_api_key(&self, new: NewApiKey) -> R<ApiKey> {
                    let k = ApiKey {
                        id: Uuid::now_v7(),
                        tenant_id: new.tenant_id,
                        name: new.name,
                        prefix: new.prefix,
                        key_hash: new.key_hash,
                        revoked: false,
                        created_at: now_ms(),
                    };
                    sqlx::query(
                        "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, revoked, created_at) \
                         VALUES ($1, $2, $3, $4, $5, FALSE, $6)",
                    )
                    .bind(k.id.to_string())
                    .bind(k.tenant_id.to_string())
                    .bind(&k.name)
                    .bind(&k.prefix)
                    .bind(&k.key_hash)
                    .bind(k.created_at.timestamp_millis())
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    Ok(k)
                }

                async fn find_api_key_by_hash(&self, key_hash: &str) -> R<Option<ApiKey>> {
                    let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1")
                        .bind(key_hash)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(map_err)?;
                    row.as_ref().map(api_key).transpose()
                }

                async fn list_api_keys(&self, tenant: Uuid) -> R<Vec<ApiKey>> {
                    let rows = sqlx::query("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id")
                        .bind(tenant.to_string())
                        .fetch_all(&self.read)
                        .await
                        .map_err(map_err)?;
                    rows.iter().map(api_key).collect()
                }

                async fn revoke_api_key(&self, tenant: Uuid, id: Uuid) -> R<bool> {
                    let r = sqlx::query("UPDATE api_keys SET revoked = TRUE WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant.to_string())
                        .bind(id.to_string())
                        .execute(&self.write)
                        .await
                        .map_err(map_err)?;
                    Ok(r.rows_affected() > 0)
                }

                async fn create_staff(&self, new: NewStaffUser) -> R<StaffUser> {
                    let u = StaffUser {
                        id: Uuid::now_v7(),
                        tenant_id: new.tenant_id,
                        email: new.email,
                        display_name: new.display_name,
                        role: new.role,
                        password_hash: new.password_hash,
                        teams: new.teams,
                        created_at: now_ms(),
                    };
                    sqlx::query(
                        "INSERT INTO staff_users (id, tenant_id, email, display_name, role, password_hash, created_at, teams) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(u.id.to_string())
                    .bind(u.tenant_id.to_string())
                    .bind(&u.email)
                    .bind(&u.display_name)
                    .bind(u.role.as_str())
                    .bind(&u.password_hash)
                    .bind(u.created_at.timestamp_millis())
                    .bind(serde_json::to_string(&u.teams).expect("strings serialise"))
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    Ok(u)
                }

                async fn get_staff(&self, tenant: Uuid, id: Uuid) -> R<Option<StaffUser>> {
                    let row = sqlx::query("SELECT * FROM staff_users WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant.to_string())
                        .bind(id.to_string())
                        .fetch_optional(&self.read)
                        .await
                        .map_err(map_err)?;
                    row.as_ref().map(staff).transpose()
                }

                async fn get_staff_by_email(&self, tenant: Uuid, email: &str) -> R<Option<StaffUser>> {
                    let row = sqlx::query("SELECT * FROM staff_users WHERE tenant_id = $1 AND email = $2")
                        .bind(tenant.to_string())
                        .bind(email)
                        .fetch_optional(&self.read)
                        .await
                        .map_err(map_err)?;
                    row.as_ref().map(staff).transpose()
                }

                async fn list_staff(&self, tenant: Uuid) -> R<Vec<StaffUser>> {
                    let rows = sqlx::query("SELECT * FROM staff_users WHERE tenant_id = $1 ORDER BY created_at, id")
                        .bind(tenant.to_string())
                        .fetch_all(&self.read)
                        .await
                        .map_err(map_err)?;
                    rows.iter().map(staff).collect()
                }

                async fn update_staff(&self, tenant: Uuid, id: Uuid, u: StaffUpdate) -> R<StaffUser> {
                    // One statement: absent fields keep their value (`$n IS NULL`), so concurrent updates of
                    // different fields do not undo each other.
                    let r = sqlx::query(
                        "UPDATE staff_users SET \
                         display_name = CASE WHEN $1 THEN $2 ELSE display_name END, \
                         role = COALESCE($3, role), teams = COALESCE($4, teams) \
                         WHERE tenant_id = $5 AND id = $6",
                    )
                    .bind(u.display_name.is_some())
                    .bind(u.display_name.flatten())
                    .bind(u.role.map(StaffRole::as_str))
                    .bind(u.teams.map(|t| serde_json::to_string(&t).expect("strings serialise")))
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    self.get_staff(tenant, id).await?.ok_or(StoreError::NotFound)
                }

                async fn upsert_customer(
                    &self,
                    tenant: Uuid,
                    external_id: Option<&str>,
                    display_name: Option<&str>,
                ) -> R<Customer> {
                    let now = now_ms().timestamp_millis();
                    // ON CONFLICT keeps the first display name unless a new one is given.
                    let row = sqlx::query(
                        "INSERT INTO customers (id, tenant_id, external_id, display_name, created_at) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (tenant_id, external_id) DO UPDATE \
                         SET display_name = COALESCE(excluded.display_name, customers.display_name) \
                         RETURNING *",
                    )
                    .bind(Uuid::now_v7().to_string())
                    .bind(tenant.to_string())
                    .bind(external_id)
                    .bind(display_name)
                    .bind(now)
                    .fetch_one(&self.write)
                    .await
                    .map_err(map_err)?;
                    customer(&row)
                }

                async fn get_customer(&self, tenant: Uuid, id: Uuid) -> R<Option<Customer>> {
                    let row = sqlx::query("SELECT * FROM customers WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant.to_string())
                        .bind(id.to_string())
                        .fetch_optional(&self.read)
                        .await
                        .map_err(map_err)?;
                    row.as_ref().map(customer).transpose()
                }

                async fn create_conversation(&self, new: NewConversation) -> R<Conversation> {
                    let now = now_ms();
                    let c = Conversation {
                        id: Uuid::now_v7(),
                        tenant_id: new.tenant_id,
                        customer_id: new.customer_id,
                        channel: new.channel,
                        status: ConversationStatus::Open,
                        handler: Handler::Bot,
                        flagged: false,
                        subject: new.subject,
                        metadata: new.metadata,
                        last_seq: 0,
                        created_at: now,
                        updated_at: now,
                        closed_at: None,
                        assignee_id: None,
                        queued_at: None,
                        rating: None,
                        rating_comment: None,
                        team: None,
                    };
                    // The customer must belong to the same tenant: insert only when it does.
                    let r = sqlx::query(&format!(
                        "INSERT INTO conversations ({CONV_COLS}) \
                         SELECT $1, $2, $3, $4, 'open', 'bot', FALSE, $5, $6, 0, $7, $7, NULL, NULL, NULL, NULL, NULL, NULL \
                         WHERE EXISTS (SELECT 1 FROM customers WHERE tenant_id = $2 AND id = $3)"
                    ))
                    .bind(c.id.to_string())
                    .bind(c.tenant_id.to_string())
                    .bind(c.customer_id.to_string())
                    .bind(&c.channel)
                    .bind(&c.subject)
                    .bind(c.metadata.to_string())
                    .bind(now.timestamp_millis())
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(c)
                }

                async fn get_conversation(&self, tenant: Uuid, id: Uuid) -> R<Option<Conversation>> {
                    let row = sqlx::query(&format!(
                        "SELECT {CONV_COLS} FROM conversations WHERE tenant_id = $1 AND id = $2"
                    ))
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(map_err)?;
                    row.as_ref().map(conversation).transpose()
                }

                async fn set_conversation_status(
                    &self,
                    tenant: Uuid,
                    id: Uuid,
                    status: ConversationStatus,
                ) -> R<(Conversation, Option<Event>)> {
                    let now_dt = now_ms();
                    let now = now_dt.timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    let closed_at = (status == ConversationStatus::Closed).then_some(now);
                    let row = sqlx::query(
                        "UPDATE conversations SET last_seq = last_seq + 1, status = $1, updated_at = $2, closed_at = $3 \
                         WHERE tenant_id = $4 AND id = $5 AND status <> $1 RETURNING last_seq",
                    )
                    .bind(status.as_str())
                    .bind(now)
                    .bind(closed_at)
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    let event =
                        Self::event_if_changed(&mut tx, row, tenant, id, EventData::StatusChanged(status), now_dt).await?;
                    if event.is_some() && status == ConversationStatus::Closed {
                        // A closed conversation gets no more replies.
                        sqlx::query("UPDATE messages SET reply_pending = FALSE WHERE conversation_id = $1 AND reply_pending")
                            .bind(id.to_string())
                            .execute(&mut *tx)
                            .await
                            .map_err(map_err)?;
                    }
                    let conv = Self::conversation_in(&mut tx, tenant, id).await?;
                    tx.commit().await.map_err(map_err)?;
                    Ok((conv, event))
                }

                async fn flag_conversation(&self, tenant: Uuid, id: Uuid, reason: &str) -> R<Event> {
                    let now_dt = now_ms();
                    let now = now_dt.timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    let seq = Self::next_seq(&mut tx, tenant, id, false, now).await?;
                    sqlx::query("UPDATE conversations SET flagged = TRUE WHERE id = $1")
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    let data = EventData::Flagged { reason: reason.to_owned() };
                    Self::insert_event(&mut tx, tenant, id, seq, &data, now).await?;
                    tx.commit().await.map_err(map_err)?;
                    Ok(Event { tenant_id: tenant, conversation_id: id, seq, data, created_at: now_dt })
                }

                async fn set_conversation_handler(
                    &self,
                    tenant: Uuid,
                    id: Uuid,
                    handler: Handler,
                    reason: &str,
                ) -> R<(Conversation, Option<Event>)> {
                    let now_dt = now_ms();
                    let now = now_dt.timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    let queued_at = (handler == Handler::Queued).then_some(now);
                    let row = sqlx::query(
                        "UPDATE conversations SET last_seq = last_seq + 1, handler = $1, updated_at = $2, \
                         assignee_id = NULL, queued_at = COALESCE($5, queued_at), team = NULL \
                         WHERE tenant_id = $3 AND id = $4 AND status = 'open' AND handler <> $1 RETURNING last_seq",
                    )
                    .bind(handler.as_str())
                    .bind(now)
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .bind(queued_at)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    let data = EventData::HandlerChanged { handler, reason: reason.to_owned(), assignee: None };
                    let event = Self::event_if_changed(&mut tx, row, tenant, id, data, now_dt).await?;
                    let conv = Self::conversation_in(&mut tx, tenant, id).await?;
                    tx.commit().await.map_err(map_err)?;
                    if event.is_none() && conv.status == ConversationStatus::Closed && conv.handler != handler {
                        return Err(StoreError::ConversationClosed);
                    }
                    Ok((conv, event))
                }

                async fn list_conversations(&self, tenant: Uuid, q: ConversationQuery) -> R<Vec<Conversation>> {
                    // Optional filters as `$n IS NULL OR col = $n`: one statement text for every combination.
                    let order = if q.handler == Some(Handler::Queued) {
                        "COALESCE(queued_at, updated_at), id"
                    } else {
                        "updated_at DESC, id"
                    };
                    let rows = sqlx::query(&format!(
                        "SELECT {CONV_COLS} FROM conversations WHERE tenant_id = $1 \
                         AND ($2 IS NULL OR handler = $2) AND ($3 IS NULL OR status = $3) \
                         AND ($4 IS NULL OR assignee_id = $4) AND ($6 IS NULL OR customer_id = $6) \
                         AND ($7 = 0 OR ($7 = 1 AND team IS NULL) OR ($7 = 2 AND team = $8)) \
                         ORDER BY {order} LIMIT $5"
                    ))
                    .bind(tenant.to_string())
                    .bind(q.handler.map(Handler::as_str))
                    .bind(q.status.map(ConversationStatus::as_str))
                    .bind(q.assignee.map(|a| a.to_string()))
                    .bind(i64::from(q.limit.max(1)))
                    .bind(q.customer.map(|c| c.to_string()))
                    .bind(match &q.team {
                        None => 0_i32,
                        Some(TeamFilter::General) => 1,
                        Some(TeamFilter::Team(_)) => 2,
                    })
                    .bind(match &q.team {
                        Some(TeamFilter::Team(t)) => Some(t.clone()),
                        _ => None,
                    })
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter().map(conversation).collect()
                }

                async fn assign_conversation(
                    &self,
                    tenant: Uuid,
                    id: Uuid,
                    agent: Uuid,
                    from: Option<Uuid>,
                    reason: &str,
                ) -> R<(Conversation, Option<Event>)> {
                    let now_dt = now_ms();
                    let now = now_dt.timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    // The condition is the whole race: one UPDATE wins, the other matches no row.
                    let cond = format!(
                        "{} AND (assignee_id IS NULL OR assignee_id <> $1)",
                        if from.is_some() { HELD_BY_FROM } else { HELD_BY_NOBODY }
                    );
                    let set = "handler = 'agent', assignee_id = $1";
                    let row = Self::hand_over(&mut tx, set, &cond, Some(agent.to_string()), now, tenant, id, from).await?;
                    if row.is_some() {
                        // Round-robin order: who was given a conversation longest ago goes next.
                        sqlx::query("UPDATE staff_users SET last_assigned_at = $1 WHERE tenant_id = $2 AND id = $3")
                            .bind(now)
                            .bind(tenant.to_string())
                            .bind(agent.to_string())
                            .execute(&mut *tx)
                            .await
                            .map_err(map_err)?;
                    }
                    let data = EventData::HandlerChanged {
                        handler: Handler::Agent,
                        reason: reason.to_owned(),
                        assignee: Some(agent),
                    };
                    let event = Self::event_if_changed(&mut tx, row, tenant, id, data, now_dt).await?;
                    let conv = Self::conversation_in(&mut tx, tenant, id).await?;
                    tx.commit().await.map_err(map_err)?;
                    if event.is_none() {
                        if conv.status == ConversationStatus::Closed {
                            return Err(StoreError::ConversationClosed);
                        }
                        if conv.assignee_id != Some(agent) {
                            return Err(StoreError::Conflict("the conversation is held by another agent".into()));
                        }
                    }
                    Ok((conv, event))
                }

                async fn touch_staff(&self, tenant: Uuid, user: Uuid) -> R<()> {
                    let r = sqlx::query("UPDATE staff_users SET last_seen_at = $1 WHERE tenant_id = $2 AND id = $3")
                        .bind(now_ms().timestamp_millis())
                        .bind(tenant.to_string())
                        .bind(user.to_string())
                        .execute(&self.write)
                        .await
                        .map_err(map_err)?;
                    if r.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
                }

                async fn desk_agents(&self, tenant: Uuid) -> R<Vec<AgentLoad>> {
                    let rows = sqlx::query(
                        "SELECT s.id, s.role, s.display_name, s.last_seen_at, s.last_assigned_at, s.teams, \
                         (SELECT COUNT(*) FROM conversations c WHERE c.assignee_id = s.id AND c.status = 'open' \
                          AND c.handler = 'agent') AS held \
                         FROM staff_users s WHERE s.tenant_id = $1 ORDER BY s.created_at, s.id",
                    )
                    .bind(tenant.to_string())
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter()
                        .map(|r| {
                            let role: String = get(r, "role")?;
                            Ok(AgentLoad {
                                id: uuid(&get::<String>(r, "id")?)?,
                                role: StaffRole::parse(&role).ok_or_else(|| corrupt("role", &role))?,
                                display_name: get(r, "display_name")?,
                                last_seen_at: get::<Option<i64>>(r, "last_seen_at")?.map(from_ms),
                                last_assigned_at: get::<Option<i64>>(r, "last_assigned_at")?.map(from_ms),
                                held: get(r, "held")?,
                                teams: teams(&get::<String>(r, "teams")?)?,
                            })
                        })
                        .collect()
                }

                async fn stale_holds(&self, cutoff: chrono::DateTime<chrono::Utc>, limit: u32) -> R<Vec<(Uuid, Uuid, Uuid)>> {
                    let rows = sqlx::query(
                        "SELECT c.tenant_id, c.id, c.assignee_id FROM conversations c \
                         JOIN staff_users s ON s.id = c.assignee_id AND s.tenant_id = c.tenant_id \
                         WHERE c.status = 'open' AND c.handler = 'agent' \
                         AND s.last_seen_at IS NOT NULL AND s.last_seen_at < $1 \
                         ORDER BY c.updated_at LIMIT $2",
                    )
                    .bind(cutoff.timestamp_millis())
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter()
                        .map(|r| {
                            Ok((
                                uuid(&get::<String>(r, "tenant_id")?)?,
                                uuid(&get::<String>(r, "id")?)?,
                                uuid(&get::<String>(r, "assignee_id")?)?,
                            ))
                        })
                        .collect()
                }

                async fn queued_conversations(&self, limit: u32) -> R<Vec<QueuedRef>> {
                    let rows = sqlx::query(
                        "SELECT tenant_id, id, team FROM conversations WHERE status = 'open' AND handler = 'queued' \
                         ORDER BY COALESCE(queued_at, updated_at), id LIMIT $1",
                    )
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter()
                        .map(|r| {
                            Ok(QueuedRef {
                                tenant_id: uuid(&get::<String>(r, "tenant_id")?)?,
                                id: uuid(&get::<String>(r, "id")?)?,
                                team: get(r, "team")?,
                            })
                        })
                        .collect()
                }

                async fn route_conversation(
                    &self,
                    tenant: Uuid,
                    id: Uuid,
                    team: Option<&str>,
                    from: Option<Uuid>,
                    reason: &str,
                ) -> R<(Conversation, Option<Event>)> {
                    let now_dt = now_ms();
                    let now = now_dt.timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    // Like an accept, the condition is the whole race.
                    let cond = if from.is_some() {
                        HELD_BY_FROM.to_owned()
                    } else {
                        format!("{HELD_BY_NOBODY} AND NOT (handler = 'queued' AND COALESCE(team, '') = COALESCE($1, ''))")
                    };
                    // A queued one keeps its place in the queue.
                    let set = "queued_at = CASE WHEN handler = 'queued' THEN COALESCE(queued_at, $2) ELSE $2 END, \
                               handler = 'queued', assignee_id = NULL, team = $1";
                    let row = Self::hand_over(&mut tx, set, &cond, team.map(str::to_owned), now, tenant, id, from).await?;
                    let data = EventData::HandlerChanged { handler: Handler::Queued, reason: reason.to_owned(), assignee: None };
                    let event = Self::event_if_changed(&mut tx, row, tenant, id, data, now_dt).await?;
                    let conv = Self::conversation_in(&mut tx, tenant, id).await?;
                    tx.commit().await.map_err(map_err)?;
                    if event.is_none() {
                        if conv.status == ConversationStatus::Closed {
                            return Err(StoreError::ConversationClosed);
                        }
                        let already = from.is_none() && conv.handler == Handler::Queued && conv.team.as_deref() == team;
                        if !already {
                            return Err(StoreError::Conflict("the conversation is held by another agent".into()));
                        }
                    }
                    Ok((conv, event))
                }

                async fn requeue_conversation(&self, tenant: Uuid, id: Uuid, agent: Uuid, reason: &str) -> R<Option<Event>> {
                    let now_dt = now_ms();
                    let now = now_dt.timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    let row = sqlx::query(
                        "UPDATE conversations SET last_seq = last_seq + 1, handler = 'queued', assignee_id = NULL, \
                         queued_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3 AND status = 'open' \
                         AND handler = 'agent' AND assignee_id = $4 RETURNING last_seq",
                    )
                    .bind(now)
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .bind(agent.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    let data = EventData::HandlerChanged { handler: Handler::Queued, reason: reason.to_owned(), assignee: None };
                    let event = Self::event_if_changed(&mut tx, row, tenant, id, data, now_dt).await?;
                    tx.commit().await.map_err(map_err)?;
                    Ok(event)
                }

                async fn rate_conversation(
                    &self,
                    tenant: Uuid,
                    id: Uuid,
                    rating: i32,
                    comment: Option<&str>,
                ) -> R<(Conversation, Event)> {
                    let now_dt = now_ms();
                    let now = now_dt.timestamp_millis();
                    let mut tx = self.write.begin().await.map_err(map_err)?;
                    // Rating is allowed after the conversation closed: that is when customers rate.
                    let seq = Self::next_seq(&mut tx, tenant, id, false, now).await?;
                    sqlx::query("UPDATE conversations SET rating = $1, rating_comment = $2 WHERE id = $3")
                        .bind(rating)
                        .bind(comment)
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    let data = EventData::Rated { rating, comment: comment.map(str::to_owned) };
                    Self::insert_event(&mut tx, tenant, id, seq, &data, now).await?;
                    let conv = Self::conversation_in(&mut tx, tenant, id).await?;
                    tx.commit().await.map_err(map_err)?;
                    Ok((conv, Event { tenant_id: tenant, conversation_id: id, seq, data, created_at: now_dt }))
                }

                async fn add_attachment(&self, tenant: Uuid, conversation: Uuid, content_type: &str, data: &[u8]) -> R<Attachment> {
                    let a = Attachment {
                        id: Uuid::now_v7(),
                        tenant_id: tenant,
                        conversation_id: conversation,
                        content_type: content_type.to_owned(),
                        bytes: data.len() as i64,
                        created_at: now_ms(),
                    };
                    // Only into a conversation of the same tenant.
                    let r = sqlx::query(
                        "INSERT INTO attachments (id, tenant_id, conversation_id, content_type, bytes, data, created_at) \
                         SELECT $1, $2, $3, $4, $5, $6, $7 \
                         WHERE EXISTS (SELECT 1 FROM conversations WHERE tenant_id = $2 AND id = $3)",
                    )
                    .bind(a.id.to_string())
                    .bind(tenant.to_string())
                    .bind(conversation.to_string())
                    .bind(&a.content_type)
                    .bind(a.bytes)
                    .bind(data)
                    .bind(a.created_at.timestamp_millis())
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(a)
                }

                async fn get_attachment(&self, tenant: Uuid, id: Uuid) -> R<Option<(Attachment, Vec<u8>)>> {
                    let row = sqlx::query(
                        "SELECT id, tenant_id, conversation_id, content_type, bytes, data, created_at FROM attachments \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(map_err)?;
                    let Some(r) = row else { return Ok(None) };
                    Ok(Some((
                        Attachment {
                            id: uuid(&get::<String>(&r, "id")?)?,
                            tenant_id: uuid(&get::<String>(&r, "tenant_id")?)?,
                            conversation_id: uuid(&get::<String>(&r, "conversation_id")?)?,
                            content_type: get(&r, "content_type")?,
                            bytes: get(&r, "bytes")?,
                            created_at: from_ms(get(&r, "created_at")?),
                        },
                        get::<Vec<u8>>(&r, "data")?,
                    )))
                }

                async fn create_ticket(&self, new: NewTicket) -> R<Ticket> {
                    // The next number is taken inside the insert; two creators racing for one number collide on
                    // UNIQUE (tenant_id, number) and the loser tries again.
                    for _ in 0..5 {
                        let t = new.clone().into_ticket(Uuid::now_v7(), 0, now_ms());
                        let ms = |d: chrono::DateTime<chrono::Utc>| d.timestamp_millis();
                        let r = sqlx::query(&format!(
                            "INSERT INTO tickets ({TICKET_COLS}) \
                             SELECT $1, $2, COALESCE((SELECT MAX(number) FROM tickets WHERE tenant_id = $2), 0) + 1, \
                             $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, $16, NULL, NULL, 0, NULL, 0 \
                             WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2) RETURNING number"
                        ))
                        .bind(t.id.to_string())
                        .bind(t.tenant_id.to_string())
                        .bind(t.conversation_id.map(|c| c.to_string()))
                        .bind(t.customer_id.map(|c| c.to_string()))
                        .bind(&t.subject)
                        .bind(&t.description)
                        .bind(&t.department)
                        .bind(t.priority.as_str())
                        .bind(t.status.as_str())
                        .bind(&t.source)
                        .bind(t.created_by.map(|c| c.to_string()))
                        .bind(t.assignee_id.map(|c| c.to_string()))
                        .bind(&t.external_ref)
                        .bind(ms(t.created_at))
                        .bind(ms(t.first_response_due_at))
                        .bind(ms(t.resolution_due_at))
                        .fetch_optional(&self.write)
                        .await;
                        match r {
                            Ok(Some(row)) => return Ok(Ticket { number: get(&row, "number")?, ..t }),
                            Ok(None) => return Err(StoreError::NotFound),
                            Err(e) => match map_err(e) {
                                StoreError::Conflict(_) => continue,
                                e => return Err(e),
                            },
                        }
                    }
                    Err(StoreError::Conflict("could not number the ticket; try again".into()))
                }

                async fn get_ticket(&self, tenant: Uuid, id: Uuid) -> R<Option<Ticket>> {
                    match self.get_ticket_in(&self.read, tenant, id).await {
                        Ok(t) => Ok(Some(t)),
                        Err(StoreError::NotFound) => Ok(None),
                        Err(e) => Err(e),
                    }
                }

                async fn list_tickets(&self, tenant: Uuid, q: TicketQuery) -> R<Vec<Ticket>> {
                    let rows = sqlx::query(&format!(
                        "SELECT {TICKET_COLS} FROM tickets WHERE tenant_id = $1 \
                         AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR assignee_id = $3) \
                         AND ($4 IS NULL OR customer_id = $4) AND ($5 IS NULL OR conversation_id = $5) \
                         ORDER BY created_at DESC, number DESC LIMIT $6"
                    ))
                    .bind(tenant.to_string())
                    .bind(q.status.map(TicketStatus::as_str))
                    .bind(q.assignee.map(|a| a.to_string()))
                    .bind(q.customer.map(|a| a.to_string()))
                    .bind(q.conversation.map(|a| a.to_string()))
                    .bind(i64::from(q.limit.max(1)))
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter().map(ticket).collect()
                }

                async fn update_ticket(&self, tenant: Uuid, id: Uuid, u: TicketUpdate) -> R<Ticket> {
                    // Optimistic: apply the rules to the row as read, write only if nobody changed it since.
                    for _ in 0..10 {
                        let current = self.get_ticket_in(&self.write, tenant, id).await?;
                        let next = current
                            .apply(&u, now_ms())
                            .map_err(|e| StoreError::Conflict(e.to_string()))?;
                        if self.write_ticket(&next, current.version).await? {
                            return Ok(next);
                        }
                    }
                    Err(StoreError::Conflict("the ticket is changing too fast; try again".into()))
                }

                async fn add_ticket_note(
                    &self,
                    tenant: Uuid,
                    ticket_id: Uuid,
                    author: Option<Uuid>,
                    body: &str,
                    internal: bool,
                ) -> R<TicketNote> {
                    let t = self.get_ticket_in(&self.write, tenant, ticket_id).await?;
                    let note = TicketNote {
                        id: Uuid::now_v7(),
                        ticket_id: t.id,
                        author_id: author,
                        body: body.to_owned(),
                        internal,
                        created_at: now_ms(),
                    };
                    sqlx::query(
                        "INSERT INTO ticket_notes (id, tenant_id, ticket_id, author_id, body, internal, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(note.id.to_string())
                    .bind(tenant.to_string())
                    .bind(t.id.to_string())
                    .bind(author.map(|a| a.to_string()))
                    .bind(&note.body)
                    .bind(internal)
                    .bind(note.created_at.timestamp_millis())
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    if !internal && t.first_responded_at.is_none() {
                        self.update_ticket(tenant, t.id, TicketUpdate { responded: true, ..Default::default() })
                            .await?;
                    }
                    Ok(note)
                }

                async fn list_ticket_notes(&self, tenant: Uuid, ticket_id: Uuid, include_internal: bool) -> R<Vec<TicketNote>> {
                    let rows = sqlx::query(
                        "SELECT id, ticket_id, author_id, body, internal, created_at FROM ticket_notes \
                         WHERE tenant_id = $1 AND ticket_id = $2 AND ($3 OR NOT internal) ORDER BY created_at, id",
                    )
                    .bind(tenant.to_string())
                    .bind(ticket_id.to_string())
                    .bind(include_internal)
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter().map(ticket_note).collect()
                }

                async fn append_message(&self, new: NewMessage) -> R<Appended> {
                    match self.try_append(&new).await {
                        // Two retries with one key raced past the check: the loser returns the winner's message.
                        Err(StoreError::Conflict(_)) if new.idempotency_key.is_some() => {
                            let key = new.idempotency_key.as_deref().unwrap_or_default();
                            match self.existing_by_key(new.conversation_id, key).await? {
                                Some(m) if m.tenant_id == new.tenant_id => Ok(Appended::Duplicate(m)),
                                _ => Err(StoreError::Conflict("idempotency key".into())),
                            }
                        }
                        // A retry of a message accepted before the conversation closed still gets its original.
                        Err(StoreError::ConversationClosed) if new.idempotency_key.is_some() => {
                            let key = new.idempotency_key.as_deref().unwrap_or_default();
                            match self.existing_by_key(new.conversation_id, key).await? {
                                Some(m) if m.tenant_id == new.tenant_id => Ok(Appended::Duplicate(m)),
                                _ => Err(StoreError::ConversationClosed),
                            }
                        }
                        other => other,
                    }
                }

                async fn list_messages(&self, tenant: Uuid, conv: Uuid, after: i64, limit: u32) -> R<Vec<Message>> {
                    let rows = sqlx::query(&format!(
                        "SELECT {MSG_COLS} FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND seq > $3 \
                         ORDER BY seq LIMIT $4"
                    ))
                    .bind(tenant.to_string())
                    .bind(conv.to_string())
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter().map(message).collect()
                }

                async fn get_message_by_seq(&self, tenant: Uuid, conv: Uuid, seq: i64) -> R<Option<Message>> {
                    let row = sqlx::query(&format!(
                        "SELECT {MSG_COLS} FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3"
                    ))
                    .bind(tenant.to_string())
                    .bind(conv.to_string())
                    .bind(seq)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(map_err)?;
                    row.as_ref().map(message).transpose()
                }

                async fn find_reply(&self, tenant: Uuid, conv: Uuid, seq: i64) -> R<Option<Message>> {
                    let row = sqlx::query(&format!(
                        "SELECT {MSG_COLS} FROM messages WHERE tenant_id = $1 AND conversation_id = $2 \
                         AND reply_to_seq = $3 ORDER BY seq LIMIT 1"
                    ))
                    .bind(tenant.to_string())
                    .bind(conv.to_string())
                    .bind(seq)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(map_err)?;
                    row.as_ref().map(message).transpose()
                }

                async fn list_events(&self, tenant: Uuid, conv: Uuid, after: i64, limit: u32) -> R<Vec<Event>> {
                    let rows = sqlx::query(
                        "SELECT seq, kind, payload, created_at FROM conversation_events \
                         WHERE tenant_id = $1 AND conversation_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                    )
                    .bind(tenant.to_string())
                    .bind(conv.to_string())
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    if rows.is_empty() {
                        return Ok(Vec::new());
                    }
                    let last: i64 = get(rows.last().expect("non-empty"), "seq")?;
                    let messages = self.list_messages(tenant, conv, after, limit).await?;
                    let mut by_seq: std::collections::HashMap<i64, Message> =
                        messages.into_iter().filter(|m| m.seq <= last).map(|m| (m.seq, m)).collect();
                    let mut out = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let seq: i64 = get(r, "seq")?;
                        let kind: String = get(r, "kind")?;
                        let payload: Option<String> = get(r, "payload")?;
                        let payload = payload.as_deref().map(json).transpose()?.unwrap_or_default();
                        let data = match kind.as_str() {
                            "message.created" => EventData::MessageCreated(
                                by_seq.remove(&seq).ok_or_else(|| corrupt("event without message", &seq.to_string()))?,
                            ),
                            "conversation.status_changed" => {
                                let s = payload["status"].as_str().unwrap_or_default();
                                EventData::StatusChanged(ConversationStatus::parse(s).ok_or_else(|| corrupt("status", s))?)
                            }
                            "conversation.flagged" => EventData::Flagged {
                                reason: payload["reason"].as_str().unwrap_or_default().to_owned(),
                            },
                            "conversation.handler_changed" => {
                                let h = payload["handler"].as_str().unwrap_or_default();
                                EventData::HandlerChanged {
                                    handler: Handler::parse(h).ok_or_else(|| corrupt("handler", h))?,
                                    reason: payload["reason"].as_str().unwrap_or_default().to_owned(),
                                    assignee: payload["assignee"].as_str().map(uuid).transpose()?,
                                }
                            }
                            "conversation.rated" => EventData::Rated {
                                rating: payload["rating"].as_i64().unwrap_or_default() as i32,
                                comment: payload["comment"].as_str().map(str::to_owned),
                            },
                            other => return Err(corrupt("event kind", other)),
                        };
                        out.push(Event {
                            tenant_id: tenant,
                            conversation_id: conv,
                            seq,
                            data,
                            created_at: from_ms(get(r, "created_at")?),
                        });
                    }
                    Ok(out)
                }

                async fn list_pending_replies(&self, limit: u32) -> R<Vec<Message>> {
                    let rows = sqlx::query(&format!(
                        "SELECT {MSG_COLS} FROM messages WHERE reply_pending ORDER BY created_at, seq LIMIT $1"
                    ))
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await
                    .map_err(map_err)?;
                    rows.iter().map(message).collect()
                }

                async fn mark_reply_settled(&self, tenant: Uuid, conv: Uuid, seq: i64) -> R<()> {
                    sqlx::query(
                        "UPDATE messages SET reply_pending = FALSE WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3",
                    )
                    .bind(tenant.to_string())
                    .bind(conv.to_string())
                    .bind(seq)
                    .execute(&self.write)
                    .await
                    .map_err(map_err)?;
                    Ok(())
                }
            }
        }
    };
}
