//! The demo shop through the real application: order status and logistics through declarative tools (arguments
//! from rules, from the model, or the fallback tool), the customer's profile and tier in the prompt, a return flow
//! in Chinese and in English that ends in a return ticket in the shop, corrections, cancel, an aside in the middle
//! of a flow, and customers who are not signed in or ask about someone else's order.

use serde_json::Value;

use kefu_testkit::fake_llm::Reply;

use crate::helpers::{spawn_app_with, Backend, TestApp};

const SHOP: &str = "[demo]\nshop = true\n";

async fn ask(app: &TestApp, conv: &str, text: &str) -> (String, Value) {
    let r = app.send(&app.api_key, conv, text, None, true).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    let reply = v["reply"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let admin = app.admin_token().await;
    let turns: Vec<Value> = app
        .get(&admin, &format!("/v1/conversations/{conv}/turns"))
        .await
        .json()
        .await
        .unwrap();
    let last = turns.last().cloned().unwrap_or_default();
    (reply, last["trace"].clone())
}

fn system_prompt(app: &TestApp, i: usize) -> String {
    app.fake.requests()[i]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn shop_returns(app: &TestApp) -> Vec<Value> {
    let text = std::fs::read_to_string(app.data_dir.join("demo-shop.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["returns"].as_array().unwrap().clone()
}

#[tokio::test]
async fn order_status_through_tools_with_the_profile_in_the_prompt() {
    let app = spawn_app_with(Backend::Sqlite, SHOP).await;
    // The first start with the demo on brings the demo knowledge base.
    let admin = app.admin_token().await;
    let docs: Value = app.get_json(&admin, "/v1/admin/kb/documents").await;
    assert_eq!(docs.as_array().map(Vec::len), Some(3), "{docs}");
    let conv = app.new_conversation(&app.api_key, Some("C1001")).await;

    // The order number is in the message: rules fill the argument, the shop answers, the model phrases it.
    app.fake.push(Reply::text(&[
        "您的订单 KF20261108 已到达杭州转运中心，预计 2026-11-24 送达[1]。",
    ]));
    let (reply, trace) = ask(&app, &conv, "KF20261108 的快递到哪了？").await;
    assert!(reply.contains("2026-11-24"), "{reply}");
    assert_eq!(trace["path"], "tool", "{trace}");
    assert_eq!(trace["grounded"], true, "{trace}");
    let tools = trace["tools"].as_array().unwrap();
    assert_eq!(tools[0]["name"], "get_order");
    assert_eq!(tools[0]["arguments_from"], "rules");
    assert_eq!(tools[0]["ok"], true);
    assert_eq!(tools[1]["name"], "get_profile");
    let system = system_prompt(&app, 0);
    assert!(
        system.contains("ZT7788120431"),
        "the tool result is a passage: {system}"
    );
    assert!(
        system.contains("\"tier\":\"gold\"") && system.contains("金卡会员"),
        "{system}"
    );

    // No order number anywhere: the model fills the argument with a tool call, which is validated.
    let conv2 = app.new_conversation(&app.api_key, Some("C1001")).await;
    app.fake.push(Reply::ToolCall {
        name: "get_order".into(),
        arguments: r#"{"order_id":"KF20261108"}"#.into(),
    });
    app.fake
        .push(Reply::text(&["充电器的包裹正在运输中，已到杭州[1]。"]));
    let (_, trace) = ask(&app, &conv2, "我上周买的充电器物流到哪了").await;
    assert_eq!(trace["tools"][0]["arguments_from"], "model", "{trace}");
    assert_eq!(trace["tools"][0]["arguments"]["order_id"], "KF20261108");
    let call = &app.fake.requests()[1];
    assert_eq!(call["tools"][0]["function"]["name"], "get_order", "{call}");

    // The model's arguments fail validation: the fallback tool (all orders) answers instead.
    let conv3 = app.new_conversation(&app.api_key, Some("C1001")).await;
    app.fake.push(Reply::ToolCall {
        name: "get_order".into(),
        arguments: r#"{"order_id":"12345"}"#.into(),
    });
    app.fake
        .push(Reply::text(&["您最近的订单是 KF20261115，待发货[1]。"]));
    let (_, trace) = ask(&app, &conv3, "我的快递到哪了").await;
    assert_eq!(trace["tools"][0]["name"], "list_orders", "{trace}");
    assert_eq!(trace["tools"][0]["arguments_from"], "fallback");

    // Someone else's order is "not found" for this customer; the model is told so, not shown the order.
    let other = app.new_conversation(&app.api_key, Some("C1002")).await;
    let before = app.fake.request_count();
    app.fake
        .push(Reply::text(&["没有找到这个订单，请核对订单号。"]));
    let (_, trace) = ask(&app, &other, "KF20261101 到哪了").await;
    assert_eq!(trace["tools"][0]["error"], "not_found", "{trace}");
    let system = system_prompt(&app, before);
    assert!(!system.contains("SF1403998271"), "{system}");

    // A customer who is not signed in is asked to sign in; no tool, no model.
    let (anon, _) = app.customer_session(None).await;
    let conv4 = app.new_conversation(&anon, None).await;
    let before = app.fake.request_count();
    let r = app.send(&anon, &conv4, "我的快递到哪了", None, true).await;
    let v: Value = r.json().await.unwrap();
    assert!(
        v["reply"]["content"].as_str().unwrap().contains("登录"),
        "{v}"
    );
    assert_eq!(app.fake.request_count(), before);
}

#[tokio::test]
async fn a_return_flow_in_chinese_ends_in_a_ticket_without_a_model() {
    let app = spawn_app_with(Backend::Sqlite, SHOP).await;
    let conv = app.new_conversation(&app.api_key, Some("C1001")).await;

    let (reply, trace) = ask(&app, &conv, "我要退货").await;
    assert!(
        reply.contains("哪个订单") && reply.contains("KF20261101"),
        "{reply}"
    );
    assert_eq!(trace["path"], "flow");
    assert_eq!(trace["flow"]["stage"], "collecting");

    let (reply, _) = ask(&app, &conv, "耳机那个").await;
    assert!(
        reply.contains("哪件商品") && reply.contains("磁吸手机壳"),
        "{reply}"
    );

    // An aside in the middle: answered the usual way, then the flow's question again.
    app.fake.push(Reply::text(&["退款会尽快原路退回。"]));
    let (reply, trace) = ask(&app, &conv, "退款一般多久能到账？").await;
    assert!(
        reply.ends_with("\n1. 无线降噪耳机 Pro\n2. 磁吸手机壳"),
        "{reply}"
    );
    assert_ne!(trace["path"], "flow");
    assert_eq!(trace["flow"]["slots"]["order_id"]["value"], "KF20261101");
    let model_calls = app.fake.request_count();

    let (reply, _) = ask(&app, &conv, "耳机").await;
    assert!(reply.contains("原因"), "{reply}");
    let (reply, _) = ask(&app, &conv, "左耳没有声音").await;
    assert!(reply.contains("照片"), "{reply}");
    let (reply, trace) = ask(&app, &conv, "跳过").await;
    assert!(
        reply.contains("无线降噪耳机 Pro")
            && reply.contains("左耳没有声音")
            && reply.contains("确认"),
        "{reply}"
    );
    assert_eq!(trace["flow"]["stage"], "confirming");
    assert!(
        shop_returns(&app).is_empty(),
        "nothing changes before the customer confirms"
    );

    let (reply, trace) = ask(&app, &conv, "确认").await;
    assert!(reply.contains("RMA100001"), "{reply}");
    assert_eq!(trace["flow"]["stage"], "done");
    let action = trace["tools"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (action["name"].as_str(), action["ok"].as_bool()),
        (Some("create_return"), Some(true))
    );
    let returns = shop_returns(&app);
    assert_eq!(returns.len(), 1);
    assert_eq!(returns[0]["order_id"], "KF20261101");
    assert_eq!(returns[0]["sku"], "AUD-100");
    assert_eq!(returns[0]["reason"], "左耳没有声音");
    // The finished flow opened a ticket for the after-sales team, with the shop's return number.
    let ticket_no = trace["flow"]["ticket"].as_i64().expect("a ticket number");
    let admin = app.admin_token().await;
    let tickets = app
        .get_json(&admin, &format!("/v1/tickets?conversation_id={conv}"))
        .await;
    let t = &tickets["tickets"][0];
    assert_eq!(t["number"].as_i64(), Some(ticket_no), "{tickets}");
    assert_eq!(t["source"], "flow");
    assert_eq!(t["external_ref"], "RMA100001");
    assert_eq!(t["department"], "after-sales");
    assert!(t["subject"].as_str().unwrap().contains("KF20261101"), "{t}");
    assert_eq!(
        app.fake.request_count(),
        model_calls,
        "flow steps are rules, not model calls"
    );

    // Asking for the same return again: the shop refuses and the customer is told why.
    for text in ["我要退货 KF20261101", "无线降噪耳机", "还是有问题", "跳过"] {
        ask(&app, &conv, text).await;
    }
    let (reply, trace) = ask(&app, &conv, "确认").await;
    assert!(
        reply.contains("没有成功") && reply.contains("RMA100001"),
        "{reply}"
    );
    assert_eq!(trace["flow"]["stage"], "failed");
    assert_eq!(shop_returns(&app).len(), 1);

    // Cancel.
    ask(&app, &conv, "我想退货").await;
    let (reply, trace) = ask(&app, &conv, "算了").await;
    assert!(reply.contains("已取消"), "{reply}");
    assert_eq!(trace["flow"]["stage"], "cancelled");
}

#[tokio::test]
async fn a_return_flow_in_english_with_a_correction() {
    let app = spawn_app_with(Backend::Postgres, SHOP).await;
    let conv = app.new_conversation(&app.api_key, Some("C1002")).await;
    let (reply, _) = ask(&app, &conv, "I want to return an item").await;
    assert!(
        reply.contains("Which order") && reply.contains("KF20261103"),
        "{reply}"
    );
    let (reply, _) = ask(&app, &conv, "the running shoes order").await;
    assert!(
        reply.contains("Which item") && reply.contains("Quick-dry Sports Socks"),
        "{reply}"
    );
    let (reply, _) = ask(&app, &conv, "the shoes").await;
    assert!(reply.contains("reason"), "{reply}");
    ask(&app, &conv, "They are too small").await;
    let (reply, _) = ask(&app, &conv, "skip").await;
    assert!(reply.contains("Lightweight Running Shoes"), "{reply}");
    // "No, the other item": with two items, the other one; the reason stays.
    let (reply, trace) = ask(&app, &conv, "no, the other item").await;
    assert!(
        reply.contains("Quick-dry Sports Socks") && reply.contains("too small"),
        "{reply} {trace}"
    );
    let (reply, _) = ask(&app, &conv, "confirm").await;
    assert!(reply.contains("RMA100001"), "{reply}");
    let returns = shop_returns(&app);
    assert_eq!(returns[0]["sku"], "SPT-310");
    assert_eq!(app.fake.request_count(), 0);
}

/// Where the business serves tiers differently, a knowledge answer follows the customer's tier strategy and is
/// reused only within that tier: a regular customer asking a gold customer's question gets a fresh answer.
#[tokio::test]
async fn cached_answers_are_scoped_to_the_customers_tier() {
    let app = spawn_app_with(Backend::Sqlite, SHOP).await;
    let q = "Do you ship to other countries?";
    let answer = "We ship to Hong Kong, Macau, Taiwan, Singapore and the United States[1].";
    let gold = app.new_conversation(&app.api_key, Some("C1001")).await;
    app.fake.push(Reply::text(&[answer]));
    let (_, trace) = ask(&app, &gold, q).await;
    assert_eq!(trace["path"], "rag", "{trace}");
    assert_eq!(trace["cache"]["decision"], "stored", "{trace}");
    assert_eq!(trace["cache"]["segment"], "gold", "{trace}");
    let prompt = system_prompt(&app, app.fake.request_count() - 1);
    assert!(prompt.contains("Gold member"), "{prompt}");
    assert!(
        !prompt.contains("Customer profile"),
        "only the tier, nothing personal: {prompt}"
    );

    // A regular customer: not served the gold answer; the model answers with the regular strategy.
    let regular = app.new_conversation(&app.api_key, Some("C1002")).await;
    app.fake.push(Reply::text(&[answer]));
    let calls = app.fake.request_count();
    let (_, trace) = ask(&app, &regular, q).await;
    assert_eq!(trace["path"], "rag", "{trace}");
    assert_eq!(app.fake.request_count(), calls + 1);
    assert!(system_prompt(&app, calls).contains("Regular member"));

    // Another gold customer's conversation: the gold answer, no model call.
    let gold2 = app.new_conversation(&app.api_key, Some("C1001")).await;
    let calls = app.fake.request_count();
    let (reply, trace) = ask(&app, &gold2, q).await;
    assert_eq!(
        (trace["path"].as_str(), reply.as_str()),
        (Some("cache"), answer)
    );
    assert_eq!(trace["cache"]["segment"], "gold");
    assert_eq!(app.fake.request_count(), calls);
}
