//! `spawn_app()`: the real application on 127.0.0.1:0 with a fresh database and the scripted fake model, plus
//! typed helpers for the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use kefu::{Application, Overrides, Settings};
use kefu_store::Store;
use kefu_testkit::FakeLlm;
use kefu_types::StreamEvent;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub fake: FakeLlm,
    pub tenant: String,
    pub admin_email: String,
    pub admin_password: String,
    pub api_key: String,
    pub data_dir: PathBuf,
    pub db_url: String,
    pub store: Arc<dyn Store>,
    pub engine: Arc<kefu_engine::Engine>,
    pub embedder: Option<Arc<dyn kefu_llm::Embedder>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kefu-it-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, "").await
}

/// `extra_toml` is layered over the test configuration (e.g. tighter limits).
pub async fn spawn_app_with(backend: Backend, extra_toml: &str) -> TestApp {
    let fake = FakeLlm::start().await;
    let db_url = match backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres => kefu_testkit::pg::fresh_database().await,
    };
    start(temp_dir("app"), db_url, fake, extra_toml).await
}

/// Starts the application on an existing data directory and database (a restart).
pub async fn start(data_dir: PathBuf, db_url: String, fake: FakeLlm, extra_toml: &str) -> TestApp {
    let base_cfg = data_dir.join("test.toml");
    std::fs::write(
        &base_cfg,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
shutdown_grace_secs = 2
[database]
url = "{db_url}"
max_connections = 8
[limits]
per_ip_per_minute = 100000
per_ip_burst = 100000
per_key_per_minute = 100000
per_key_burst = 100000
max_wait_secs = 20
[llm]
connect_timeout_ms = 1000
first_token_timeout_ms = 2000
idle_timeout_ms = 2000
total_timeout_ms = 10000
retry_base_delay_ms = 5
retry_max_delay_ms = 20
providers = [{{ name = "fake", base_url = "{}", api_key = "sk-fake" }}]
chain = [{{ provider = "fake", model = "fake-model" }}]
[models]
embedder = ""
[demo]
shop = false
[bootstrap]
tenant_slug = "acme"
admin_email = "admin@acme.test"
admin_password = "correct-horse-battery"
[log]
filter = "error"
"#,
            fake.base_url()
        ),
    )
    .unwrap();
    let extra = data_dir.join("extra.toml");
    std::fs::write(&extra, extra_toml).unwrap();
    let overrides = Overrides {
        data_dir: Some(data_dir.clone()),
        ..Default::default()
    };
    let settings =
        Settings::load_files(&[base_cfg.as_path(), extra.as_path()], &overrides).unwrap();
    kefu::telemetry::init(&settings.log);
    let app = Application::build(settings).await.unwrap();
    let addr = app.local_addr();
    let store = app.store();
    let engine = app.engine();
    let embedder = app.embedder.clone();
    let creds = read_env(&data_dir.join("bootstrap.env"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        fake,
        tenant: creds
            .get("KEFU_TENANT")
            .cloned()
            .unwrap_or_else(|| "acme".into()),
        admin_email: "admin@acme.test".into(),
        admin_password: "correct-horse-battery".into(),
        api_key: creds.get("KEFU_API_KEY").cloned().unwrap_or_default(),
        data_dir,
        db_url,
        store,
        engine,
        embedder,
        stop: Some(stop),
        server: Some(server),
    }
}

fn read_env(path: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.stop.take().unwrap().send(()).unwrap();
        self.server.take().unwrap()
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a conversation and returns its id.
    pub async fn new_conversation(&self, token: &str, external_id: Option<&str>) -> String {
        self.create_conversation(token, external_id).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The first `/readyz` check whose name starts with `prefix` (e.g. `chat_model:`, `knowledge_index`).
    pub async fn readiness_check(&self, prefix: &str) -> Value {
        let ready: Value = self
            .client
            .get(self.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ready["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with(prefix))
            .cloned()
            .unwrap_or_else(|| panic!("no readiness check {prefix}*: {ready}"))
    }

    pub async fn delete(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// GET that must succeed, as JSON.
    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let r = self.get(token, path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_conversation(&self, token: &str, external_id: Option<&str>) -> Value {
        let body = match external_id {
            Some(e) => json!({ "customer_external_id": e }),
            None => json!({}),
        };
        let r = self.post(token, "/v1/conversations", body).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    pub async fn send(
        &self,
        token: &str,
        conv: &str,
        content: &str,
        key: Option<&str>,
        wait: bool,
    ) -> reqwest::Response {
        let mut rb = self
            .client
            .post(self.url(&format!("/v1/conversations/{conv}/messages?wait={wait}")))
            .bearer_auth(token)
            .json(&json!({ "content": content }));
        if let Some(k) = key {
            rb = rb.header("Idempotency-Key", k);
        }
        rb.send().await.unwrap()
    }

    pub async fn messages(&self, token: &str, conv: &str, after: i64) -> Vec<Value> {
        let r = self
            .get(
                token,
                &format!("/v1/conversations/{conv}/messages?after={after}&limit=200"),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["messages"].as_array().unwrap().clone()
    }

    /// The recorded turns of a conversation (staff).
    pub async fn turns(&self, token: &str, conv: &str) -> Vec<Value> {
        let r = self
            .get(token, &format!("/v1/conversations/{conv}/turns"))
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn admin_token(&self) -> String {
        self.login(&self.admin_email, &self.admin_password).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        self.login_to(&self.tenant, email, password).await
    }

    /// Signs in to any tenant (e.g. the one `other_tenant` made).
    pub async fn login_to(&self, tenant: &str, email: &str, password: &str) -> String {
        let r = self
            .client
            .post(self.url("/v1/auth/login"))
            .json(&json!({ "tenant": tenant, "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn customer_session(&self, identity_token: Option<&str>) -> (String, Value) {
        let mut body = json!({ "tenant": self.tenant });
        if let Some(t) = identity_token {
            body["identity_token"] = json!(t);
        }
        let r = self
            .client
            .post(self.url("/v1/customer-sessions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        (
            v["access_token"].as_str().unwrap().to_owned(),
            v["customer"].clone(),
        )
    }

    /// The admin of the tenant `other_tenant` made.
    pub async fn other_admin(&self, slug: &str) -> String {
        self.login_to(slug, "boss@other.test", "other-password-123")
            .await
    }

    /// Creates a second tenant directly in the store; returns (slug, api key).
    pub async fn other_tenant(&self) -> (String, String) {
        let slug = format!("other-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let c = kefu::bootstrap::create_tenant(
            self.store.as_ref(),
            &slug,
            "Other",
            "boss@other.test",
            Some(&"other-password-123".to_owned().into()),
        )
        .await
        .unwrap();
        use secrecy::ExposeSecret;
        (slug, c.api_key.expose_secret().to_owned())
    }

    /// Server-Sent Events of a conversation, parsed.
    pub async fn sse(
        &self,
        token: &str,
        conv: &str,
        after: i64,
        last_event_id: Option<i64>,
    ) -> BoxStream<'static, StreamEvent> {
        let mut rb = self
            .client
            .get(self.url(&format!("/v1/conversations/{conv}/events?after={after}")))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            rb = rb.header("Last-Event-ID", id.to_string());
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        r.bytes_stream()
            .eventsource()
            .filter_map(|e| async move {
                e.ok()
                    .and_then(|e| serde_json::from_str::<StreamEvent>(&e.data).ok())
            })
            .boxed()
    }
}

/// Next event within a deadline.
pub async fn next_event(s: &mut BoxStream<'static, StreamEvent>) -> StreamEvent {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("event in time")
        .expect("stream open")
}

/// The client rule for deltas: `text` covers characters [offset, offset+len); keep what you have, append the rest.
pub fn apply_delta(have: &mut String, offset: usize, text: &str) {
    let len = have.chars().count();
    assert!(
        offset <= len,
        "delta at {offset} leaves a gap after {len} characters"
    );
    have.extend(text.chars().skip(len - offset));
}

pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Greetings (simple, for the cheap tier), complaints and order questions: enough for routing tests.
pub const ROUTING_INTENTS: [(&str, [&str; 6]); 3] = [
    (
        "greeting",
        ["你好", "您好", "在吗", "hello", "hi there", "good morning"],
    ),
    (
        "complaint",
        [
            "我要投诉",
            "太差了我要投诉你们",
            "服务太烂了",
            "I want to complain",
            "this is terrible service",
            "worst shop ever",
        ],
    ),
    (
        "track_order",
        [
            "我的快递到哪了",
            "订单什么时候到",
            "物流怎么不动了",
            "where is my order",
            "track my parcel",
            "my package is late",
        ],
    ),
];

/// Labelled examples as intent training data (CSV `text,intent`).
pub fn intent_csv<const N: usize>(rows: &[(&str, [&str; N])]) -> String {
    let mut csv = String::from("text,intent\n");
    for (intent, texts) in rows {
        for t in texts {
            csv.push_str(&format!("{t},{intent}\n"));
        }
    }
    csv
}

impl TestApp {
    /// Trains an n-gram intent model from `rows` through the admin API and puts it in use.
    pub async fn train_intents<const N: usize>(&self, admin: &str, rows: &[(&str, [&str; N])]) {
        let r = self
            .post(
                admin,
                "/v1/admin/intent-models",
                json!({"data": intent_csv(rows), "encoders": []}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
}
