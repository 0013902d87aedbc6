//! The built-in demo shop: the order system a business would connect kefu to, small enough to ship in the binary.
//!
//! Customers with service tiers, products, orders with shipments and tracking events, returns and coupons, seeded
//! from `seed.json` and kept in a JSON file beside the database (written atomically on every change, so an accepted
//! return is never lost). It is served over HTTP under `/demo-shop/v1` with a bearer token, and the engine reaches it
//! only through declarative tools (`demo/business.yaml`), exactly as it would reach a real shop's API.
//!
//! Every customer-scoped route takes the customer id in the path and only ever shows that customer's records: an
//! order of someone else is "not found". The engine fills the customer id from the conversation's identity, never
//! from the model.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const SEED: &str = include_str!("../seed.json");

/// Text in both languages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Customer {
    pub id: String,
    pub name: String,
    /// `regular`, `gold` or `platinum`.
    pub tier: String,
    pub points: i64,
    pub language: String,
    pub since: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Product {
    pub sku: String,
    pub name: Text,
    pub category: String,
    pub price_cents: i64,
    pub stock: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderItem {
    pub sku: String,
    pub qty: i64,
    pub price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackingEvent {
    pub at: String,
    pub location: String,
    pub status: Text,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_no: String,
    pub eta: String,
    pub events: Vec<TrackingEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub placed_at: String,
    /// `paid`, `shipped`, `delivered` or `cancelled`.
    pub status: String,
    pub items: Vec<OrderItem>,
    pub shipment: Option<Shipment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Coupon {
    pub code: String,
    pub customer_id: String,
    pub description: Text,
    pub expires: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Return {
    /// `RMA` + a number.
    pub id: String,
    pub customer_id: String,
    pub order_id: String,
    pub sku: String,
    pub reason: String,
    pub photo: Option<String>,
    /// `requested` → `approved` → `received` → `refunded` (or `rejected`).
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Data {
    pub customers: Vec<Customer>,
    pub products: Vec<Product>,
    pub orders: Vec<Order>,
    pub coupons: Vec<Coupon>,
    pub returns: Vec<Return>,
}

impl Data {
    pub fn seed() -> Data {
        serde_json::from_str(SEED).expect("the shop seed is valid")
    }

    fn product(&self, sku: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.sku == sku)
    }

    fn customer(&self, id: &str) -> Option<&Customer> {
        self.customers.iter().find(|c| c.id == id)
    }

    fn order_of(&self, customer: &str, id: &str) -> Option<&Order> {
        let id = id.trim().to_ascii_uppercase();
        self.orders
            .iter()
            .find(|o| o.id == id && o.customer_id == customer)
    }

    /// An order as the tools see it: items with their names and the total.
    fn order_view(&self, o: &Order) -> Value {
        let items: Vec<Value> = o
            .items
            .iter()
            .map(|i| {
                let name = self.product(&i.sku).map(|p| p.name.clone());
                json!({"sku": i.sku, "name": name, "qty": i.qty, "price": yuan(i.price_cents)})
            })
            .collect();
        let total: i64 = o.items.iter().map(|i| i.qty * i.price_cents).sum();
        let (zh_status, en_status) = match o.status.as_str() {
            "paid" => ("待发货", "awaiting shipment"),
            "shipped" => ("运输中", "in transit"),
            "delivered" => ("已签收", "delivered"),
            "cancelled" => ("已取消", "cancelled"),
            other => (other, other),
        };
        let first = o.items.first().and_then(|i| self.product(&i.sku));
        let n = o.items.len();
        let summary = Text {
            zh: format!(
                "{}：{}{}（{zh_status}）",
                o.id,
                first.map_or("", |p| p.name.zh.as_str()),
                if n > 1 {
                    format!(" 等 {n} 件")
                } else {
                    String::new()
                }
            ),
            en: format!(
                "{}: {}{} ({en_status})",
                o.id,
                first.map_or("", |p| p.name.en.as_str()),
                if n > 1 {
                    format!(" and {} more", n - 1)
                } else {
                    String::new()
                }
            ),
        };
        let returns: Vec<&Return> = self.returns.iter().filter(|r| r.order_id == o.id).collect();
        json!({
            "id": o.id,
            "placed_at": o.placed_at,
            "status": o.status,
            "status_text": {"zh": zh_status, "en": en_status},
            "summary": summary,
            "items": items,
            "total": yuan(total),
            "shipment": o.shipment,
            "returns": returns,
        })
    }
}

/// Money as the customer reads it: `799.00`.
fn yuan(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("reading the shop file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the shop file {0} is not valid: {1}")]
    Parse(PathBuf, serde_json::Error),
    #[error("writing the shop file: {0}")]
    Write(std::io::Error),
}

/// The shop's state, kept in memory and in its file.
pub struct Shop {
    data: Mutex<Data>,
    file: Option<PathBuf>,
    token: String,
}

impl Shop {
    /// Opens the shop kept in `file`, seeding it on first use. `None` keeps it in memory (tests).
    pub fn open(file: Option<&Path>, token: impl Into<String>) -> Result<Arc<Shop>, ShopError> {
        let data = match file {
            Some(f) if f.exists() => {
                let text =
                    std::fs::read_to_string(f).map_err(|e| ShopError::Read(f.to_owned(), e))?;
                serde_json::from_str(&text).map_err(|e| ShopError::Parse(f.to_owned(), e))?
            }
            _ => Data::seed(),
        };
        let shop = Shop {
            data: Mutex::new(data),
            file: file.map(Path::to_owned),
            token: token.into(),
        };
        if let Some(f) = &shop.file {
            if !f.exists() {
                shop.save(&shop.data.lock())?;
            }
        }
        Ok(Arc::new(shop))
    }

    pub fn snapshot(&self) -> Data {
        self.data.lock().clone()
    }

    /// Written to a temporary file, synced, then renamed over the old one: a crash leaves the old or the new state.
    fn save(&self, data: &Data) -> Result<(), ShopError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let tmp = file.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(data).expect("shop data serialises");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, file)
        };
        write().map_err(ShopError::Write)
    }
}

/// The shop's HTTP API (mount it under `/demo-shop/v1`).
pub fn router(shop: Arc<Shop>) -> Router {
    Router::new()
        .route("/products", get(products))
        .route("/customers/{customer}", get(customer))
        .route("/customers/{customer}/orders", get(orders))
        .route("/customers/{customer}/orders/{order}", get(order))
        .route(
            "/customers/{customer}/recommendations",
            get(recommendations),
        )
        .route("/customers/{customer}/coupons", get(coupons))
        .route(
            "/customers/{customer}/returns",
            get(returns).post(create_return),
        )
        .with_state(shop)
}

/// An error body like the rest of kefu's: a stable code and a message.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} not found"),
    )
}

/// Constant-time comparison of the bearer token (by hashing both sides).
fn authorised(shop: &Shop, headers: &HeaderMap) -> bool {
    use sha2::{Digest, Sha256};
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    !shop.token.is_empty() && Sha256::digest(given) == Sha256::digest(&shop.token)
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid shop API token is required",
    )
}

/// Runs `f` on the data after checking the token and that the customer exists.
fn with_customer(
    shop: &Shop,
    headers: &HeaderMap,
    customer: &str,
    f: impl FnOnce(&Data, &Customer) -> Response,
) -> Response {
    if !authorised(shop, headers) {
        return unauthorized();
    }
    let data = shop.data.lock();
    match data.customer(customer) {
        Some(c) => f(&data, c),
        None => not_found("customer"),
    }
}

#[derive(Deserialize)]
struct ProductQuery {
    q: Option<String>,
    category: Option<String>,
}

async fn products(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    Query(q): Query<ProductQuery>,
) -> Response {
    if !authorised(&shop, &headers) {
        return unauthorized();
    }
    let data = shop.data.lock();
    let needle = q.q.as_deref().map(str::to_lowercase);
    let found: Vec<&Product> = data
        .products
        .iter()
        .filter(|p| q.category.as_deref().is_none_or(|c| p.category == c))
        .filter(|p| {
            needle.as_deref().is_none_or(|n| {
                p.name.zh.contains(n) || p.name.en.to_lowercase().contains(n) || p.sku == n
            })
        })
        .collect();
    Json(json!({"products": found})).into_response()
}

async fn customer(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    with_customer(&shop, &headers, &id, |data, c| {
        let orders = data.orders.iter().filter(|o| o.customer_id == c.id).count();
        Json(json!({
            "id": c.id, "name": c.name, "tier": c.tier, "points": c.points, "language": c.language,
            "member_since": c.since, "orders": orders,
        }))
        .into_response()
    })
}

async fn orders(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    with_customer(&shop, &headers, &id, |data, c| {
        let mut list: Vec<Value> = data
            .orders
            .iter()
            .filter(|o| o.customer_id == c.id)
            .map(|o| data.order_view(o))
            .collect();
        // Newest first.
        list.reverse();
        Json(json!({"orders": list})).into_response()
    })
}

async fn order(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    UrlPath((id, order)): UrlPath<(String, String)>,
) -> Response {
    with_customer(&shop, &headers, &id, |data, c| {
        match data.order_of(&c.id, &order) {
            Some(o) => Json(data.order_view(o)).into_response(),
            None => not_found("order"),
        }
    })
}

/// Products in the categories the customer bought from, not yet bought, in stock; then best sellers elsewhere.
async fn recommendations(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    with_customer(&shop, &headers, &id, |data, c| {
        let bought: HashSet<&str> = data
            .orders
            .iter()
            .filter(|o| o.customer_id == c.id)
            .flat_map(|o| o.items.iter().map(|i| i.sku.as_str()))
            .collect();
        let categories: HashSet<&str> = bought
            .iter()
            .filter_map(|s| data.product(s))
            .map(|p| p.category.as_str())
            .collect();
        let mut picks: Vec<(&Product, &str)> = data
            .products
            .iter()
            .filter(|p| p.stock > 0 && !bought.contains(p.sku.as_str()))
            .map(|p| {
                let why = if categories.contains(p.category.as_str()) {
                    "goes_with_purchases"
                } else {
                    "popular"
                };
                (p, why)
            })
            .collect();
        picks.sort_by_key(|(p, why)| (*why != "goes_with_purchases", p.sku.clone()));
        picks.truncate(3);
        let list: Vec<Value> = picks
            .into_iter()
            .map(|(p, why)| {
                json!({"sku": p.sku, "name": p.name, "price": yuan(p.price_cents), "why": why})
            })
            .collect();
        Json(json!({"recommendations": list})).into_response()
    })
}

async fn coupons(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    with_customer(&shop, &headers, &id, |data, c| {
        let list: Vec<&Coupon> = data
            .coupons
            .iter()
            .filter(|k| k.customer_id == c.id)
            .collect();
        Json(json!({"coupons": list})).into_response()
    })
}

async fn returns(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    with_customer(&shop, &headers, &id, |data, c| {
        let list: Vec<&Return> = data
            .returns
            .iter()
            .filter(|r| r.customer_id == c.id)
            .collect();
        Json(json!({"returns": list})).into_response()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReturn {
    order_id: String,
    sku: String,
    reason: String,
    #[serde(default)]
    photo: Option<String>,
}

/// Opens a return for one item of a delivered order. One open return per order item.
async fn create_return(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Result<Json<NewReturn>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !authorised(&shop, &headers) {
        return unauthorized();
    }
    let Json(new) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_body", e.body_text()),
    };
    let reason = new.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reason",
            "the reason must be 1–500 characters",
        );
    }
    let mut data = shop.data.lock();
    if data.customer(&id).is_none() {
        return not_found("customer");
    }
    let Some(order) = data.order_of(&id, &new.order_id).cloned() else {
        return not_found("order");
    };
    let sku = new.sku.trim().to_ascii_uppercase();
    if !order.items.iter().any(|i| i.sku == sku) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "item_not_in_order",
            format!("{sku} is not an item of order {}", order.id),
        );
    }
    if order.status != "delivered" {
        return error(
            StatusCode::CONFLICT,
            "not_delivered",
            format!(
                "order {} is {}; returns open once it is delivered",
                order.id, order.status
            ),
        );
    }
    if let Some(r) = data
        .returns
        .iter()
        .find(|r| r.order_id == order.id && r.sku == sku && r.status != "rejected")
    {
        return error(
            StatusCode::CONFLICT,
            "return_exists",
            format!("return {} is already open for this item", r.id),
        );
    }
    let ret = Return {
        id: format!("RMA{}", 100_001 + data.returns.len()),
        customer_id: id,
        order_id: order.id,
        sku,
        reason: reason.to_owned(),
        photo: new.photo,
        status: "requested".into(),
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    data.returns.push(ret.clone());
    if let Err(e) = shop.save(&data) {
        data.returns.pop();
        tracing::error!(error = %e, "could not save the demo shop");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the return could not be saved; try again",
        );
    }
    (StatusCode::CREATED, Json(json!({"return": ret}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(shop: Arc<Shop>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(shop)).await.unwrap() });
        format!("http://{addr}")
    }

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn customers_see_only_their_own_orders_and_need_the_token() {
        let base = serve(Shop::open(None, "t0k").unwrap()).await;
        let get = |path: &str, token: &str| {
            client()
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
        };
        assert_eq!(
            get("/customers/C1001", "wrong").await.unwrap().status(),
            401
        );
        let me: Value = get("/customers/C1001", "t0k")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["tier"], "gold");
        // Someone else's order is not found, lower case ids work.
        assert_eq!(
            get("/customers/C1002/orders/KF20261101", "t0k")
                .await
                .unwrap()
                .status(),
            404
        );
        let o: Value = get("/customers/C1001/orders/kf20261108", "t0k")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(o["status"], "shipped");
        assert_eq!(o["total"], "207.00");
        assert_eq!(o["shipment"]["tracking_no"], "ZT7788120431");
        let recs: Value = get("/customers/C1002/recommendations", "t0k")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let first = &recs["recommendations"][0];
        assert_eq!(first["why"], "goes_with_purchases");
        assert_ne!(first["sku"], "SPT-300", "already bought");
    }

    #[tokio::test]
    async fn returns_are_validated_persisted_and_not_duplicated() {
        let dir = std::env::temp_dir().join(format!("kefu-shop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("shop.json");
        let _ = std::fs::remove_file(&file);
        let base = serve(Shop::open(Some(&file), "t").unwrap()).await;
        let post = |body: Value| {
            client()
                .post(format!("{base}/customers/C1001/returns"))
                .bearer_auth("t")
                .json(&body)
                .send()
        };
        let r = post(json!({"order_id": "KF20261108", "sku": "ACC-210", "reason": "坏了"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "not delivered yet");
        let r = post(json!({"order_id": "KF20261101", "sku": "HOM-400", "reason": "x"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let r = post(json!({"order_id": "KF20261101", "sku": "AUD-100", "reason": "  "}))
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let r = post(json!({"order_id": "KF20261101", "sku": "AUD-100", "extra": 1}))
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = post(json!({"order_id": "KF20261101", "sku": "aud-100", "reason": "左耳没有声音"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["return"]["id"], "RMA100001");
        let again = post(json!({"order_id": "KF20261101", "sku": "AUD-100", "reason": "again"}))
            .await
            .unwrap();
        assert_eq!(again.status(), 409);
        // Survives a restart.
        let reopened = Shop::open(Some(&file), "t").unwrap();
        assert_eq!(reopened.snapshot().returns.len(), 1);
        assert_eq!(reopened.snapshot().returns[0].reason, "左耳没有声音");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
