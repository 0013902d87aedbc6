//! Tickets through the real application: created by an agent for a conversation, the status workflow, the SLA
//! clock paused while pending, internal notes versus replies, what the customer sees, and who may do what.

use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app_with, Backend, TestApp};

async fn patch(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.client
        .patch(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_agent_works_a_ticket_and_the_customer_sees_only_what_is_theirs() {
    let app = spawn_app_with(Backend::Postgres, "").await;
    let admin = app.admin_token().await;
    let (customer, _) = app.customer_session(None).await;
    let conv = app.new_conversation(&customer, None).await;

    let r = app
        .post(
            &admin,
            "/v1/tickets",
            json!({"subject": "退款未到账 <script>", "description": "寄回一周", "priority": "high",
                   "department": "after-sales", "conversation_id": conv}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let t: Value = r.json().await.unwrap();
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["number"], 1);
    assert_eq!(t["status"], "open");
    assert_eq!(t["subject"], "退款未到账 <script>");
    let due0 = t["sla"]["first_response_due_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t["sla"]["first_response_breached"], false);

    // Pending pauses the SLA clock; back to open, the due time has moved by the paused time.
    let r = patch(
        &app,
        &admin,
        &format!("/v1/tickets/{id}"),
        json!({"status": "pending"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let paused: Value = r.json().await.unwrap();
    assert_eq!(paused["sla"]["paused"], true);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = patch(
        &app,
        &admin,
        &format!("/v1/tickets/{id}"),
        json!({"status": "open"}),
    )
    .await;
    let open: Value = r.json().await.unwrap();
    assert_eq!(open["sla"]["paused"], false);
    let paused_ms = open["sla"]["paused_ms"].as_i64().unwrap();
    assert!(paused_ms >= 300, "{open}");
    let due1 = open["sla"]["first_response_due_at"].as_str().unwrap();
    let shift = chrono::DateTime::parse_from_rfc3339(due1).unwrap()
        - chrono::DateTime::parse_from_rfc3339(&due0).unwrap();
    assert_eq!(shift.num_milliseconds(), paused_ms);

    // An internal note and a reply; the reply is the first response.
    for (body, internal) in [
        ("客户是白金会员，优先", true),
        ("您好，退款已提交财务处理。", false),
    ] {
        let r = app
            .post(
                &admin,
                &format!("/v1/tickets/{id}/notes"),
                json!({"body": body, "internal": internal}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let detail = app.get_json(&admin, &format!("/v1/tickets/{id}")).await;
    assert_eq!(detail["notes"].as_array().unwrap().len(), 2);
    assert!(detail["ticket"]["first_responded_at"].is_string());

    // The workflow: closed only after resolved, and closed is final.
    let r = patch(
        &app,
        &admin,
        &format!("/v1/tickets/{id}"),
        json!({"status": "closed"}),
    )
    .await;
    assert_eq!(r.status(), 409);
    assert_error(&r.json::<Value>().await.unwrap(), "conflict");
    for s in ["resolved", "closed"] {
        let r = patch(
            &app,
            &admin,
            &format!("/v1/tickets/{id}"),
            json!({"status": s}),
        )
        .await;
        assert_eq!(r.status(), 200, "{s}");
    }
    let r = patch(
        &app,
        &admin,
        &format!("/v1/tickets/{id}"),
        json!({"status": "open"}),
    )
    .await;
    assert_eq!(r.status(), 409);

    // The customer sees the ticket and the reply; not the internal note, the assignee or the SLA.
    let mine = app.get_json(&customer, "/v1/tickets").await;
    assert_eq!(mine["tickets"].as_array().unwrap().len(), 1);
    let seen = app.get_json(&customer, &format!("/v1/tickets/{id}")).await;
    assert_eq!(seen["ticket"]["status"], "closed");
    assert!(seen["ticket"]["sla"].is_null());
    assert_eq!(seen["ticket"]["description"], "");
    let notes = seen["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["body"], "您好，退款已提交财务处理。");
    // Another customer does not see it at all.
    let (stranger, _) = app.customer_session(None).await;
    assert_eq!(
        app.get(&stranger, &format!("/v1/tickets/{id}"))
            .await
            .status(),
        404
    );
    assert!(app.get_json(&stranger, "/v1/tickets").await["tickets"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn ticket_endpoints_check_role_tenant_and_input() {
    let app = spawn_app_with(Backend::Sqlite, "").await;
    let admin = app.admin_token().await;
    let (customer, _) = app.customer_session(None).await;
    let t: Value = app
        .post(&admin, "/v1/tickets", json!({"subject": "x"}))
        .await
        .json()
        .await
        .unwrap();
    let id = t["id"].as_str().unwrap().to_owned();
    // Customers and API clients do not work tickets.
    for token in [&customer, &app.api_key] {
        assert_eq!(
            app.post(token, "/v1/tickets", json!({"subject": "y"}))
                .await
                .status(),
            403
        );
        assert_eq!(
            patch(
                &app,
                token,
                &format!("/v1/tickets/{id}"),
                json!({"status": "pending"})
            )
            .await
            .status(),
            403
        );
        let r = app
            .post(
                token,
                &format!("/v1/tickets/{id}/notes"),
                json!({"body": "hi"}),
            )
            .await;
        assert_eq!(r.status(), 403);
    }
    // Another tenant's staff: not found.
    let (other, _) = app.other_tenant().await;
    let other_admin = app.other_admin(&other).await;
    assert_eq!(
        app.get(&other_admin, &format!("/v1/tickets/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        patch(
            &app,
            &other_admin,
            &format!("/v1/tickets/{id}"),
            json!({"status": "pending"})
        )
        .await
        .status(),
        404
    );
    // Bad input changes nothing.
    for body in [
        json!({"subject": "  "}),
        json!({"subject": "a".repeat(201)}),
        json!({"subject": "x", "priority": "asap"}),
        json!({"subject": "x", "assignee_id": uuid::Uuid::new_v4()}),
        json!({"subject": "x", "conversation_id": uuid::Uuid::new_v4()}),
        json!({"subject": "x", "unknown": 1}),
    ] {
        let r = app.post(&admin, "/v1/tickets", body.clone()).await;
        assert!(
            matches!(r.status().as_u16(), 400 | 404 | 422),
            "{body}: {}",
            r.status()
        );
    }
    let r = patch(
        &app,
        &admin,
        &format!("/v1/tickets/{id}"),
        json!({"status": "done"}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = app
        .post(
            &admin,
            &format!("/v1/tickets/{id}/notes"),
            json!({"body": ""}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let list = app.get_json(&admin, "/v1/tickets").await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1);
    let detail = app.get_json(&admin, &format!("/v1/tickets/{id}")).await;
    assert_eq!(detail["ticket"]["version"], Value::Null);
    assert_eq!(detail["ticket"]["status"], "open");
    assert!(detail["notes"].as_array().unwrap().is_empty());
}
