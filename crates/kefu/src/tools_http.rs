//! The HTTP client tools are called with (the engine itself does no HTTP).

use serde_json::Value;

use kefu_engine::tools::{HttpRequest, HttpTransport, Method};

pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl Default for ReqwestTransport {
    fn default() -> Self {
        Self {
            // Tools are the business's own systems: never follow a redirect elsewhere.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("the HTTP client builds"),
        }
    }
}

#[async_trait::async_trait]
impl HttpTransport for ReqwestTransport {
    async fn send(&self, r: HttpRequest) -> Result<(u16, Value), String> {
        let mut req = match r.method {
            Method::Get => self.client.get(&r.url),
            Method::Post => self.client.post(&r.url),
        };
        if let Some(body) = &r.body {
            req = req.json(body);
        }
        if let Some(token) = &r.bearer {
            req = req.bearer_auth(token);
        }
        let resp = req
            .timeout(r.timeout)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .json()
            .await
            .map_err(|e| format!("unreadable answer: {}", e.without_url()))?;
        Ok((status, body))
    }
}
