//! The knowledge-base API and `kefu kb` commands through the real application (keyword search: the test
//! configuration has no embedder; hybrid ranking with the real embedder is tested in `kefu-knowledge`).

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, Backend};

const RETURNS: &str = "# 退货政策\n\n收到商品后7天内可以申请无理由退货。\n\n## 退款时间\n\n退款将在3到5个工作日内原路退回。\n";

fn one_file(source: &str, content: &str) -> Value {
    json!({"collection": "help", "files": [{"source": source, "content": content}]})
}

async fn import_one(
    app: &crate::helpers::TestApp,
    token: &str,
    source: &str,
    content: &str,
) -> reqwest::Response {
    app.post(token, "/v1/admin/kb/imports", one_file(source, content))
        .await
}

async fn search(app: &crate::helpers::TestApp, token: &str, q: &str) -> Value {
    let r = app
        .post(token, "/v1/admin/kb/search", json!({"query": q}))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn import_search_browse_and_delete_through_the_api() {
    let app = spawn_app_with(Backend::Postgres, "").await;
    let admin = app.admin_token().await;
    let r = import_one(&app, &admin, "returns.md", RETURNS).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["files"][0]["status"], "imported");
    assert_eq!(v["files"][0]["chunks"], 2);
    let doc_id = v["files"][0]["document_id"].as_str().unwrap().to_owned();

    let res = search(&app, &admin, "退款几天到账").await;
    assert_eq!(res["mode"], "bm25");
    let hit = &res["hits"][0];
    assert!(hit["text"].as_str().unwrap().contains("3到5个工作日"));
    assert_eq!(hit["citation"]["label"], "退货政策 › 退款时间 (line 7)");
    assert_eq!(hit["citation"]["source"], "returns.md");
    assert_eq!(hit["citation"]["location"]["line_start"], 7);
    assert_eq!(hit["scores"]["bm25"]["rank"], 1);

    let kb = app.readiness_check("knowledge_index").await;
    assert!(
        kb["detail"]
            .as_str()
            .unwrap()
            .starts_with("2 chunks, 0 vectors (keyword search only)"),
        "{kb}"
    );

    let docs: Value = app
        .get_json(&admin, "/v1/admin/kb/documents?collection=help")
        .await;
    assert_eq!(docs.as_array().unwrap().len(), 1);
    assert_eq!(docs[0]["title"], "退货政策");
    assert_eq!(docs[0]["lang"], "zh");
    let detail: Value = app
        .get(&admin, &format!("/v1/admin/kb/documents/{doc_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["chunks"].as_array().unwrap().len(), 2);
    assert_eq!(
        detail["chunks"][1]["headings"],
        json!(["退货政策", "退款时间"])
    );

    let del = app
        .delete(&admin, &format!("/v1/admin/kb/documents/{doc_id}"))
        .await;
    assert_eq!(del.status(), 204);
    assert!(search(&app, &admin, "退款").await["hits"]
        .as_array()
        .unwrap()
        .is_empty());
    let again = app
        .delete(&admin, &format!("/v1/admin/kb/documents/{doc_id}"))
        .await;
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn several_files_import_as_a_job_with_a_report_per_file() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let body = json!({"collection": "help", "tags": ["售后"], "files": [
        {"source": "returns.md", "content": RETURNS},
        {"source": "faq.csv", "content": "question,answer,alternatives\nHow do I reset my password?,Use the Forgot password link.,forgot password\n"},
        {"source": "blob.txt", "content_base64": b64(&[0, 1, 2, 0xff, 0xfe, 0])},
        {"source": "notes", "content": "plain notes about shipping", "format": "text"},
    ]});
    let r = app.post(&admin, "/v1/admin/kb/imports", body).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    let id = v["job"]["id"].as_str().unwrap().to_owned();
    let job = loop {
        let j: Value = app
            .get(&admin, &format!("/v1/admin/kb/imports/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if j["status"] != "running" {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job["status"], "done");
    assert_eq!(
        (job["done"].as_i64(), job["total"].as_i64()),
        (Some(4), Some(4))
    );
    let statuses: Vec<&str> = job["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["error"]["code"]
                .as_str()
                .unwrap_or_else(|| f["status"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        statuses,
        vec!["imported", "imported", "not_text", "imported"]
    );
    let res = search(&app, &admin, "forgot password").await;
    assert_eq!(
        res["hits"][0]["faq"]["question"],
        "How do I reset my password?"
    );
    assert_eq!(res["hits"][0]["tags"], json!(["售后"]));
    let r = app
        .post(
            &admin,
            "/v1/admin/kb/search",
            json!({"query": "退货", "tags": ["other"]}),
        )
        .await;
    assert!(r.json::<Value>().await.unwrap()["hits"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn knowledge_endpoints_check_role_and_tenant() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let r = import_one(&app, &admin, "returns.md", RETURNS).await;
    let doc_id = r.json::<Value>().await.unwrap()["files"][0]["document_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &admin,
        "/v1/admin/users",
        json!({"email": "agent@acme.test", "password": "agent-password-1", "role": "agent"}),
    )
    .await;
    app.post(
        &admin,
        "/v1/admin/users",
        json!({"email": "sup@acme.test", "password": "super-password-1", "role": "supervisor"}),
    )
    .await;
    let agent = app.login("agent@acme.test", "agent-password-1").await;
    let supervisor = app.login("sup@acme.test", "super-password-1").await;
    let (customer, _) = app.customer_session(None).await;
    let (_, other_key) = app.other_tenant().await;

    // Search and browse: staff of any role and API clients; never customers.
    for token in [&agent, &supervisor, &app.api_key] {
        assert_eq!(
            search(&app, token, "退款").await["hits"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            app.get(token, &format!("/v1/admin/kb/documents/{doc_id}"))
                .await
                .status(),
            200
        );
    }
    let r = app
        .post(&customer, "/v1/admin/kb/search", json!({"query": "退款"}))
        .await;
    assert_eq!(r.status(), 403);
    assert_error(&r.json().await.unwrap(), "forbidden");
    assert_eq!(
        app.get(&customer, "/v1/admin/kb/documents").await.status(),
        403
    );
    // Import and delete: admins and supervisors.
    for token in [&agent, &app.api_key, &customer] {
        let r = import_one(&app, token, "x.md", "# X\n\ntext").await;
        assert_eq!(r.status(), 403);
        let d = app
            .delete(token, &format!("/v1/admin/kb/documents/{doc_id}"))
            .await;
        assert_eq!(d.status(), 403);
    }
    let r = import_one(&app, &supervisor, "x.md", "# X\n\ntext").await;
    assert_eq!(r.status(), 200);
    // Another tenant sees nothing of this one.
    assert!(search(&app, &other_key, "退款").await["hits"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        app.get(&other_key, &format!("/v1/admin/kb/documents/{doc_id}"))
            .await
            .status(),
        404
    );
    let r = app
        .client
        .post(app.url("/v1/admin/kb/search"))
        .json(&json!({"query": "退款"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn bad_import_and_search_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let cases = [
        (
            json!({"files": [{"source": "a.md", "content": "x", "content_base64": "eA=="}]}),
            "invalid_request",
        ),
        (json!({"files": [{"source": "a.md"}]}), "invalid_request"),
        (
            json!({"files": [{"source": "a.pdf", "content_base64": "not base64!"}]}),
            "invalid_request",
        ),
        (
            json!({"files": [{"source": "a.md", "content": "x", "format": "docx"}]}),
            "invalid_request",
        ),
        (json!({"files": []}), "invalid_request"),
        (
            json!({"files": [{"source": " ", "content": "x"}]}),
            "invalid_request",
        ),
        (
            json!({"collection": "", "files": [{"source": "a.md", "content": "x"}]}),
            "invalid_request",
        ),
        (
            json!({"files": [{"source": "a.md", "content": "x"}], "extra": 1}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let r = app.post(&admin, "/v1/admin/kb/imports", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        assert_error(&r.json().await.unwrap(), code);
    }
    // A single bad file: the request succeeds, its report says why the file was refused.
    let r = import_one(&app, &admin, "empty.md", "\n\n").await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["files"][0]["status"], "failed");
    assert_eq!(v["files"][0]["error"]["code"], "empty_file");
    assert!(app
        .get(&admin, "/v1/admin/kb/documents")
        .await
        .json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .is_empty());
    for (body, code) in [
        (json!({"query": "  "}), "invalid_request"),
        (json!({"query": "x", "k": 0}), "invalid_request"),
        (json!({"query": "x", "k": 51}), "invalid_request"),
        (json!({"q": "x"}), "invalid_request"),
    ] {
        let r = app.post(&admin, "/v1/admin/kb/search", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        assert_error(&r.json().await.unwrap(), code);
    }
    assert_eq!(
        app.get(&admin, "/v1/admin/kb/documents/not-a-uuid")
            .await
            .status(),
        404
    );
}

/// `kefu kb import` writes to the database; the running server applies it from the change log.
#[tokio::test]
async fn the_cli_imports_a_folder_and_the_running_server_picks_it_up() {
    let app = spawn_app_with(Backend::Sqlite, "[knowledge]\npoll_interval_ms = 100\n").await;
    let admin = app.admin_token().await;
    let folder = crate::helpers::temp_dir("kb");
    std::fs::create_dir_all(folder.join("zh")).unwrap();
    std::fs::write(folder.join("zh/returns.md"), RETURNS).unwrap();
    std::fs::write(
        folder.join("shipping.txt"),
        "Orders ship within 24 hours.\n\nExpress delivery is next day.",
    )
    .unwrap();
    std::fs::write(folder.join("broken.csv"), "question,answer\n,no question\n").unwrap();
    std::fs::write(folder.join("image.png"), [0x89, b'P', b'N', b'G']).unwrap();
    let config = app.data_dir.join("test.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(["kb", "import", "--tenant", &app.tenant, "--data-dir"])
        .arg(&app.data_dir)
        .arg("--config")
        .arg(&config)
        .arg(&folder)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "one file failed, so the command reports failure"
    );
    assert!(
        stdout.contains("2 imported") && stdout.contains("1 failed"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("broken.csv") || stdout.contains("broken.csv"),
        "{stdout}\n{stderr}"
    );
    let found = loop {
        let res = search(&app, &admin, "express delivery").await;
        if !res["hits"].as_array().unwrap().is_empty() {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(found["hits"][0]["citation"]["source"], "shipping.txt");
    let res = search(&app, &admin, "退款").await;
    assert_eq!(res["hits"][0]["citation"]["source"], "zh/returns.md");

    let out = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args([
            "kb",
            "search",
            "退款",
            "--tenant",
            &app.tenant,
            "--data-dir",
        ])
        .arg(&app.data_dir)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("退货政策 › 退款时间 (line 7)") && text.contains("bm25"),
        "{text}"
    );
}

/// A hosted embedder (`[llm] embedder`, here the fake server's `/embeddings`) makes search hybrid and is named on
/// `/readyz`; a provider it names that does not exist is a failed check, not a crash.
#[tokio::test]
async fn a_hosted_embedder_makes_search_hybrid() {
    let extra = format!(
        "[llm]\nembedder = {{ provider = \"fake\", model = \"fake-embed\", dim = {} }}\n",
        kefu_testkit::FAKE_EMBEDDING_DIM
    );
    let app = spawn_app_with(Backend::Sqlite, &extra).await;
    let admin = app.admin_token().await;
    assert_eq!(
        import_one(&app, &admin, "returns.md", RETURNS)
            .await
            .status(),
        200
    );
    let res = search(&app, &admin, "退款几天到账").await;
    assert_eq!(res["mode"], "hybrid", "{res}");
    assert!(res["hits"][0]["scores"]["dense"].is_object(), "{res}");
    let check = app.readiness_check("embedding_model:fake/fake-embed").await;
    assert_eq!(check["ok"], true, "{check}");
    let embeds = app
        .fake
        .requests()
        .iter()
        .filter(|r| r["model"] == "fake-embed")
        .count();
    assert!(
        embeds >= 2,
        "passages and the query were embedded by the provider"
    );

    let broken = spawn_app_with(
        Backend::Sqlite,
        "[llm]\nembedder = { provider = \"nowhere\", model = \"m\", dim = 8 }\n",
    )
    .await;
    let check = broken.readiness_check("embedding_model:nowhere/m").await;
    assert_eq!(check["ok"], false, "{check}");
}
