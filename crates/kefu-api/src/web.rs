//! The browser apps, built from `web/` (TypeScript, `npm run build`) into `web/dist/` and embedded here: the
//! customer chat widget at `/widget.js`, the agent console at `/console/`, and the demo shop page at `/demo/`.
//! `web/dist/` is committed so building kefu needs no Node; `cargo xtask ci` rebuilds it and fails on drift.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::auth::sign_identity_token;
use crate::error::ApiError;
use crate::AppState;

const WIDGET_JS: &str = include_str!("../../../web/dist/widget.js");
const CONSOLE_JS: &str = include_str!("../../../web/dist/console.js");
const CONSOLE_CSS: &str = include_str!("../../../web/dist/console.css");
const CONSOLE_HTML: &str = include_str!("../../../web/dist/console.html");
const DEMO_HTML: &str = include_str!("../../../web/dist/demo.html");

/// Pages served only by the console and demo: scripts and connections from this origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The demo page's set-up: which tenant its widget talks to and which shop customers one can play.
#[derive(Debug, Clone)]
pub struct DemoPage {
    pub tenant: String,
    /// (external id, label) of the demo shop's customers, e.g. ("C1001", "王小明 · gold").
    pub customers: Vec<(String, String)>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/widget.js",
            get(|| async { asset(WIDGET_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|| async { page(CONSOLE_HTML) }))
        .route(
            "/console/console.js",
            get(|| async { asset(CONSOLE_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset(CONSOLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(demo_page))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Small and versioned with the binary: revalidate rather than risk a stale widget after an upgrade.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn page(body: impl Into<String>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        body.into(),
    )
        .into_response()
}

/// Escapes text for an HTML text node or a double-quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct DemoQuery {
    /// A demo customer's id (`C1001`), or `anon` for an anonymous visitor.
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// The demo shop page with the widget embedded, signed in as one of the demo shop's customers (the identity token
/// is signed here with the tenant's customer secret, as a shop's own backend would).
async fn demo_page(
    State(s): State<AppState>,
    Query(q): Query<DemoQuery>,
) -> Result<Response, ApiError> {
    let Some(demo) = &s.settings.demo else {
        return Err(ApiError::RouteNotFound);
    };
    let tenant = s
        .store
        .get_tenant_by_slug(&demo.tenant)
        .await?
        .ok_or(ApiError::TenantNotFound)?;
    let lang = match q.lang.as_deref() {
        Some("en") => "en",
        _ => "zh",
    };
    let wanted = q.customer.unwrap_or_else(|| {
        demo.customers
            .first()
            .map(|c| c.0.clone())
            .unwrap_or_default()
    });
    let current = demo.customers.iter().find(|c| c.0 == wanted);
    let identity = current
        .map(|(id, label)| {
            let name = label.split(" · ").next();
            sign_identity_token(
                &tenant.customer_secret,
                id,
                name,
                Duration::from_secs(24 * 3600),
            )
        })
        .unwrap_or_default();
    let who = current
        .map(|(id, label)| format!("{label} ({id})"))
        .unwrap_or_else(|| {
            if lang == "en" {
                "anonymous visitor"
            } else {
                "匿名访客"
            }
            .to_owned()
        });
    let mut links: Vec<String> = demo
        .customers
        .iter()
        .map(|(id, label)| {
            format!(
                r#"<a href="?customer={0}&amp;lang={1}">{2}</a>"#,
                esc(id),
                lang,
                esc(label)
            )
        })
        .collect();
    links.push(format!(
        r#"<a href="?customer=anon&amp;lang={lang}">anonymous / 匿名</a>"#
    ));
    links.push(format!(
        r#"· <a href="?customer={}&amp;lang={}">{}</a>"#,
        esc(&wanted),
        if lang == "en" { "zh" } else { "en" },
        if lang == "en" { "中文" } else { "English" }
    ));
    let html = DEMO_HTML
        .replace("{{CUSTOMER}}", &esc(&who))
        .replace("{{SWITCH}}", &links.join(" "))
        .replace("{{TENANT}}", &esc(&demo.tenant))
        .replace("{{LANG}}", lang)
        .replace("{{IDENTITY}}", &esc(&identity));
    let mut resp = page(html);
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(resp)
}
