//! Liveness, readiness and the OpenAPI document.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

use kefu_types::{Health, Readiness, ReadinessCheck};

use crate::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Ready to serve: the database answers and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub(crate) async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let db = s.store.ping().await;
    let shutting_down = s.engine.is_shutting_down();
    let checks = vec![
        ReadinessCheck {
            name: format!("database:{}", s.store.backend()),
            ok: db.is_ok(),
            required: true,
            detail: db.err().map(|e| e.to_string()),
        },
        ReadinessCheck {
            name: "accepting".into(),
            ok: !shutting_down,
            required: true,
            detail: shutting_down.then(|| "shutting down".into()),
        },
    ];
    let mut checks = checks;
    checks.extend(s.settings.model_checks.iter().cloned());
    let kb = s.knowledge.stats();
    checks.push(ReadinessCheck {
        name: "knowledge_index".into(),
        ok: true,
        required: false,
        detail: Some(format!(
            "{} chunks, {} vectors ({}), change log at {}",
            kb.chunks,
            kb.vectors,
            kb.embedder.as_deref().unwrap_or("keyword search only"),
            kb.cursor
        )),
    });
    let ok = checks.iter().filter(|c| c.required).all(|c| c.ok);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Readiness {
            status: if ok { "ready" } else { "not_ready" }.into(),
            checks,
        }),
    )
}

pub(crate) async fn openapi_json() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::document_json(),
    )
}
