//! The human desk through the real application: the customer's "talk to a human", the queue, two agents racing to
//! accept, the agent's reply reaching the customer live, the hand-off brief with the shop's profile and orders,
//! giving the conversation back, the rating, and who may do what (customers, API clients, agents, supervisors,
//! another tenant).

use serde_json::{json, Value};

use kefu_testkit::fake_llm::Reply;
use kefu_types::StreamEvent;

use crate::helpers::{assert_error, next_event, spawn_app, spawn_app_with, Backend, TestApp};

/// Creates a staff member and signs in; returns (token, user id).
async fn staff(app: &TestApp, admin: &str, email: &str, role: &str) -> (String, String) {
    let r = app
        .post(
            admin,
            "/v1/admin/users",
            json!({"email": email, "password": "a-long-password-1", "role": role, "display_name": "测试 <b>坐席</b>"}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (app.login(email, "a-long-password-1").await, id)
}

async fn desk(app: &TestApp, token: &str, view: &str) -> Vec<Value> {
    let r = app
        .get(token, &format!("/v1/desk/conversations?view={view}"))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.json::<Value>().await.unwrap()["conversations"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_customer_asks_for_a_human_an_agent_takes_over_and_the_customer_rates() {
    let app = spawn_app_with(Backend::Sqlite, "[demo]\nshop = true\n").await;
    let admin = app.admin_token().await;
    let (ann, _) = staff(&app, &admin, "ann@acme.test", "agent").await;
    let (bob, _) = staff(&app, &admin, "bob@acme.test", "agent").await;
    let (sue, _) = staff(&app, &admin, "sue@acme.test", "supervisor").await;

    // A signed-in shop customer (C1003, platinum) talks to the assistant, then presses "talk to a human".
    let conv = app.new_conversation(&app.api_key, Some("C1003")).await;
    app.fake.push(Reply::text(&["您好，请问有什么可以帮您？"]));
    let r = app
        .send(&app.api_key, &conv, "你好，我的耳机有问题", None, true)
        .await;
    assert_eq!(r.status(), 201);
    let before = app.fake.request_count();
    let r = app
        .post(
            &app.api_key,
            &format!("/v1/conversations/{conv}/handoff"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(r.json::<Value>().await.unwrap()["handler"], "queued");

    // The queue shows it, with why; messages while queued reach no model.
    let r = app.send(&app.api_key, &conv, "还在吗？", None, false).await;
    assert_eq!(r.status(), 201);
    let queue = desk(&app, &ann, "queue").await;
    let row = queue
        .iter()
        .find(|c| c["conversation"]["id"] == conv.as_str())
        .expect("queued");
    assert_eq!(row["handoff_reason"], "customer_button");
    assert_eq!(row["customer"]["external_id"], "C1003");
    assert_eq!(row["last_customer_message"], "还在吗？");
    assert!(row["conversation"]["queued_at"].is_string());

    // The brief: the shop's profile and orders, the emotion trajectory, what the assistant tried.
    let brief = app
        .get_json(&ann, &format!("/v1/conversations/{conv}/brief"))
        .await;
    assert_eq!(brief["language"], "zh", "{brief}");
    assert_eq!(brief["profile"]["tier"], "platinum", "{brief}");
    assert_eq!(brief["ticket"]["priority"], "urgent", "{brief}");
    assert!(
        brief["recent_orders"]["orders"]
            .as_array()
            .is_some_and(|o| !o.is_empty() && o.len() <= 5),
        "{brief}"
    );
    assert_eq!(brief["attempts"].as_array().unwrap().len(), 1, "{brief}");
    assert_eq!(brief["attempts"][0]["question"], "你好，我的耳机有问题");
    assert_eq!(brief["emotions"].as_array().unwrap().len(), 1);
    assert_eq!(brief["handoff_reason"], "customer_button");
    assert!(
        brief["summary"]
            .as_str()
            .unwrap()
            .contains("customer_button"),
        "{brief}"
    );
    assert!(brief["suggested_reply"]
        .as_str()
        .unwrap()
        .contains("人工客服"));

    // Two agents accept at once: exactly one gets it.
    let accept = format!("/v1/conversations/{conv}/accept");
    let (a, b) = tokio::join!(
        app.post(&ann, &accept, json!({})),
        app.post(&bob, &accept, json!({})),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    let (winner, loser) = if a.status() == 200 {
        (&ann, &bob)
    } else {
        (&bob, &ann)
    };
    let lost = if a.status() == 200 { b } else { a };
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    assert_error(
        &lost.json::<Value>().await.unwrap(),
        "held_by_another_agent",
    );

    // The loser cannot speak in it; the winner can, and the customer sees it live.
    let r = app
        .post(
            loser,
            &format!("/v1/conversations/{conv}/agent-messages"),
            json!({"content": "我来"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_error(&r.json::<Value>().await.unwrap(), "not_assigned");
    let customer_view = app.api_key.clone();
    let last = app
        .get_json(&customer_view, &format!("/v1/conversations/{conv}"))
        .await["last_seq"]
        .as_i64()
        .unwrap();
    let mut events = app.sse(&customer_view, &conv, last, None).await;
    let send = |key: &'static str| {
        app.client
            .post(app.url(&format!("/v1/conversations/{conv}/agent-messages")))
            .bearer_auth(winner)
            .header("Idempotency-Key", key)
            .json(&json!({"content": "您好，我是人工客服 <script>alert(1)</script>"}))
            .send()
    };
    let first = send("k-1").await.unwrap();
    assert_eq!(first.status(), 201);
    let again = send("k-1").await.unwrap();
    assert_eq!(again.status(), 200, "a retry returns the original");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    match next_event(&mut events).await {
        StreamEvent::MessageCreated { message, .. } => {
            assert_eq!(message.role, kefu_types::MessageRole::Agent);
            // Stored as sent; the widget renders it as text.
            assert!(message.content.contains("<script>"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // While the agent holds it, customer messages reach no model.
    let r = app.send(&app.api_key, &conv, "好的谢谢", None, false).await;
    assert_eq!(r.status(), 201);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        app.fake.request_count(),
        before,
        "no model call after the hand-off"
    );

    // "Mine" for the winner; the supervisor sees it among everyone's held conversations; an agent may not look.
    assert_eq!(desk(&app, winner, "mine").await.len(), 1);
    assert!(desk(&app, loser, "mine").await.is_empty());
    assert_eq!(desk(&app, &sue, "held").await.len(), 1);
    let r = app.get(&ann, "/v1/desk/conversations?view=held").await;
    assert_eq!(r.status(), 403);

    // The loser cannot give it back; the winner can, and the assistant answers again.
    let r = app
        .post(
            loser,
            &format!("/v1/conversations/{conv}/release"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = app
        .post(
            winner,
            &format!("/v1/conversations/{conv}/release"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let back: Value = r.json().await.unwrap();
    assert_eq!(back["handler"], "bot");
    assert!(back["assignee_id"].is_null());

    // The customer ends the chat and rates it; bad ratings change nothing.
    let r = app
        .post(
            &app.api_key,
            &format!("/v1/conversations/{conv}/close"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    for bad in [
        json!({"rating": 0}),
        json!({"rating": 6}),
        json!({"rating": 3, "extra": 1}),
    ] {
        let r = app
            .post(
                &app.api_key,
                &format!("/v1/conversations/{conv}/rating"),
                bad,
            )
            .await;
        assert!(r.status() == 422 || r.status() == 400, "{}", r.status());
    }
    let r = app
        .post(
            &app.api_key,
            &format!("/v1/conversations/{conv}/rating"),
            json!({"rating": 5, "comment": "很快 <img src=x onerror=alert(1)>"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let rated: Value = r.json().await.unwrap();
    assert_eq!(rated["rating"], 5);
    let staff_view = app
        .get_json(&sue, &format!("/v1/conversations/{conv}"))
        .await;
    assert_eq!(
        staff_view["rating_comment"],
        "很快 <img src=x onerror=alert(1)>"
    );
}

#[tokio::test]
async fn every_desk_endpoint_checks_role_and_tenant() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (agent, agent_id) = staff(&app, &admin, "amy@acme.test", "agent").await;
    let (other_agent, other_id) = staff(&app, &admin, "otto@acme.test", "agent").await;
    let (customer, _) = app.customer_session(None).await;
    let conv = app.new_conversation(&customer, None).await;
    let (_, other_key) = app.other_tenant().await;
    let other_conv = app.new_conversation(&other_key, Some("x-1")).await;

    // Customers and API clients have no desk.
    for token in [&customer, &app.api_key] {
        let r = app.get(token, "/v1/desk/conversations").await;
        assert_eq!(r.status(), 403);
        for path in ["accept", "release"] {
            let r = app
                .post(
                    token,
                    &format!("/v1/conversations/{conv}/{path}"),
                    json!({}),
                )
                .await;
            assert_eq!(r.status(), 403, "{path}");
        }
        let r = app
            .get(token, &format!("/v1/conversations/{conv}/brief"))
            .await;
        assert_eq!(r.status(), 403);
        let r = app
            .post(
                token,
                &format!("/v1/conversations/{conv}/agent-messages"),
                json!({"content": "x"}),
            )
            .await;
        assert_eq!(r.status(), 403);
    }
    // Staff do not press the customer's buttons.
    for (path, body) in [("handoff", json!({})), ("rating", json!({"rating": 3}))] {
        let r = app
            .post(&agent, &format!("/v1/conversations/{conv}/{path}"), body)
            .await;
        assert_eq!(r.status(), 403, "{path}");
    }
    // Another tenant's conversation does not exist for us.
    for (method, path) in [
        ("POST", "accept"),
        ("POST", "release"),
        ("GET", "brief"),
        ("POST", "agent-messages"),
    ] {
        let url = format!("/v1/conversations/{other_conv}/{path}");
        let r = if method == "GET" {
            app.get(&agent, &url).await
        } else {
            app.post(&agent, &url, json!({"content": "x"})).await
        };
        assert_eq!(r.status(), 404, "{path}");
    }
    // Bad input: an unknown view, a limit out of range, a transfer to someone who is not staff here.
    let r = app
        .get(&agent, "/v1/desk/conversations?view=everything")
        .await;
    assert_eq!(r.status(), 422);
    let r = app.get(&agent, "/v1/desk/conversations?limit=0").await;
    assert_eq!(r.status(), 422);
    let r = app
        .post(
            &agent,
            &format!("/v1/conversations/{conv}/accept"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post(
            &agent,
            &format!("/v1/conversations/{conv}/transfer"),
            json!({"agent_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(r.status(), 422);
    // A transfer by someone who does not hold it is refused; by the holder it moves.
    let r = app
        .post(
            &other_agent,
            &format!("/v1/conversations/{conv}/transfer"),
            json!({"agent_id": other_id}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = app
        .post(
            &agent,
            &format!("/v1/conversations/{conv}/transfer"),
            json!({"agent_id": other_id, "reason": "needs billing"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let moved: Value = r.json().await.unwrap();
    assert_eq!(moved["assignee_id"], other_id.as_str());
    assert_ne!(moved["assignee_id"], agent_id.as_str());
    // Empty agent messages are refused and store nothing.
    let last = moved["last_seq"].as_i64().unwrap();
    let r = app
        .post(
            &other_agent,
            &format!("/v1/conversations/{conv}/agent-messages"),
            json!({"content": "  "}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let now = app
        .get_json(&other_agent, &format!("/v1/conversations/{conv}"))
        .await;
    assert_eq!(now["last_seq"].as_i64(), Some(last));
}

#[tokio::test]
async fn the_web_apps_are_served_with_safe_headers() {
    let app = spawn_app_with(Backend::Sqlite, "[demo]\nshop = true\n").await;
    let r = app.client.get(app.url("/widget.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(r.text().await.unwrap().contains("customer-sessions"));
    let r = app.client.get(app.url("/console/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(r.text().await.unwrap().contains("/console/console.js"));
    // The demo page signs the chosen shop customer in; names are escaped.
    let r = app
        .client
        .get(app.url("/demo/?customer=C1002&lang=en"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"data-lang="en""#));
    let token = html
        .split(r#"data-identity-token=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let (_, customer) = app.customer_session(Some(&token)).await;
    assert_eq!(customer["external_id"], "C1002");
    let r = app
        .client
        .get(app.url("/demo/?customer=%3Cscript%3E"))
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;"), "the unknown id is escaped");
    assert!(!html.contains("<script>alert"));
    // The widget may be embedded on the shop's own site: the API answers cross-origin preflights.
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/customer-sessions"))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn without_the_demo_there_is_no_demo_page() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/demo/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn outside_business_hours_the_customer_is_told_and_a_ticket_is_opened() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (agent, _) = staff(&app, &admin, "night@acme.test", "agent").await;
    // Agents do not set the hours; bad hours are refused with the reason and change nothing.
    let closed = json!({"business_hours": {"utc_offset": "+08:00", "days": {}}});
    let r = app
        .put(&agent, "/v1/admin/desk-config", closed.clone())
        .await;
    assert_eq!(r.status(), 403);
    let r = app
        .put(
            &admin,
            "/v1/admin/desk-config",
            json!({"business_hours": {"utc_offset": "+08:00", "days": {"mon": "18:00-09:00"}}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(app.get_json(&admin, "/v1/admin/desk-config").await["business_hours"].is_null());
    // A desk that is never open: every hand-off happens "after hours".
    let r = app
        .put(&admin, "/v1/admin/desk-config", closed.clone())
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.get_json(&admin, "/v1/admin/desk-config").await["business_hours"],
        closed["business_hours"]
    );

    // Asked in words: the reply says so honestly and names the ticket.
    let conv = app.new_conversation(&app.api_key, Some("night-1")).await;
    let r = app
        .send(&app.api_key, &conv, "我要转人工客服", None, true)
        .await;
    let v: Value = r.json().await.unwrap();
    let reply = v["reply"]["content"].as_str().unwrap();
    assert!(
        reply.contains("非工作时间") && reply.contains("工单 #1"),
        "{reply}"
    );
    let tickets = app
        .get_json(&admin, &format!("/v1/tickets?conversation_id={conv}"))
        .await;
    assert_eq!(tickets["tickets"][0]["source"], "handoff", "{tickets}");
    assert_eq!(tickets["tickets"][0]["number"], 1);
    // Still in the queue for the morning.
    let c = app
        .get_json(&admin, &format!("/v1/conversations/{conv}"))
        .await;
    assert_eq!(c["handler"], "queued");

    // The widget's button, in English: a system message tells the customer.
    let conv = app.new_conversation(&app.api_key, Some("night-2")).await;
    app.fake.push(Reply::text(&["Hello! How can I help?"]));
    app.send(&app.api_key, &conv, "hello there", None, true)
        .await;
    let r = app
        .post(
            &app.api_key,
            &format!("/v1/conversations/{conv}/handoff"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let messages = app.messages(&app.api_key, &conv, 0).await;
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "system");
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .contains("offline right now")
            && last["content"].as_str().unwrap().contains("ticket #2"),
        "{last}"
    );
}

#[tokio::test]
async fn online_agents_get_queued_conversations_and_silent_ones_lose_them() {
    let app = spawn_app_with(Backend::Postgres, "").await;
    let admin = app.admin_token().await;
    let (ann, ann_id) = staff(&app, &admin, "ann@acme.test", "agent").await;
    let (bob, bob_id) = staff(&app, &admin, "bob@acme.test", "agent").await;
    let (_sue, _) = staff(&app, &admin, "sue@acme.test", "agent").await;
    for (body, ok) in [
        (json!({"assignment": "fastest"}), false),
        (
            json!({"assignment": "least_loaded", "agent_capacity": 0}),
            false,
        ),
        (
            json!({"assignment": "least_loaded", "agent_capacity": 2}),
            true,
        ),
    ] {
        let r = app.put(&admin, "/v1/admin/desk-config", body.clone()).await;
        assert_eq!(r.status().is_success(), ok, "{body}");
    }
    // Ann and Bob have the console open; Sue does not.
    for t in [&ann, &bob] {
        let r = app.post(t, "/v1/desk/heartbeat", json!({})).await;
        assert_eq!(r.status(), 204);
    }
    let agents = app.get_json(&admin, "/v1/desk/agents").await;
    let online: Vec<&str> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["online"] == true)
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(online.len(), 2);
    assert_eq!(app.get(&ann, "/v1/desk/agents").await.status(), 403);

    // Five customers press "talk to a human": least-loaded spreads them, capacity 2 each, the fifth waits.
    let mut convs = Vec::new();
    for i in 0..5 {
        let conv = app
            .new_conversation(&app.api_key, Some(&format!("q-{i}")))
            .await;
        let r = app
            .post(
                &app.api_key,
                &format!("/v1/conversations/{conv}/handoff"),
                json!({}),
            )
            .await;
        assert_eq!(r.status(), 200);
        convs.push(conv);
    }
    let held = |id: &str| {
        let id = id.to_owned();
        let app = &app;
        let admin = admin.clone();
        async move {
            let list = app.get_json(&admin, "/v1/desk/agents").await;
            list["agents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["id"] == id.as_str())
                .unwrap()["held"]
                .as_i64()
                .unwrap()
        }
    };
    assert_eq!((held(&ann_id).await, held(&bob_id).await), (2, 2));
    let queue = desk(&app, &admin, "queue").await;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0]["conversation"]["id"], convs[4].as_str());

    // A minute from now, with no heartbeat since, both consoles look closed: the sweep puts their four
    // conversations back in the queue (Sue, who never opened the console, was never given any).
    let later = kefu_store::now_ms() + chrono::Duration::seconds(61);
    let (requeued, assigned) = app.engine.desk_sweep(later).await.unwrap();
    assert_eq!((requeued, assigned), (4, 0));
    assert_eq!((held(&ann_id).await, held(&bob_id).await), (0, 0));
    assert_eq!(desk(&app, &admin, "queue").await.len(), 5);
    let c = app
        .get_json(&admin, &format!("/v1/conversations/{}", convs[0]))
        .await;
    assert_eq!(
        (c["handler"].as_str(), c["assignee_id"].as_str()),
        (Some("queued"), None)
    );
    // Back in the present both are online again: the sweep hands out four, longest-waiting first.
    let (_, assigned) = app.engine.desk_sweep(kefu_store::now_ms()).await.unwrap();
    assert_eq!(assigned, 4);
    assert_eq!((held(&ann_id).await, held(&bob_id).await), (2, 2));
    assert_eq!(desk(&app, &admin, "queue").await.len(), 1);
}

#[tokio::test]
async fn the_tenants_own_hand_off_rules_topics_and_vip_tiers() {
    let app = spawn_app_with(Backend::Sqlite, "[demo]\nshop = true\n").await;
    let admin = app.admin_token().await;
    let r = app
        .put(
            &admin,
            "/v1/admin/desk-config",
            json!({"handoff": {"keywords": ["律师", "Chargeback"], "vip_tiers": ["platinum"]}}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let handler = |conv: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.get_json(&admin, &format!("/v1/conversations/{conv}"))
                .await["handler"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // A listed word, in any case, goes to people without a model call.
    let before = app.fake.request_count();
    for (who, text) in [
        ("C1002", "我要找律师处理这件事"),
        ("C1001", "I will file a CHARGEBACK"),
    ] {
        let conv = app.new_conversation(&app.api_key, Some(who)).await;
        app.send(&app.api_key, &conv, text, None, true).await;
        assert_eq!(handler(conv.clone()).await, "queued", "{text}");
        let turns = app.turns(&admin, &conv).await;
        assert_eq!(turns[0]["trace"]["reason"], "human_topic");
    }
    assert_eq!(app.fake.request_count(), before);
    // An upset platinum customer (C1003) goes to people at once; a regular one (C1002) gets the assistant.
    let vip = app.new_conversation(&app.api_key, Some("C1003")).await;
    app.send(
        &app.api_key,
        &vip,
        "太差了！我非常生气，东西坏了",
        None,
        true,
    )
    .await;
    assert_eq!(handler(vip).await, "queued");
    app.fake.push(Reply::text(&["非常抱歉给您带来不便。"]));
    let regular = app.new_conversation(&app.api_key, Some("C1002")).await;
    app.send(
        &app.api_key,
        &regular,
        "太差了！我非常生气，东西坏了",
        None,
        true,
    )
    .await;
    assert_eq!(handler(regular).await, "bot");
}

/// The role matrix of the desk, ticket and console endpoints: who gets in (any status but 401/403) and who gets
/// `403 forbidden`.
#[tokio::test]
async fn every_console_endpoint_by_role() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (agent, agent_id) = staff(&app, &admin, "a@acme.test", "agent").await;
    let (supervisor, _) = staff(&app, &admin, "s@acme.test", "supervisor").await;
    let (customer, _) = app.customer_session(None).await;
    let conv = app.new_conversation(&customer, None).await;
    let ticket: Value = app
        .post(
            &admin,
            "/v1/tickets",
            json!({"subject": "s", "conversation_id": conv}),
        )
        .await
        .json()
        .await
        .unwrap();
    let tid = ticket["id"].as_str().unwrap().to_owned();
    // (method, path, body, [agent, supervisor, admin, customer, api client])
    let c = |p: &str| format!("/v1/conversations/{conv}/{p}");
    let cases: Vec<(&str, String, Value, [bool; 5])> = vec![
        (
            "GET",
            "/v1/desk/conversations".into(),
            json!(null),
            [true, true, true, false, false],
        ),
        (
            "GET",
            "/v1/desk/conversations?view=held".into(),
            json!(null),
            [false, true, true, false, false],
        ),
        (
            "GET",
            "/v1/desk/agents".into(),
            json!(null),
            [false, true, true, false, false],
        ),
        (
            "POST",
            "/v1/desk/heartbeat".into(),
            json!({}),
            [true, true, true, false, false],
        ),
        (
            "GET",
            c("brief"),
            json!(null),
            [true, true, true, false, false],
        ),
        (
            "GET",
            c("turns"),
            json!(null),
            [true, true, true, false, false],
        ),
        (
            "GET",
            "/v1/admin/desk-config".into(),
            json!(null),
            [false, true, true, false, false],
        ),
        (
            "PUT",
            "/v1/admin/desk-config".into(),
            json!({}),
            [false, true, true, false, false],
        ),
        (
            "GET",
            "/v1/admin/cache-stats".into(),
            json!(null),
            [false, true, true, false, false],
        ),
        (
            "GET",
            "/v1/admin/users".into(),
            json!(null),
            [false, false, true, false, false],
        ),
        (
            "GET",
            "/v1/tickets".into(),
            json!(null),
            [true, true, true, true, true],
        ),
        (
            "GET",
            format!("/v1/tickets/{tid}"),
            json!(null),
            [true, true, true, true, true],
        ),
        (
            "POST",
            "/v1/tickets".into(),
            json!({"subject": "x"}),
            [true, true, true, false, false],
        ),
        (
            "PATCH",
            format!("/v1/tickets/{tid}"),
            json!({"priority": "low"}),
            [true, true, true, false, false],
        ),
        (
            "POST",
            format!("/v1/tickets/{tid}/notes"),
            json!({"body": "n"}),
            [true, true, true, false, false],
        ),
        (
            "POST",
            c("rating"),
            json!({"rating": 4}),
            [false, false, false, true, true],
        ),
        (
            "POST",
            c("handoff"),
            json!({}),
            [false, false, false, true, true],
        ),
        (
            "POST",
            c("accept"),
            json!({}),
            [true, true, true, false, false],
        ),
        (
            "POST",
            c("agent-messages"),
            json!({"content": "hi"}),
            [true, true, true, false, false],
        ),
        (
            "POST",
            c("release"),
            json!({}),
            [true, true, true, false, false],
        ),
        (
            "POST",
            c("transfer"),
            json!({"team": ""}),
            [true, true, true, false, false],
        ),
        (
            "GET",
            "/v1/desk/teams".into(),
            json!(null),
            [true, true, true, false, false],
        ),
        (
            "PATCH",
            format!("/v1/admin/users/{agent_id}"),
            json!({"teams": []}),
            [false, false, true, false, false],
        ),
        (
            "GET",
            "/v1/admin/moderation".into(),
            json!(null),
            [false, true, true, false, false],
        ),
        (
            "PUT",
            "/v1/admin/moderation".into(),
            json!({"words": ""}),
            [false, true, true, false, false],
        ),
        (
            "POST",
            "/v1/admin/moderation/check".into(),
            json!({"text": "x"}),
            [false, true, true, false, false],
        ),
        (
            "GET",
            "/v1/admin/model-config".into(),
            json!(null),
            [false, false, true, false, false],
        ),
        (
            "GET",
            "/v1/admin/intent-models".into(),
            json!(null),
            [false, true, true, false, false],
        ),
        (
            "POST",
            "/v1/admin/intent-models".into(),
            json!({"examples": []}),
            [false, true, true, false, false],
        ),
        (
            "GET",
            "/v1/admin/intent-models/1".into(),
            json!(null),
            [false, true, true, false, false],
        ),
        (
            "DELETE",
            "/v1/admin/intent-models/1".into(),
            json!(null),
            [false, true, true, false, false],
        ),
        (
            "PUT",
            "/v1/admin/intent-models/current".into(),
            json!({"version": null}),
            [false, true, true, false, false],
        ),
        (
            "POST",
            "/v1/admin/intent-models/predict".into(),
            json!({"texts": ["x"]}),
            [false, true, true, false, false],
        ),
    ];
    let tokens = [&agent, &supervisor, &admin, &customer, &app.api_key];
    let names = ["agent", "supervisor", "admin", "customer", "api client"];
    for (method, path, body, allowed) in &cases {
        for (i, token) in tokens.iter().enumerate() {
            let mut rb = app
                .client
                .request(method.parse().unwrap(), app.url(path))
                .bearer_auth(token);
            if !body.is_null() {
                rb = rb.json(body);
            }
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            if allowed[i] {
                assert!(
                    status != 401 && status != 403,
                    "{} {method} {path}: {status}",
                    names[i]
                );
            } else {
                assert_eq!(status, 403, "{} {method} {path}", names[i]);
            }
        }
        // Nobody gets in without a token.
        let r = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "anonymous {method} {path}");
    }
}

#[tokio::test]
async fn typing_and_read_signals_reach_the_other_side_live() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (agent, _) = staff(&app, &admin, "tina@acme.test", "agent").await;
    let (other, _) = staff(&app, &admin, "otis@acme.test", "agent").await;
    let (customer, _) = app.customer_session(None).await;
    let conv = app.new_conversation(&customer, None).await;
    let r = app
        .post(
            &customer,
            &format!("/v1/conversations/{conv}/handoff"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Only the agent holding it signals to the customer.
    let typing = format!("/v1/conversations/{conv}/typing");
    let r = app.post(&agent, &typing, json!({"typing": true})).await;
    assert_eq!(r.status(), 409);
    app.post(
        &agent,
        &format!("/v1/conversations/{conv}/accept"),
        json!({}),
    )
    .await;
    let last = app
        .get_json(&customer, &format!("/v1/conversations/{conv}"))
        .await["last_seq"]
        .as_i64()
        .unwrap();
    let mut customer_events = app.sse(&customer, &conv, last, None).await;
    let mut agent_events = app.sse(&agent, &conv, last, None).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let r = app.post(&agent, &typing, json!({"typing": true})).await;
    assert_eq!(r.status(), 204);
    match next_event(&mut customer_events).await {
        StreamEvent::Typing { role, typing } => {
            assert_eq!((role, typing), (kefu_types::MessageRole::Agent, true))
        }
        e => panic!("unexpected {e:?}"),
    }
    assert_eq!(
        app.post(&other, &typing, json!({"typing": true}))
            .await
            .status(),
        409
    );

    // The customer read up to the last message; a seq beyond it is refused.
    let read = format!("/v1/conversations/{conv}/read");
    assert_eq!(
        app.post(&customer, &read, json!({"seq": last + 5}))
            .await
            .status(),
        422
    );
    assert_eq!(
        app.post(&customer, &read, json!({"seq": last}))
            .await
            .status(),
        204
    );
    // The agent's stream shows its own typing first (every subscriber sees every signal), then the read.
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(next_event(&mut agent_events).await);
    }
    assert!(
        seen.iter().any(|e| matches!(e,
        StreamEvent::Read { role: kefu_types::MessageRole::Customer, seq } if *seq == last)),
        "{seen:?}"
    );
    // Signals are not stored: a fresh subscription replays nothing.
    let after = app
        .get_json(&customer, &format!("/v1/conversations/{conv}"))
        .await["last_seq"]
        .as_i64()
        .unwrap();
    assert_eq!(after, last);
}

#[tokio::test]
async fn a_customer_lists_only_their_own_conversations_to_resume_one() {
    let app = spawn_app().await;
    let (mine, _) = app.customer_session(None).await;
    let (theirs, _) = app.customer_session(None).await;
    let a = app.new_conversation(&mine, None).await;
    let b = app.new_conversation(&mine, None).await;
    app.new_conversation(&theirs, None).await;
    app.post(&mine, &format!("/v1/conversations/{a}/close"), json!({}))
        .await;
    let open = app.get_json(&mine, "/v1/conversations?status=open").await;
    let ids: Vec<&str> = open["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b.as_str()]);
    let all = app.get_json(&mine, "/v1/conversations").await;
    assert_eq!(all["conversations"].as_array().unwrap().len(), 2);
    let staff_view = app
        .get_json(&app.admin_token().await, "/v1/conversations")
        .await;
    assert_eq!(staff_view["conversations"].as_array().unwrap().len(), 3);
    assert_eq!(
        app.get(&mine, "/v1/conversations?limit=0").await.status(),
        422
    );
    assert_eq!(
        app.get(&mine, "/v1/conversations?status=gone")
            .await
            .status(),
        422
    );
}

#[tokio::test]
async fn images_are_checked_stored_and_shown_only_to_the_conversation() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (agent, _) = staff(&app, &admin, "ivy@acme.test", "agent").await;
    let (customer, _) = app.customer_session(None).await;
    let (stranger, _) = app.customer_session(None).await;
    let conv = app.new_conversation(&customer, None).await;
    let png: Vec<u8> = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]
        .into_iter()
        .chain((0..2000).map(|i| (i % 251) as u8))
        .collect();
    let upload = |token: &str, ct: &str, body: Vec<u8>| {
        app.client
            .post(app.url(&format!("/v1/conversations/{conv}/attachments")))
            .bearer_auth(token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let before = app.fake.request_count();
    let r = upload(&customer, "image/png", png.clone()).await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["role"], "customer");
    let content = m["content"].as_str().unwrap();
    let id = content
        .strip_prefix("[image:")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap()
        .to_owned();
    // The customer and staff see it; another customer does not.
    for token in [&customer, &admin] {
        let r = app.get(token, &format!("/v1/attachments/{id}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/png");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.bytes().await.unwrap().to_vec(), png);
    }
    assert_eq!(
        app.get(&stranger, &format!("/v1/attachments/{id}"))
            .await
            .status(),
        404
    );
    // Wrong types, lies about the type, empty and huge bodies are refused, and nothing is added.
    let last = app
        .get_json(&customer, &format!("/v1/conversations/{conv}"))
        .await["last_seq"]
        .clone();
    let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
    for (ct, body, status) in [
        ("image/png", jpeg.clone(), 422),
        ("text/html", b"<script>alert(1)</script>".to_vec(), 422),
        ("image/svg+xml", b"<svg onload=alert(1)>".to_vec(), 422),
        ("image/png", Vec::new(), 422),
        ("image/png", vec![0x89; 6 * 1024 * 1024], 413),
    ] {
        let r = upload(&customer, ct, body).await.unwrap();
        assert_eq!(r.status(), status, "{ct}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let r = upload(&customer, "image/jpeg", jpeg).await.unwrap();
    assert_eq!(r.status(), 201);
    let now = app
        .get_json(&customer, &format!("/v1/conversations/{conv}"))
        .await["last_seq"]
        .clone();
    assert_eq!(now.as_i64(), last.as_i64().map(|l| l + 1));
    // An agent must hold the conversation to send one; images never reach the model.
    assert_eq!(
        upload(&agent, "image/png", png.clone())
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(app.fake.request_count(), before);
}

/// Creates a staff member in some teams and signs in; returns (token, user id).
async fn member(app: &TestApp, admin: &str, email: &str, teams: &[&str]) -> (String, String) {
    let r = app
        .post(
            admin,
            "/v1/admin/users",
            json!({"email": email, "password": "a-long-password-1", "role": "agent", "teams": teams}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (app.login(email, "a-long-password-1").await, id)
}

#[tokio::test]
async fn hand_offs_are_routed_to_teams_and_given_to_their_members_first() {
    let app = spawn_app_with(Backend::Sqlite, "").await;
    let admin = app.admin_token().await;
    // Bad team lists change nothing.
    for bad in [
        json!({"teams": [{"name": "售后"}, {"name": "售后"}]}),
        json!({"teams": [{"name": ""}]}),
        json!({"teams": [{"name": " padded "}]}),
        json!({"teams": [{"name": "x", "colour": "red"}]}),
    ] {
        let r = app.put(&admin, "/v1/admin/desk-config", bad.clone()).await;
        assert_eq!(r.status(), 422, "{bad}");
    }
    assert_eq!(
        app.get_json(&admin, "/v1/admin/desk-config").await["teams"],
        json!([])
    );
    let cfg = json!({
        "assignment": "least_loaded",
        "agent_capacity": 1,
        "handoff": {"keywords": ["退货", "refund"]},
        "teams": [
            {"name": "售后", "keywords": ["退货", "refund"]},
            {"name": "english", "languages": ["en"]},
        ],
    });
    let r = app.put(&admin, "/v1/admin/desk-config", cfg).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Staff teams must be the desk's.
    let r = app
        .post(
            &admin,
            "/v1/admin/users",
            json!({"email": "x@acme.test", "password": "a-long-password-1", "role": "agent", "teams": ["vip"]}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let (ann, ann_id) = member(&app, &admin, "ann@acme.test", &["售后"]).await;
    let (bob, bob_id) = member(&app, &admin, "bob@acme.test", &[]).await;
    let (sue, _) = staff(&app, &admin, "sue@acme.test", "supervisor").await;
    let teams = app.get_json(&ann, "/v1/desk/teams").await;
    assert_eq!(
        teams,
        json!({"teams": ["售后", "english"], "mine": ["售后"]})
    );
    for t in [&ann, &bob] {
        assert_eq!(
            app.post(t, "/v1/desk/heartbeat", json!({})).await.status(),
            204
        );
    }
    let conv_of = |conv: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.get_json(&admin, &format!("/v1/conversations/{conv}"))
                .await
        }
    };

    // A return in Chinese goes to 售后 (the assistant's own hand-off: a listed word, no model call) and to Ann,
    // its member, although Bob holds fewer.
    let before = app.fake.request_count();
    let ret = app.new_conversation(&app.api_key, Some("r-1")).await;
    app.send(&app.api_key, &ret, "我要退货，耳机坏了", None, true)
        .await;
    let c = conv_of(ret.clone()).await;
    assert_eq!(
        (c["team"].as_str(), c["assignee_id"].as_str()),
        (Some("售后"), Some(ann_id.as_str()))
    );
    assert_eq!(app.fake.request_count(), before);
    // An English customer's "talk to a human": team english has no members, so anyone free: Bob.
    app.fake.push(Reply::text(&["Hello, how can I help?"]));
    let en = app.new_conversation(&app.api_key, Some("e-1")).await;
    app.send(&app.api_key, &en, "Hello, my parcel is late", None, true)
        .await;
    let r = app
        .post(
            &app.api_key,
            &format!("/v1/conversations/{en}/handoff"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let c = conv_of(en.clone()).await;
    assert_eq!(
        (c["team"].as_str(), c["assignee_id"].as_str()),
        (Some("english"), Some(bob_id.as_str()))
    );
    // Both full (capacity 1): the next return waits in 售后's queue.
    let waiting = app.new_conversation(&app.api_key, Some("r-2")).await;
    app.send(&app.api_key, &waiting, "I want a REFUND", None, true)
        .await;
    let c = conv_of(waiting.clone()).await;
    assert_eq!(
        (c["handler"].as_str(), c["team"].as_str()),
        (Some("queued"), Some("售后"))
    );
    let ids = |rows: Vec<Value>| {
        rows.iter()
            .map(|r| r["conversation"]["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(desk(&app, &ann, "queue&team=售后").await),
        vec![waiting.clone()]
    );
    assert_eq!(
        ids(desk(&app, &ann, "queue&team=mine").await),
        vec![waiting.clone()]
    );
    assert!(desk(&app, &ann, "queue&team=general").await.is_empty());
    assert!(desk(&app, &ann, "queue&team=english").await.is_empty());
    // A generalist's "mine" is every queue.
    assert_eq!(
        ids(desk(&app, &bob, "queue&team=mine").await),
        vec![waiting.clone()]
    );

    // Transfers to a team: exactly one target, a known team, only by the holder (or a supervisor).
    let transfer = |token: String, conv: String, body: Value| {
        let app = &app;
        async move {
            app.post(&token, &format!("/v1/conversations/{conv}/transfer"), body)
                .await
        }
    };
    let r = transfer(ann.clone(), ret.clone(), json!({"team": "vip"})).await;
    assert_eq!(r.status(), 422);
    let r = transfer(
        ann.clone(),
        ret.clone(),
        json!({"team": "english", "agent_id": bob_id}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = transfer(bob.clone(), ret.clone(), json!({"team": "english"})).await;
    assert_error(&r.json().await.unwrap(), "not_assigned");
    let r = transfer(bob.clone(), waiting.clone(), json!({"team": "english"})).await;
    assert_eq!(r.status(), 403, "an agent does not re-route the queue");
    let r = transfer(ann.clone(), ret.clone(), json!({"team": "english"})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let c: Value = r.json().await.unwrap();
    assert_eq!(
        (
            c["handler"].as_str(),
            c["team"].as_str(),
            c["assignee_id"].as_str()
        ),
        (Some("queued"), Some("english"), None)
    );
    // A supervisor re-routes a queued one to the general queue.
    let r = transfer(sue.clone(), waiting.clone(), json!({"team": ""})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(r.json::<Value>().await.unwrap()["team"], Value::Null);
    assert_eq!(
        ids(desk(&app, &ann, "queue&team=general").await),
        vec![waiting.clone()]
    );

    // Ann now holds nothing. The sweep, longest-waiting first: the general one to her; then english's (no
    // members, so anyone) finds everyone full and waits.
    let (_, assigned) = app.engine.desk_sweep(kefu_store::now_ms()).await.unwrap();
    assert_eq!(assigned, 1);
    assert_eq!(
        conv_of(waiting.clone()).await["assignee_id"],
        ann_id.as_str()
    );
    assert_eq!(ids(desk(&app, &sue, "queue").await), vec![ret.clone()]);
    let agents = app.get_json(&sue, "/v1/desk/agents").await;
    let ann_row = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == ann_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(ann_row["teams"], json!(["售后"]));

    // An admin changes Ann's teams; unknown teams are refused and change nothing.
    let r = app
        .client
        .patch(app.url(&format!("/v1/admin/users/{ann_id}")))
        .bearer_auth(&admin)
        .json(&json!({"teams": ["nope"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .client
        .patch(app.url(&format!("/v1/admin/users/{ann_id}")))
        .bearer_auth(&admin)
        .json(&json!({"teams": ["english", "售后", "english"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["teams"],
        json!(["english", "售后"])
    );
    let r = app
        .client
        .patch(app.url(&format!("/v1/admin/users/{}", uuid::Uuid::now_v7())))
        .bearer_auth(&admin)
        .json(&json!({"teams": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_tenants_sensitive_words_apply_at_once_and_bad_lists_change_nothing() {
    let app = spawn_app_with(Backend::Sqlite, "").await;
    let admin = app.admin_token().await;
    let (sue, _) = staff(&app, &admin, "sue@acme.test", "supervisor").await;
    let empty = app.get_json(&sue, "/v1/admin/moderation").await;
    assert_eq!(
        (empty["entries"].as_u64(), empty["words"].as_str()),
        (Some(0), Some(""))
    );
    for (bad, names) in [
        (json!({"words": "fine\n***\n"}), "***"),
        (json!({"words": "word,cat,delete\n"}), "delete"),
        (
            json!({"words": "word\n", "default_action": "ban"}),
            "default_action",
        ),
    ] {
        let r = app.put(&sue, "/v1/admin/moderation", bad.clone()).await;
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_error(&body, "invalid_request");
        assert!(body.to_string().contains(names), "{body}");
    }
    assert_eq!(
        app.get_json(&sue, "/v1/admin/moderation").await["entries"],
        0
    );

    let r = app
        .put(
            &sue,
            "/v1/admin/moderation",
            json!({"words": "# 我们的词表\n竞品A\tcompetitor\tblock\n垃圾店\n", "default_action": "mask"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let set: Value = r.json().await.unwrap();
    assert_eq!(set["entries"], 2);
    assert_eq!(set["categories"], json!({"competitor": 1, "custom": 1}));
    assert_eq!(set["default_action"], "mask");

    // Try a text: full-width letters and symbols in between still match.
    let r = app
        .post(
            &sue,
            "/v1/admin/moderation/check",
            json!({"text": "你们比竞品Ａ差多了，垃-圾-店"}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["action"], "block");
    let words: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["word"].as_str().unwrap())
        .collect();
    assert_eq!(words, vec!["竞品A", "垃圾店"]);

    // A customer naming the blocked word reaches no model; the masked word in a model's reply never reaches the
    // customer.
    let before = app.fake.request_count();
    let conv = app.new_conversation(&app.api_key, Some("w-1")).await;
    app.send(&app.api_key, &conv, "竞品A比你们便宜", None, true)
        .await;
    assert_eq!(app.fake.request_count(), before);
    let turns = app.turns(&sue, &conv).await;
    assert_eq!(turns[0]["trace"]["path"], "blocked");
    app.fake
        .push(Reply::text(&["这家垃圾", "店的东西不行，我们的更好"]));
    let other = app.new_conversation(&app.api_key, Some("w-2")).await;
    app.send(&app.api_key, &other, "你们的耳机怎么样", None, true)
        .await;
    let msgs = app.messages(&app.api_key, &other, 0).await;
    let reply = msgs.last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(
        !reply.contains("垃圾店") && reply.contains("***"),
        "{reply}"
    );

    // Another tenant's customers are not affected.
    let (slug, key) = app.other_tenant().await;
    let _ = slug;
    let before = app.fake.request_count();
    app.fake.push(Reply::text(&["好的"]));
    let theirs = app.new_conversation(&key, Some("w-3")).await;
    app.send(&key, &theirs, "竞品A比你们便宜", None, true).await;
    assert_eq!(app.fake.request_count(), before + 1);
}
