//! The backend conformance suite: every [`Store`] implementation must pass all of it.
//!
//! Backends call [`run_all`] from their own tests with a fresh store (SQLite file, PostgreSQL database). Each
//! check makes its own tenants with random slugs, so checks never see each other's data.

use std::sync::Arc;

use crate::*;

type Check = fn(Arc<dyn Store>) -> futures_lite::BoxFuture;

mod futures_lite {
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check, by name.
        pub fn checks() -> Vec<(&'static str, Check)> {
            vec![$((stringify!($name), |s| Box::pin($name(s)) as futures_lite::BoxFuture)),*]
        }
    };
}

checks!(
    tenants_are_unique_by_slug,
    api_keys_are_found_by_hash_and_revoked_per_tenant,
    staff_emails_are_unique_per_tenant,
    customers_upsert_by_external_id,
    conversations_are_tenant_scoped,
    status_changes_append_events,
    handler_changes_append_events_and_traces_round_trip,
    messages_get_consecutive_sequence_numbers,
    idempotency_key_returns_the_original_message,
    closed_conversations_refuse_customer_messages,
    replies_settle_pending_customer_messages,
    events_interleave_messages_and_status_in_seq_order,
    concurrent_appends_never_duplicate_a_sequence_number,
    concurrent_retries_with_one_key_store_one_message,
    writes_to_another_tenants_conversation_fail,
    model_config_round_trips,
    desk_accept_has_one_winner_and_transfer_needs_the_holder,
    desk_lists_the_queue_longest_waiting_first,
    ratings_are_stored_even_after_close,
    presence_finds_stale_holds_and_requeues_them_once,
    staff_teams_are_updated_in_place,
    routing_to_a_team_queues_and_transfers_by_compare_and_set,
    moderation_config_round_trips,
    intent_models_are_numbered_per_tenant_and_switched,
    attachments_round_trip_their_bytes_within_the_tenant,
    tickets_are_numbered_per_tenant_even_when_created_at_once,
    ticket_updates_follow_the_workflow_and_keep_the_sla_clock,
    ticket_notes_are_internal_or_replies,
    kb_documents_replace_their_chunks_and_log_changes,
    kb_changes_are_ordered_under_concurrent_writers,
    kb_is_tenant_scoped,
    kb_jobs_record_progress,
    kb_vectors_are_set_per_document,
);

/// Runs every check against the store, panicking with the check's name on the first failure.
pub async fn run_all(store: Arc<dyn Store>) {
    for (name, check) in checks() {
        eprintln!("conformance[{}]: {name}", store.backend());
        check(store.clone()).await;
    }
}

fn slug() -> String {
    format!("t-{}", Uuid::new_v4().simple())
}

async fn tenant(store: &Arc<dyn Store>) -> Tenant {
    store
        .create_tenant(NewTenant {
            slug: slug(),
            name: "Shop 商店".into(),
            customer_secret: "s3cret".into(),
        })
        .await
        .unwrap()
}

async fn conversation(store: &Arc<dyn Store>, t: &Tenant) -> Conversation {
    let c = store
        .upsert_customer(t.id, Some("cust-1"), Some("王小明"))
        .await
        .unwrap();
    store
        .create_conversation(NewConversation {
            tenant_id: t.id,
            customer_id: c.id,
            channel: "web".into(),
            subject: None,
            metadata: serde_json::json!({"page": "/checkout"}),
        })
        .await
        .unwrap()
}

fn customer_msg(t: &Tenant, c: &Conversation, text: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        tenant_id: t.id,
        conversation_id: c.id,
        role: MessageRole::Customer,
        content: text.into(),
        idempotency_key: key.map(str::to_owned),
        reply_to_seq: None,
        generation: Generation::default(),
        require_open: true,
    }
}

fn reply_msg(t: &Tenant, c: &Conversation, text: &str, to: i64) -> NewMessage {
    NewMessage {
        tenant_id: t.id,
        conversation_id: c.id,
        role: MessageRole::Assistant,
        content: text.into(),
        idempotency_key: None,
        reply_to_seq: Some(to),
        generation: Generation {
            model: Some("m".into()),
            prompt_tokens: Some(12),
            completion_tokens: Some(3),
            latency_ms: Some(40),
            fallback: false,
            trace: None,
        },
        require_open: false,
    }
}

async fn tenants_are_unique_by_slug(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    assert_eq!(store.get_tenant(t.id).await.unwrap().as_ref(), Some(&t));
    assert_eq!(
        store.get_tenant_by_slug(&t.slug).await.unwrap().as_ref(),
        Some(&t)
    );
    assert!(store
        .get_tenant_by_slug("no-such-tenant")
        .await
        .unwrap()
        .is_none());
    let dup = store
        .create_tenant(NewTenant {
            slug: t.slug.clone(),
            name: "x".into(),
            customer_secret: "y".into(),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert!(store.count_tenants().await.unwrap() >= 1);
    store
        .set_tenant_customer_secret(t.id, "rotated")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_tenant(t.id)
            .await
            .unwrap()
            .unwrap()
            .customer_secret,
        "rotated"
    );
}

async fn api_keys_are_found_by_hash_and_revoked_per_tenant(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let hash = format!("{:064x}", Uuid::new_v4().as_u128());
    let key = store
        .create_api_key(NewApiKey {
            tenant_id: a.id,
            name: "crm".into(),
            prefix: "kefu_ab".into(),
            key_hash: hash.clone(),
        })
        .await
        .unwrap();
    let found = store.find_api_key_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(found, key);
    assert!(!found.revoked);
    assert_eq!(store.list_api_keys(a.id).await.unwrap(), vec![key.clone()]);
    assert!(store.list_api_keys(b.id).await.unwrap().is_empty());
    assert!(
        !store.revoke_api_key(b.id, key.id).await.unwrap(),
        "another tenant must not revoke it"
    );
    assert!(
        !store
            .find_api_key_by_hash(&hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(store.revoke_api_key(a.id, key.id).await.unwrap());
    assert!(
        store
            .find_api_key_by_hash(&hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

async fn staff_emails_are_unique_per_tenant(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let new = |t: &Tenant| NewStaffUser {
        tenant_id: t.id,
        email: "lee@example.com".into(),
        display_name: Some("李".into()),
        role: StaffRole::Supervisor,
        password_hash: "$argon2id$x".into(),
        teams: vec![],
    };
    let ua = store.create_staff(new(&a)).await.unwrap();
    let dup = store.create_staff(new(&a)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let ub = store.create_staff(new(&b)).await.unwrap();
    assert_ne!(ua.id, ub.id);
    assert_eq!(
        store
            .get_staff_by_email(a.id, "lee@example.com")
            .await
            .unwrap(),
        Some(ua.clone())
    );
    assert_eq!(
        store.get_staff(a.id, ua.id).await.unwrap(),
        Some(ua.clone())
    );
    assert_eq!(store.get_staff(b.id, ua.id).await.unwrap(), None);
    assert_eq!(store.list_staff(a.id).await.unwrap(), vec![ua]);
}

async fn customers_upsert_by_external_id(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let c1 = store
        .upsert_customer(a.id, Some("u-1"), Some("Ann"))
        .await
        .unwrap();
    let c2 = store
        .upsert_customer(a.id, Some("u-1"), None)
        .await
        .unwrap();
    assert_eq!(c1.id, c2.id);
    let other = store
        .upsert_customer(b.id, Some("u-1"), None)
        .await
        .unwrap();
    assert_ne!(
        other.id, c1.id,
        "same external id in another tenant is another customer"
    );
    let anon1 = store.upsert_customer(a.id, None, None).await.unwrap();
    let anon2 = store.upsert_customer(a.id, None, None).await.unwrap();
    assert_ne!(anon1.id, anon2.id);
    assert_eq!(
        store.get_customer(a.id, c1.id).await.unwrap(),
        Some(c1.clone())
    );
    assert_eq!(store.get_customer(b.id, c1.id).await.unwrap(), None);
}

async fn conversations_are_tenant_scoped(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let c = conversation(&store, &a).await;
    assert_eq!(c.status, ConversationStatus::Open);
    assert_eq!(c.last_seq, 0);
    assert_eq!(c.metadata, serde_json::json!({"page": "/checkout"}));
    assert_eq!(
        store.get_conversation(a.id, c.id).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(store.get_conversation(b.id, c.id).await.unwrap(), None);
    assert!(store
        .list_messages(b.id, c.id, 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_events(b.id, c.id, 0, 100)
        .await
        .unwrap()
        .is_empty());
}

async fn status_changes_append_events(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    let (same, ev) = store
        .set_conversation_status(a.id, c.id, ConversationStatus::Open)
        .await
        .unwrap();
    assert!(ev.is_none());
    assert_eq!(same.last_seq, 0);
    let (closed, ev) = store
        .set_conversation_status(a.id, c.id, ConversationStatus::Closed)
        .await
        .unwrap();
    let ev = ev.expect("an event");
    assert_eq!(closed.status, ConversationStatus::Closed);
    assert!(closed.closed_at.is_some());
    assert_eq!(ev.seq, 1);
    assert_eq!(
        ev.data,
        EventData::StatusChanged(ConversationStatus::Closed)
    );
    assert_eq!(closed.last_seq, 1);
    let flag = store
        .flag_conversation(a.id, c.id, "model_unavailable")
        .await
        .unwrap();
    assert_eq!(flag.seq, 2);
    assert!(
        store
            .get_conversation(a.id, c.id)
            .await
            .unwrap()
            .unwrap()
            .flagged
    );
    let missing = store
        .set_conversation_status(a.id, Uuid::new_v4(), ConversationStatus::Closed)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn handler_changes_append_events_and_traces_round_trip(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    assert_eq!(c.handler, Handler::Bot);
    let (same, ev) = store
        .set_conversation_handler(a.id, c.id, Handler::Bot, "noop")
        .await
        .unwrap();
    assert!(ev.is_none(), "an unchanged handler writes no event");
    assert_eq!(same.last_seq, 0);
    let (queued, ev) = store
        .set_conversation_handler(a.id, c.id, Handler::Queued, "customer_asked")
        .await
        .unwrap();
    assert_eq!(queued.handler, Handler::Queued);
    let ev = ev.expect("an event");
    assert_eq!(
        ev.data,
        EventData::HandlerChanged {
            handler: Handler::Queued,
            reason: "customer_asked".into(),
            assignee: None,
        }
    );
    let listed = store.list_events(a.id, c.id, 0, 10).await.unwrap();
    assert_eq!(listed, vec![ev]);
    // Another tenant cannot hand it back.
    let b = tenant(&store).await;
    let other = store
        .set_conversation_handler(b.id, c.id, Handler::Bot, "x")
        .await;
    assert!(matches!(other, Err(StoreError::NotFound)), "{other:?}");

    let q = store
        .append_message(customer_msg(&a, &c, "人工", None))
        .await
        .unwrap()
        .message()
        .clone();
    let mut reply = reply_msg(&a, &c, "正在为您转接", q.seq);
    let trace = serde_json::json!({"path": "handoff", "reason": "customer asked for a person", "stages": {"understand_ms": 0.4}});
    reply.generation.trace = Some(trace.clone());
    let stored = store.append_message(reply).await.unwrap().message().clone();
    assert_eq!(stored.generation.trace.as_ref(), Some(&trace));
    let read = store
        .get_message_by_seq(a.id, c.id, stored.seq)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.generation.trace, Some(trace));

    store
        .set_conversation_status(a.id, c.id, ConversationStatus::Closed)
        .await
        .unwrap();
    let closed = store
        .set_conversation_handler(a.id, c.id, Handler::Bot, "x")
        .await;
    assert!(
        matches!(closed, Err(StoreError::ConversationClosed)),
        "{closed:?}"
    );
}

async fn messages_get_consecutive_sequence_numbers(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    for i in 1..=5 {
        let m = store
            .append_message(customer_msg(&a, &c, &format!("第{i}条 message"), None))
            .await
            .unwrap();
        let Appended::Created(m) = m else {
            panic!("expected created")
        };
        assert_eq!(m.seq, i);
        assert!(m.reply_pending);
    }
    let all = store.list_messages(a.id, c.id, 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(all[2].content, "第3条 message");
    let after = store.list_messages(a.id, c.id, 3, 100).await.unwrap();
    assert_eq!(after.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5]);
    let limited = store.list_messages(a.id, c.id, 0, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(
        store
            .get_message_by_seq(a.id, c.id, 4)
            .await
            .unwrap()
            .unwrap()
            .seq,
        4
    );
    assert_eq!(
        store
            .get_conversation(a.id, c.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        5
    );
}

async fn idempotency_key_returns_the_original_message(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    let first = store
        .append_message(customer_msg(&a, &c, "where is my order?", Some("k-1")))
        .await
        .unwrap();
    let Appended::Created(first) = first else {
        panic!()
    };
    let again = store
        .append_message(customer_msg(&a, &c, "where is my order?", Some("k-1")))
        .await
        .unwrap();
    assert_eq!(again, Appended::Duplicate(first.clone()));
    assert_eq!(
        store.list_messages(a.id, c.id, 0, 100).await.unwrap().len(),
        1
    );
    assert_eq!(
        store.list_events(a.id, c.id, 0, 100).await.unwrap().len(),
        1
    );
    // The same key in another conversation is a different message.
    let c2 = conversation(&store, &a).await;
    let other = store
        .append_message(customer_msg(&a, &c2, "hi", Some("k-1")))
        .await
        .unwrap();
    assert!(matches!(other, Appended::Created(_)));
}

async fn closed_conversations_refuse_customer_messages(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    store
        .set_conversation_status(a.id, c.id, ConversationStatus::Closed)
        .await
        .unwrap();
    let r = store
        .append_message(customer_msg(&a, &c, "hello?", None))
        .await;
    assert!(matches!(r, Err(StoreError::ConversationClosed)), "{r:?}");
    assert_eq!(
        store
            .get_conversation(a.id, c.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        1,
        "nothing written"
    );
    // A reply that was being generated when the conversation closed is still recorded.
    let r = store
        .append_message(reply_msg(&a, &c, "late answer", 1))
        .await
        .unwrap();
    assert!(matches!(r, Appended::Created(_)));
}

async fn replies_settle_pending_customer_messages(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    let q = store
        .append_message(customer_msg(&a, &c, "退货政策是什么？", None))
        .await
        .unwrap()
        .into_message();
    let pending = store.list_pending_replies(10_000).await.unwrap();
    assert!(pending.iter().any(|m| m.id == q.id));
    let r = store
        .append_message(reply_msg(&a, &c, "七天无理由退货。", q.seq))
        .await
        .unwrap()
        .into_message();
    assert_eq!(r.seq, 2);
    assert_eq!(r.reply_to_seq, Some(1));
    assert_eq!(r.generation.prompt_tokens, Some(12));
    assert!(!r.reply_pending);
    let q_after = store
        .get_message_by_seq(a.id, c.id, 1)
        .await
        .unwrap()
        .unwrap();
    assert!(!q_after.reply_pending);
    assert_eq!(store.find_reply(a.id, c.id, 1).await.unwrap(), Some(r));
    let pending = store.list_pending_replies(10_000).await.unwrap();
    assert!(!pending.iter().any(|m| m.id == q.id));
    // mark_reply_settled clears without a reply.
    let q2 = store
        .append_message(customer_msg(&a, &c, "again", None))
        .await
        .unwrap()
        .into_message();
    store.mark_reply_settled(a.id, c.id, q2.seq).await.unwrap();
    assert!(
        !store
            .get_message_by_seq(a.id, c.id, q2.seq)
            .await
            .unwrap()
            .unwrap()
            .reply_pending
    );
}

async fn events_interleave_messages_and_status_in_seq_order(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    store
        .append_message(customer_msg(&a, &c, "hi", None))
        .await
        .unwrap();
    store
        .append_message(reply_msg(&a, &c, "hello", 1))
        .await
        .unwrap();
    store
        .set_conversation_status(a.id, c.id, ConversationStatus::Closed)
        .await
        .unwrap();
    let evs = store.list_events(a.id, c.id, 0, 100).await.unwrap();
    let kinds: Vec<_> = evs.iter().map(|e| (e.seq, e.data.kind())).collect();
    assert_eq!(
        kinds,
        vec![
            (1, "message.created"),
            (2, "message.created"),
            (3, "conversation.status_changed")
        ]
    );
    let EventData::MessageCreated(m) = &evs[1].data else {
        panic!()
    };
    assert_eq!(m.content, "hello");
    assert_eq!(
        store.list_events(a.id, c.id, 2, 100).await.unwrap().len(),
        1
    );
}

async fn concurrent_appends_never_duplicate_a_sequence_number(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        let m = customer_msg(&a, &c, &format!("m{i}"), None);
        tasks.push(tokio_spawn(async move {
            store.append_message(m).await.unwrap()
        }));
    }
    let mut seqs: Vec<i64> = Vec::new();
    for t in tasks {
        seqs.push(t.await.message().seq);
    }
    seqs.sort();
    assert_eq!(seqs, (1..=24).collect::<Vec<_>>());
}

async fn concurrent_retries_with_one_key_store_one_message(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let store = store.clone();
        let m = customer_msg(&a, &c, "pay failed", Some("retry-key"));
        tasks.push(tokio_spawn(async move {
            store.append_message(m).await.unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await;
        if matches!(r, Appended::Created(_)) {
            created += 1;
        }
        ids.insert(r.message().id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(
        store.list_messages(a.id, c.id, 0, 100).await.unwrap().len(),
        1
    );
}

async fn writes_to_another_tenants_conversation_fail(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let c = conversation(&store, &a).await;
    let mut m = customer_msg(&a, &c, "intruder", None);
    m.tenant_id = b.id;
    let r = store.append_message(m).await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    let r = store
        .set_conversation_status(b.id, c.id, ConversationStatus::Closed)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    let r = store.flag_conversation(b.id, c.id, "x").await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert_eq!(
        store
            .get_conversation(a.id, c.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        0
    );
}

async fn model_config_round_trips(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    assert_eq!(a.model_config, None);
    let cfg = serde_json::json!({"chain": [{"provider": "p", "model": "qwen"}], "providers": []});
    store
        .set_tenant_model_config(a.id, Some(cfg.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.get_tenant(a.id).await.unwrap().unwrap().model_config,
        Some(cfg)
    );
    store.set_tenant_model_config(a.id, None).await.unwrap();
    assert_eq!(
        store.get_tenant(a.id).await.unwrap().unwrap().model_config,
        None
    );
    // The desk's settings live beside it, independently.
    let desk = serde_json::json!({"business_hours": {"utc_offset": "+08:00", "days": {"mon": "09:00-18:00"}}});
    store
        .set_tenant_desk_config(a.id, Some(desk.clone()))
        .await
        .unwrap();
    let t = store.get_tenant(a.id).await.unwrap().unwrap();
    assert_eq!((t.desk_config, t.model_config), (Some(desk), None));
    let missing = store.set_tenant_desk_config(Uuid::now_v7(), None).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn desk_accept_has_one_winner_and_transfer_needs_the_holder(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    store
        .set_conversation_handler(a.id, c.id, Handler::Queued, "customer_asked")
        .await
        .unwrap();
    let (ann, bob, cat) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // Two agents accept at once: exactly one wins, the other gets Conflict.
    let (r1, r2) = tokio::join!(
        tokio_spawn({
            let s = store.clone();
            async move { s.assign_conversation(a.id, c.id, ann, None, "accept").await }
        }),
        tokio_spawn({
            let s = store.clone();
            async move { s.assign_conversation(a.id, c.id, bob, None, "accept").await }
        }),
    );
    let results = [r1, r2];
    let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StoreError::Conflict(_)))),
        "{results:?}"
    );
    let (held, ev) = won[0].as_ref().unwrap();
    let holder = held.assignee_id.expect("an assignee");
    assert_eq!(held.handler, Handler::Agent);
    assert!(matches!(
        ev.as_ref().map(|e| &e.data),
        Some(EventData::HandlerChanged { handler: Handler::Agent, assignee: Some(x), .. }) if *x == holder
    ));
    // Accepting again is a no-op for the holder.
    let (_, again) = store
        .assign_conversation(a.id, c.id, holder, None, "accept")
        .await
        .unwrap();
    assert!(again.is_none());
    // A transfer must name the current holder.
    let not_holder = if holder == ann { bob } else { ann };
    let wrong = store
        .assign_conversation(a.id, c.id, cat, Some(not_holder), "transfer")
        .await;
    assert!(matches!(wrong, Err(StoreError::Conflict(_))), "{wrong:?}");
    let (moved, _) = store
        .assign_conversation(a.id, c.id, cat, Some(holder), "transfer")
        .await
        .unwrap();
    assert_eq!(moved.assignee_id, Some(cat));
    // Giving it back to the assistant clears the assignee; another tenant cannot take it.
    let (back, _) = store
        .set_conversation_handler(a.id, c.id, Handler::Bot, "agent_released")
        .await
        .unwrap();
    assert_eq!((back.handler, back.assignee_id), (Handler::Bot, None));
    let b = tenant(&store).await;
    let other = store
        .assign_conversation(b.id, c.id, ann, None, "accept")
        .await;
    assert!(matches!(other, Err(StoreError::NotFound)), "{other:?}");
    store
        .set_conversation_status(a.id, c.id, ConversationStatus::Closed)
        .await
        .unwrap();
    let closed = store
        .assign_conversation(a.id, c.id, ann, None, "accept")
        .await;
    assert!(
        matches!(closed, Err(StoreError::ConversationClosed)),
        "{closed:?}"
    );
}

async fn desk_lists_the_queue_longest_waiting_first(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let first = conversation(&store, &a).await;
    let second = conversation(&store, &a).await;
    let bot = conversation(&store, &a).await;
    for c in [&first, &second] {
        store
            .set_conversation_handler(a.id, c.id, Handler::Queued, "customer_asked")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    // Activity on the first does not move it behind the second.
    store
        .append_message(customer_msg(&a, &first, "还在吗", None))
        .await
        .unwrap();
    let queue = store
        .list_conversations(
            a.id,
            ConversationQuery {
                handler: Some(Handler::Queued),
                status: Some(ConversationStatus::Open),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<Uuid> = queue.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![first.id, second.id]);
    assert!(queue.iter().all(|c| c.queued_at.is_some()));
    let agent = Uuid::now_v7();
    store
        .assign_conversation(a.id, second.id, agent, None, "accept")
        .await
        .unwrap();
    let mine = store
        .list_conversations(
            a.id,
            ConversationQuery {
                assignee: Some(agent),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, second.id);
    let all = store
        .list_conversations(
            a.id,
            ConversationQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().any(|c| c.id == bot.id));
    let someone = store
        .upsert_customer(a.id, Some("cust-2"), None)
        .await
        .unwrap();
    let theirs = store
        .create_conversation(NewConversation {
            tenant_id: a.id,
            customer_id: someone.id,
            channel: "web".into(),
            subject: None,
            metadata: serde_json::json!({}),
        })
        .await
        .unwrap();
    let of_customer = store
        .list_conversations(
            a.id,
            ConversationQuery {
                customer: Some(someone.id),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        of_customer.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![theirs.id]
    );
    // Another tenant sees none of them.
    let b = tenant(&store).await;
    let theirs = store
        .list_conversations(
            b.id,
            ConversationQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(theirs.is_empty());
}

async fn ratings_are_stored_even_after_close(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    store
        .set_conversation_status(a.id, c.id, ConversationStatus::Closed)
        .await
        .unwrap();
    let (rated, ev) = store
        .rate_conversation(a.id, c.id, 4, Some("回复很快 <b>thanks</b>"))
        .await
        .unwrap();
    assert_eq!(rated.rating, Some(4));
    assert_eq!(
        rated.rating_comment.as_deref(),
        Some("回复很快 <b>thanks</b>")
    );
    let listed = store.list_events(a.id, c.id, 0, 10).await.unwrap();
    assert_eq!(listed.last(), Some(&ev));
    let (again, _) = store.rate_conversation(a.id, c.id, 5, None).await.unwrap();
    assert_eq!((again.rating, again.rating_comment), (Some(5), None));
    let b = tenant(&store).await;
    let other = store.rate_conversation(b.id, c.id, 1, None).await;
    assert!(matches!(other, Err(StoreError::NotFound)), "{other:?}");
}

async fn presence_finds_stale_holds_and_requeues_them_once(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let mk = |email: &str| NewStaffUser {
        tenant_id: a.id,
        email: email.into(),
        display_name: None,
        role: StaffRole::Agent,
        password_hash: "x".into(),
        teams: vec![],
    };
    let ann = store.create_staff(mk("ann@p.test")).await.unwrap();
    let api_only = store.create_staff(mk("api@p.test")).await.unwrap();
    let c1 = conversation(&store, &a).await;
    let c2 = conversation(&store, &a).await;
    store.touch_staff(a.id, ann.id).await.unwrap();
    store
        .assign_conversation(a.id, c1.id, ann.id, None, "accept")
        .await
        .unwrap();
    store
        .assign_conversation(a.id, c2.id, api_only.id, None, "accept")
        .await
        .unwrap();
    let agents = store.desk_agents(a.id).await.unwrap();
    let ann_load = agents.iter().find(|x| x.id == ann.id).unwrap();
    assert!(ann_load.last_seen_at.is_some() && ann_load.last_assigned_at.is_some());
    assert_eq!(ann_load.held, 1);
    // Nothing is stale yet; later, only the agent who used presence and went silent is.
    let now = now_ms();
    assert!(store
        .stale_holds(now - chrono::Duration::seconds(60), 10)
        .await
        .unwrap()
        .iter()
        .all(|h| h.0 != a.id));
    let stale = store
        .stale_holds(now + chrono::Duration::seconds(60), 100)
        .await
        .unwrap();
    let mine: Vec<_> = stale.iter().filter(|h| h.0 == a.id).collect();
    assert_eq!(mine, vec![&(a.id, c1.id, ann.id)]);
    let ev = store
        .requeue_conversation(a.id, c1.id, ann.id, "agent_disconnected")
        .await
        .unwrap();
    assert!(matches!(
        ev.map(|e| e.data),
        Some(EventData::HandlerChanged {
            handler: Handler::Queued,
            assignee: None,
            ..
        })
    ));
    let again = store
        .requeue_conversation(a.id, c1.id, ann.id, "agent_disconnected")
        .await
        .unwrap();
    assert!(again.is_none(), "requeued once");
    let c = store.get_conversation(a.id, c1.id).await.unwrap().unwrap();
    assert_eq!((c.handler, c.assignee_id), (Handler::Queued, None));
    let queued: Vec<_> = store
        .queued_conversations(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|q| (q.tenant_id, q.id))
        .collect();
    assert!(queued.contains(&(a.id, c1.id)));
    assert!(!queued.contains(&(a.id, c2.id)));
    let other = tenant(&store).await;
    assert!(matches!(
        store.touch_staff(other.id, ann.id).await,
        Err(StoreError::NotFound)
    ));
}

async fn staff_teams_are_updated_in_place(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let u = store
        .create_staff(NewStaffUser {
            tenant_id: a.id,
            email: "wu@t.test".into(),
            display_name: Some("吴".into()),
            role: StaffRole::Agent,
            password_hash: "x".into(),
            teams: vec!["售后".into()],
        })
        .await
        .unwrap();
    assert_eq!(
        store.get_staff(a.id, u.id).await.unwrap().unwrap().teams,
        vec!["售后"]
    );
    let teams = vec!["售后".to_string(), "vip".to_string()];
    let changed = store
        .update_staff(
            a.id,
            u.id,
            StaffUpdate {
                teams: Some(teams.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Fields not named stay as they were.
    assert_eq!(
        (
            changed.teams.clone(),
            changed.role,
            changed.display_name.as_deref()
        ),
        (teams.clone(), StaffRole::Agent, Some("吴"))
    );
    let changed = store
        .update_staff(
            a.id,
            u.id,
            StaffUpdate {
                display_name: Some(None),
                role: Some(StaffRole::Supervisor),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (changed.teams, changed.role, changed.display_name),
        (teams.clone(), StaffRole::Supervisor, None)
    );
    let load = store.desk_agents(a.id).await.unwrap();
    assert_eq!(load[0].teams, teams);
    // Another tenant's staff member is not found and keeps its teams.
    let b = tenant(&store).await;
    let other = store.update_staff(b.id, u.id, StaffUpdate::default()).await;
    assert!(matches!(other, Err(StoreError::NotFound)), "{other:?}");
}

async fn routing_to_a_team_queues_and_transfers_by_compare_and_set(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    // A hand-off routed to a team: queued, with the team, and one event.
    let (conv, ev) = store
        .route_conversation(a.id, c.id, Some("售后"), None, "asked_for_human")
        .await
        .unwrap();
    assert_eq!(
        (conv.handler, conv.team.as_deref()),
        (Handler::Queued, Some("售后"))
    );
    let queued_at = conv.queued_at.expect("queued");
    assert!(matches!(
        ev.map(|e| e.data),
        Some(EventData::HandlerChanged {
            handler: Handler::Queued,
            ..
        })
    ));
    // The same routing again changes nothing; another team keeps the place in the queue.
    let (_, none) = store
        .route_conversation(a.id, c.id, Some("售后"), None, "asked_for_human")
        .await
        .unwrap();
    assert!(none.is_none());
    let (conv, ev) = store
        .route_conversation(a.id, c.id, Some("billing"), None, "rerouted")
        .await
        .unwrap();
    assert!(ev.is_some());
    assert_eq!(
        (conv.team.as_deref(), conv.queued_at),
        (Some("billing"), Some(queued_at))
    );
    let q = |team: Option<TeamFilter>| ConversationQuery {
        handler: Some(Handler::Queued),
        team,
        limit: 50,
        ..Default::default()
    };
    let ids = |v: Vec<Conversation>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let general = conversation(&store, &a).await;
    store
        .set_conversation_handler(a.id, general.id, Handler::Queued, "customer_button")
        .await
        .unwrap();
    assert_eq!(
        ids(store
            .list_conversations(a.id, q(Some(TeamFilter::Team("billing".into()))))
            .await
            .unwrap()),
        vec![c.id]
    );
    assert_eq!(
        ids(store
            .list_conversations(a.id, q(Some(TeamFilter::General)))
            .await
            .unwrap()),
        vec![general.id]
    );
    assert_eq!(
        ids(store.list_conversations(a.id, q(None)).await.unwrap()).len(),
        2
    );
    let sweep = store.queued_conversations(10_000).await.unwrap();
    let mine = sweep.iter().find(|r| r.id == c.id).unwrap();
    assert_eq!(
        (mine.tenant_id, mine.team.as_deref()),
        (a.id, Some("billing"))
    );

    // Held: only the holder's transfer moves it; a hand-off cannot take it from the agent.
    let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
    store
        .assign_conversation(a.id, c.id, ann, None, "accept")
        .await
        .unwrap();
    let stolen = store
        .route_conversation(a.id, c.id, None, None, "asked_for_human")
        .await;
    assert!(matches!(stolen, Err(StoreError::Conflict(_))), "{stolen:?}");
    let wrong = store
        .route_conversation(a.id, c.id, Some("vip"), Some(bob), "transfer")
        .await;
    assert!(matches!(wrong, Err(StoreError::Conflict(_))), "{wrong:?}");
    let (conv, ev) = store
        .route_conversation(a.id, c.id, Some("vip"), Some(ann), "transferred_to_team")
        .await
        .unwrap();
    assert!(ev.is_some());
    assert_eq!(
        (conv.handler, conv.assignee_id, conv.team.as_deref()),
        (Handler::Queued, None, Some("vip"))
    );
    // A plain hand-off (an integration's) goes to the general queue.
    store
        .set_conversation_handler(a.id, c.id, Handler::Bot, "released")
        .await
        .unwrap();
    let (conv, _) = store
        .set_conversation_handler(a.id, c.id, Handler::Queued, "integration")
        .await
        .unwrap();
    assert_eq!(conv.team, None);
    store
        .set_conversation_status(a.id, c.id, ConversationStatus::Closed)
        .await
        .unwrap();
    let closed = store
        .route_conversation(a.id, c.id, Some("vip"), None, "late")
        .await;
    assert!(
        matches!(closed, Err(StoreError::ConversationClosed)),
        "{closed:?}"
    );
    let b = tenant(&store).await;
    let other = store
        .route_conversation(b.id, general.id, None, None, "x")
        .await;
    assert!(matches!(other, Err(StoreError::NotFound)), "{other:?}");
}

async fn moderation_config_round_trips(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let cfg = serde_json::json!({"words": "退款骗子\tabuse\tblock\n", "default_action": "mask"});
    store
        .set_tenant_moderation_config(a.id, Some(cfg.clone()))
        .await
        .unwrap();
    let t = store.get_tenant(a.id).await.unwrap().unwrap();
    assert_eq!((t.moderation_config, t.desk_config), (Some(cfg), None));
    store
        .set_tenant_moderation_config(a.id, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_tenant(a.id)
            .await
            .unwrap()
            .unwrap()
            .moderation_config,
        None
    );
    let missing = store
        .set_tenant_moderation_config(Uuid::now_v7(), None)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn intent_models_are_numbered_per_tenant_and_switched(store: Arc<dyn Store>) {
    let (a, b) = (tenant(&store).await, tenant(&store).await);
    assert_eq!(
        store.get_tenant(a.id).await.unwrap().unwrap().intent_model,
        None
    );
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let info = serde_json::json!({"labels": ["退款", "track_order"]});
    // Trained at once, several models still get distinct consecutive versions.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (store, info, bytes) = (store.clone(), info.clone(), bytes.clone());
            tokio_spawn(async move {
                store
                    .add_intent_model(a.id, info, &bytes, None, i == 0)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut saved = Vec::new();
    for t in tasks {
        saved.push(t.await);
    }
    let mut versions: Vec<i32> = saved.iter().map(|m| m.version).collect();
    versions.sort_unstable();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let first_active = saved[0].version;
    assert_eq!(
        store.get_tenant(a.id).await.unwrap().unwrap().intent_model,
        Some(first_active)
    );
    // Another tenant numbers from 1 and sees none of them.
    let staff = store
        .create_staff(NewStaffUser {
            tenant_id: b.id,
            email: "trainer@example.com".into(),
            display_name: Some("Trainer".into()),
            role: StaffRole::Admin,
            password_hash: "x".into(),
            teams: Vec::new(),
        })
        .await
        .unwrap();
    let other = store
        .add_intent_model(b.id, info.clone(), b"tiny", Some(staff.id), false)
        .await
        .unwrap();
    assert_eq!((other.version, other.created_by), (1, Some(staff.id)));
    assert_eq!(
        store.get_tenant(b.id).await.unwrap().unwrap().intent_model,
        None
    );
    assert_eq!(store.list_intent_models(b.id).await.unwrap().len(), 1);
    assert!(store.get_intent_model(b.id, 2).await.unwrap().is_none());
    // Bytes and info round-trip; the list is newest first and carries no bytes.
    let (rec, data) = store.get_intent_model(a.id, 3).await.unwrap().unwrap();
    assert_eq!(
        (data, rec.info, rec.bytes),
        (bytes.clone(), info.clone(), 100_000)
    );
    let listed: Vec<i32> = store
        .list_intent_models(a.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(listed, vec![4, 3, 2, 1]);
    // Switching: only to a version of this tenant.
    store.set_intent_model(a.id, Some(2)).await.unwrap();
    assert_eq!(
        store.get_tenant(a.id).await.unwrap().unwrap().intent_model,
        Some(2)
    );
    let foreign = store.set_intent_model(b.id, Some(4)).await;
    assert!(matches!(foreign, Err(StoreError::NotFound)), "{foreign:?}");
    // The version in use cannot be deleted; others can, once.
    let in_use = store.delete_intent_model(a.id, 2).await;
    assert!(matches!(in_use, Err(StoreError::Conflict(_))), "{in_use:?}");
    store.delete_intent_model(a.id, 4).await.unwrap();
    let again = store.delete_intent_model(a.id, 4).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    store.set_intent_model(a.id, None).await.unwrap();
    store.delete_intent_model(a.id, 2).await.unwrap();
    assert_eq!(
        store.get_tenant(a.id).await.unwrap().unwrap().intent_model,
        None
    );
    // The next version keeps counting from the highest left.
    let next = store
        .add_intent_model(a.id, info, b"x", None, false)
        .await
        .unwrap();
    assert_eq!(next.version, 4);
    let missing = store
        .add_intent_model(Uuid::now_v7(), serde_json::json!({}), b"x", None, false)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn attachments_round_trip_their_bytes_within_the_tenant(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let c = conversation(&store, &a).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let att = store
        .add_attachment(a.id, c.id, "image/png", &bytes)
        .await
        .unwrap();
    assert_eq!(att.bytes, 70_000);
    let (got, data) = store.get_attachment(a.id, att.id).await.unwrap().unwrap();
    assert_eq!((got, data), (att.clone(), bytes));
    let b = tenant(&store).await;
    assert!(store.get_attachment(b.id, att.id).await.unwrap().is_none());
    let r = store.add_attachment(b.id, c.id, "image/png", b"x").await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
}

fn new_ticket(tenant: Uuid, subject: &str) -> NewTicket {
    NewTicket {
        tenant_id: tenant,
        conversation_id: None,
        customer_id: None,
        subject: subject.into(),
        description: "客户说退货已寄回一周，还没收到退款".into(),
        department: Some("售后".into()),
        priority: TicketPriority::High,
        source: "agent".into(),
        created_by: None,
        assignee_id: None,
        external_ref: Some("RMA100001".into()),
    }
}

async fn tickets_are_numbered_per_tenant_even_when_created_at_once(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let mut handles = Vec::new();
    for i in 0..6 {
        let s = store.clone();
        let tid = if i % 3 == 0 { b.id } else { a.id };
        handles.push(tokio_spawn(async move {
            s.create_ticket(new_ticket(tid, &format!("t{i}"))).await
        }));
    }
    let mut by_tenant: std::collections::HashMap<Uuid, Vec<i64>> = Default::default();
    for h in handles {
        let t = h.await.unwrap();
        by_tenant.entry(t.tenant_id).or_default().push(t.number);
    }
    for (tid, want) in [(a.id, vec![1, 2, 3, 4]), (b.id, vec![1, 2])] {
        let mut got = by_tenant.remove(&tid).unwrap();
        got.sort();
        assert_eq!(got, want);
    }
    let listed = store
        .list_tickets(
            a.id,
            TicketQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    let one = store.get_ticket(a.id, listed[0].id).await.unwrap().unwrap();
    assert_eq!(one, listed[0]);
    assert_eq!(one.external_ref.as_deref(), Some("RMA100001"));
    assert!(store.get_ticket(b.id, one.id).await.unwrap().is_none());
    let missing = store
        .create_ticket(new_ticket(Uuid::now_v7(), "no tenant"))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

async fn ticket_updates_follow_the_workflow_and_keep_the_sla_clock(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let t = store
        .create_ticket(new_ticket(a.id, "refund"))
        .await
        .unwrap();
    assert_eq!((t.status, t.version), (TicketStatus::Open, 0));
    let status = |s| TicketUpdate {
        status: Some(s),
        ..Default::default()
    };
    let pending = store
        .update_ticket(a.id, t.id, status(TicketStatus::Pending))
        .await
        .unwrap();
    assert!(pending.paused_since.is_some());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let open = store
        .update_ticket(a.id, t.id, status(TicketStatus::Open))
        .await
        .unwrap();
    assert!(open.paused_since.is_none());
    assert!(open.paused_ms >= 20, "{}", open.paused_ms);
    let agent = Uuid::now_v7();
    let assigned = store
        .update_ticket(
            a.id,
            t.id,
            TicketUpdate {
                assignee_id: Some(Some(agent)),
                priority: Some(TicketPriority::Urgent),
                department: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(assigned.assignee_id, Some(agent));
    assert_eq!(assigned.department, None);
    assert_eq!(assigned.version, 3);
    // What is read back is what was written.
    assert_eq!(
        store.get_ticket(a.id, t.id).await.unwrap(),
        Some(assigned.clone())
    );
    let mine = store
        .list_tickets(
            a.id,
            TicketQuery {
                assignee: Some(agent),
                status: Some(TicketStatus::Open),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    // Closed is final; a forbidden transition changes nothing.
    store
        .update_ticket(a.id, t.id, status(TicketStatus::Resolved))
        .await
        .unwrap();
    let closed = store
        .update_ticket(a.id, t.id, status(TicketStatus::Closed))
        .await
        .unwrap();
    assert!(closed.resolved_at.is_some());
    let bad = store
        .update_ticket(a.id, t.id, status(TicketStatus::Open))
        .await;
    assert!(matches!(bad, Err(StoreError::Conflict(_))), "{bad:?}");
    assert_eq!(store.get_ticket(a.id, t.id).await.unwrap(), Some(closed));
    // Concurrent updates each apply once.
    let t2 = store.create_ticket(new_ticket(a.id, "race")).await.unwrap();
    let (x, y) = tokio::join!(
        tokio_spawn({
            let s = store.clone();
            async move {
                s.update_ticket(
                    a.id,
                    t2.id,
                    TicketUpdate {
                        assignee_id: Some(Some(agent)),
                        ..Default::default()
                    },
                )
                .await
            }
        }),
        tokio_spawn({
            let s = store.clone();
            async move {
                s.update_ticket(
                    a.id,
                    t2.id,
                    TicketUpdate {
                        priority: Some(TicketPriority::Low),
                        ..Default::default()
                    },
                )
                .await
            }
        }),
    );
    x.unwrap();
    y.unwrap();
    let both = store.get_ticket(a.id, t2.id).await.unwrap().unwrap();
    assert_eq!(
        (both.assignee_id, both.priority, both.version),
        (Some(agent), TicketPriority::Low, 2)
    );
    let other = tenant(&store).await;
    let r = store
        .update_ticket(other.id, t2.id, status(TicketStatus::Resolved))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
}

async fn ticket_notes_are_internal_or_replies(store: Arc<dyn Store>) {
    let a = tenant(&store).await;
    let t = store
        .create_ticket(new_ticket(a.id, "notes"))
        .await
        .unwrap();
    let agent = Uuid::now_v7();
    store
        .add_ticket_note(a.id, t.id, Some(agent), "客户很着急，优先处理", true)
        .await
        .unwrap();
    assert!(store
        .get_ticket(a.id, t.id)
        .await
        .unwrap()
        .unwrap()
        .first_responded_at
        .is_none());
    store
        .add_ticket_note(a.id, t.id, Some(agent), "您好，退款已在处理中。", false)
        .await
        .unwrap();
    let after = store.get_ticket(a.id, t.id).await.unwrap().unwrap();
    assert!(
        after.first_responded_at.is_some(),
        "a reply is the first response"
    );
    let all = store.list_ticket_notes(a.id, t.id, true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].internal && !all[1].internal);
    let public = store.list_ticket_notes(a.id, t.id, false).await.unwrap();
    assert_eq!(public.len(), 1);
    assert_eq!(public[0].body, "您好，退款已在处理中。");
    let b = tenant(&store).await;
    let r = store.add_ticket_note(b.id, t.id, None, "x", true).await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert!(store
        .list_ticket_notes(b.id, t.id, true)
        .await
        .unwrap()
        .is_empty());
}

fn tokio_spawn<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> impl std::future::Future<Output = T> {
    let handle = tokio::spawn(f);
    async move { handle.await.expect("task panicked") }
}

fn kb_doc(tenant: Uuid, source: &str) -> NewKbDocument {
    NewKbDocument {
        tenant_id: tenant,
        collection: "help".into(),
        source: source.into(),
        title: "退货政策 Returns".into(),
        format: "markdown".into(),
        lang: "zh".into(),
        tags: vec!["售后".into()],
        content_hash: "h1".into(),
        bytes: 42,
    }
}

fn kb_chunk(text: &str, vectors: Option<&[f32]>) -> NewKbChunk {
    NewKbChunk {
        headings: vec!["退货".into()],
        text: text.into(),
        location: serde_json::json!({"line_start": 1, "line_end": 2}),
        lang: "zh".into(),
        tags: vec!["售后".into()],
        tokens: 7,
        content_hash: format!("hash-{text}"),
        faq: None,
        vectors: vectors.map(|v| StoredVectors {
            text_hash: format!("t-{text}"),
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }),
    }
}

async fn kb_documents_replace_their_chunks_and_log_changes(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let head = store.kb_head().await.unwrap();
    let d = store
        .kb_put_document(
            kb_doc(t.id, "a.md"),
            vec![kb_chunk("一", Some(&[1.0, 0.0])), kb_chunk("二", None)],
            Some("m"),
        )
        .await
        .unwrap();
    assert_eq!(d.chunk_count, 2);
    assert_eq!(d.tags, vec!["售后".to_string()]);
    let chunks = store.kb_document_chunks(d.id, Some("m")).await.unwrap();
    assert_eq!(
        chunks
            .iter()
            .map(|(c, _)| c.text.as_str())
            .collect::<Vec<_>>(),
        vec!["一", "二"]
    );
    assert_eq!(chunks[0].1.as_ref().map(Vec::len), Some(8));
    assert!(chunks[1].1.is_none());
    assert_eq!(chunks[0].0.document_title, "退货政策 Returns");
    assert_eq!(chunks[0].0.location["line_end"], 2);
    assert_eq!(store.kb_document_vectors(d.id, "m").await.unwrap().len(), 1);
    assert!(store
        .kb_document_vectors(d.id, "other")
        .await
        .unwrap()
        .is_empty());

    // Re-importing the same source replaces exactly its chunks, keeps the id, and logs another change.
    let again = store
        .kb_put_document(kb_doc(t.id, "a.md"), vec![kb_chunk("三", None)], Some("m"))
        .await
        .unwrap();
    assert_eq!(again.id, d.id);
    assert_eq!(again.created_at, d.created_at);
    let chunks = store.kb_document_chunks(d.id, None).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].0.text, "三");
    let found = store
        .kb_find_document(t.id, "help", "a.md")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.chunk_count, 1);
    let hydrated = store
        .kb_get_chunks(t.id, &[chunks[0].0.id, Uuid::new_v4()])
        .await
        .unwrap();
    assert_eq!(hydrated.len(), 1);

    assert!(store.kb_delete_document(t.id, d.id).await.unwrap());
    assert!(!store.kb_delete_document(t.id, d.id).await.unwrap());
    assert!(store
        .kb_document_chunks(d.id, None)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .kb_get_chunks(t.id, &[chunks[0].0.id])
        .await
        .unwrap()
        .is_empty());

    let changes: Vec<_> = store
        .kb_changes_after(head, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.document_id == d.id)
        .map(|c| c.op)
        .collect();
    assert_eq!(
        changes,
        vec![KbChangeOp::Upsert, KbChangeOp::Upsert, KbChangeOp::Delete]
    );
    assert!(store.kb_head().await.unwrap() >= head + 3);
}

async fn kb_changes_are_ordered_under_concurrent_writers(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let head = store.kb_head().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .kb_put_document(
                    kb_doc(t.id, &format!("doc{i}.md")),
                    vec![kb_chunk("x", None)],
                    None,
                )
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let changes = store.kb_changes_after(head, 1000).await.unwrap();
    let mine: Vec<i64> = changes
        .iter()
        .filter(|c| c.tenant_id == t.id)
        .map(|c| c.seq)
        .collect();
    assert_eq!(mine.len(), 8);
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gapless, increasing: {seqs:?}"
    );
}

async fn kb_is_tenant_scoped(store: Arc<dyn Store>) {
    let (a, b) = (tenant(&store).await, tenant(&store).await);
    let d = store
        .kb_put_document(kb_doc(a.id, "a.md"), vec![kb_chunk("一", None)], None)
        .await
        .unwrap();
    let chunk = store.kb_document_chunks(d.id, None).await.unwrap()[0].0.id;
    assert!(store.kb_get_document(b.id, d.id).await.unwrap().is_none());
    assert!(store
        .kb_get_chunks(b.id, &[chunk])
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .kb_list_documents(b.id, None, 10, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(!store.kb_delete_document(b.id, d.id).await.unwrap());
    assert_eq!(
        store
            .kb_list_documents(a.id, Some("help"), 10, 0)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .kb_list_documents(a.id, Some("other"), 10, 0)
        .await
        .unwrap()
        .is_empty());
    // The same source in another tenant is another document.
    let other = store
        .kb_put_document(kb_doc(b.id, "a.md"), vec![], None)
        .await
        .unwrap();
    assert_ne!(other.id, d.id);
    let ids = store.kb_document_ids(None, 100_000).await.unwrap();
    assert!(ids.contains(&(d.id, a.id)) && ids.contains(&(other.id, b.id)));
}

async fn kb_jobs_record_progress(store: Arc<dyn Store>) {
    let (a, b) = (tenant(&store).await, tenant(&store).await);
    let j = store.kb_create_job(a.id, 3).await.unwrap();
    assert_eq!(j.status, KbJobStatus::Running);
    let report = serde_json::json!([{"file": "a.md", "ok": true}]);
    store
        .kb_update_job(a.id, j.id, KbJobStatus::Done, 3, &report)
        .await
        .unwrap();
    let got = store.kb_get_job(a.id, j.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.done, got.report),
        (KbJobStatus::Done, 3, report.clone())
    );
    assert!(store.kb_get_job(b.id, j.id).await.unwrap().is_none());
    assert!(matches!(
        store
            .kb_update_job(b.id, j.id, KbJobStatus::Failed, 0, &report)
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn kb_vectors_are_set_per_document(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let a = store
        .kb_put_document(kb_doc(t.id, "a.md"), vec![kb_chunk("一", None)], None)
        .await
        .unwrap();
    let b = store
        .kb_put_document(kb_doc(t.id, "b.md"), vec![kb_chunk("二", None)], None)
        .await
        .unwrap();
    let chunk_a = store.kb_document_chunks(a.id, None).await.unwrap()[0].0.id;
    let chunk_b = store.kb_document_chunks(b.id, None).await.unwrap()[0].0.id;
    let head = store.kb_head().await.unwrap();
    let v = |x: f32| StoredVectors {
        text_hash: format!("h{x}"),
        data: x.to_le_bytes().to_vec(),
    };
    // A chunk of another document is skipped, not written.
    store
        .kb_put_vectors(a.id, "m2", vec![(chunk_a, v(1.0)), (chunk_b, v(2.0))])
        .await
        .unwrap();
    assert_eq!(
        store.kb_document_chunks(a.id, Some("m2")).await.unwrap()[0].1,
        Some(1f32.to_le_bytes().to_vec())
    );
    assert_eq!(
        store.kb_document_chunks(b.id, Some("m2")).await.unwrap()[0].1,
        None
    );
    // Setting again replaces.
    store
        .kb_put_vectors(a.id, "m2", vec![(chunk_a, v(3.0))])
        .await
        .unwrap();
    assert_eq!(
        store.kb_document_vectors(a.id, "m2").await.unwrap(),
        vec![v(3.0)]
    );
    let changes = store.kb_changes_after(head, 100).await.unwrap();
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.document_id, c.op))
            .collect::<Vec<_>>(),
        vec![(a.id, KbChangeOp::Upsert); 2]
    );
    assert!(matches!(
        store.kb_put_vectors(Uuid::new_v4(), "m2", vec![]).await,
        Err(StoreError::NotFound)
    ));
}
