//! Declarative tools: what the business's systems can answer (order status, logistics, profile, returns), defined
//! in YAML and called over HTTP.
//!
//! A tool has a name, a description for the model, JSON-schema arguments, an HTTP endpoint with auth, triggers
//! (words or intents that make the turn a tool turn), rules to pull each argument out of the customer's words, and
//! whether it changes state (then only a flow may call it, after the customer confirmed). The customer id in an
//! endpoint (`{customer}`) always comes from the conversation's identity, never from the model or the customer's
//! text, so no argument can reach another customer's records.
//!
//! Argument validation is a small JSON-schema subset (object, string with pattern/enum/maxLength, integer, number,
//! boolean; required; no additional properties), checked when the file loads: a schema using anything else is
//! rejected rather than half-enforced. A full JSON-schema crate would bring a regex engine and dozens of
//! dependencies for keywords tool arguments do not need.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Text in the two languages the product speaks.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

impl Text {
    pub fn get(&self, zh: bool) -> &str {
        if zh {
            &self.zh
        } else {
            &self.en
        }
    }
}

/// What makes a message a turn for this tool or flow: words (any case, zh or en) or classifier intents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub intents: Vec<String>,
}

impl Triggers {
    pub fn matches(&self, text: &str, intent: Option<&str>) -> bool {
        let lower = text.to_lowercase();
        self.keywords
            .iter()
            .any(|k| lower.contains(&k.to_lowercase()))
            || intent.is_some_and(|i| self.intents.iter().any(|t| t == i))
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCall {
    pub method: Method,
    /// `{customer}` is the conversation's customer id; `{name}` an argument (percent-encoded).
    pub url: String,
    /// `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments (an object).
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
    pub http: HttpCall,
    /// Changes state: never called on the tool path, only by a flow after the customer confirmed.
    #[serde(default)]
    pub mutating: bool,
    #[serde(default)]
    pub triggers: Triggers,
    /// Per argument, a regex whose first capture group (or whole match) in the customer's words is the value.
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
    /// The tool to call instead when required arguments cannot be filled (e.g. all orders when no order number).
    #[serde(default)]
    pub fallback: Option<String>,
    /// A short label of the source for citations (`订单系统 / order system`).
    #[serde(default)]
    pub source: Option<Text>,
}

impl ToolDef {
    /// The arguments among `args` that this tool declares (a flow's slots hold more than each tool takes).
    pub fn accepted(&self, args: &Map<String, Value>) -> Map<String, Value> {
        let props = self.parameters["properties"].as_object();
        args.iter()
            .filter(|(k, _)| props.is_some_and(|p| p.contains_key(*k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// The business set-up: tools, flows and how the customer profile is fetched.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Business {
    #[serde(default)]
    pub tools: Vec<ToolDef>,
    #[serde(default)]
    pub flows: Vec<crate::flows::FlowDef>,
    /// The tool that returns the customer's profile (name, tier), called for model turns.
    #[serde(default)]
    pub profile_tool: Option<String>,
    /// The tool that lists the customer's orders, shown to agents in the hand-off brief.
    #[serde(default)]
    pub orders_tool: Option<String>,
    /// How to serve each tier (`gold: 优先处理…`), added to the prompt with the profile.
    #[serde(default)]
    pub tier_strategies: BTreeMap<String, Text>,
}

impl Business {
    /// The prompt line with a tier's service strategy, introduced as guidance the model keeps to itself.
    pub fn strategy_line(&self, tier: &str, zh: bool) -> Option<String> {
        let s = self.tier_strategies.get(tier)?;
        Some(format!("{}{}", crate::prompt::STRATEGY_LEAD, s.get(zh)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusinessError {
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("tool {tool}: {message}")]
    Tool { tool: String, message: String },
    #[error("flow {flow}: {message}")]
    Flow { flow: String, message: String },
}

/// One HTTP request to the business's systems.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub bearer: Option<String>,
    /// The JSON body (POST).
    pub body: Option<Value>,
    pub timeout: Duration,
}

/// Sends tool requests. The engine does no HTTP itself; the binary supplies a client.
#[async_trait::async_trait]
pub trait HttpTransport: Send + Sync + 'static {
    /// The status and the JSON body, or why there was no answer (connection, timeout, not JSON).
    async fn send(&self, request: HttpRequest) -> Result<(u16, Value), String>;
}

/// A loaded, checked business set-up.
pub struct ToolSet {
    pub business: Business,
    extractors: BTreeMap<String, Vec<(String, Regex)>>,
    transport: std::sync::Arc<dyn HttpTransport>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSet")
            .field("business", &self.business)
            .finish_non_exhaustive()
    }
}

impl ToolSet {
    /// Parses YAML after replacing `${name}` with `vars[name]` (then the environment), and checks every tool and flow.
    pub fn from_yaml(
        text: &str,
        vars: &BTreeMap<String, String>,
        transport: std::sync::Arc<dyn HttpTransport>,
    ) -> Result<ToolSet, BusinessError> {
        let expanded = expand_vars(text, vars);
        let business: Business = serde_yaml_ng::from_str(&expanded)?;
        let mut extractors = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for t in &business.tools {
            let err = |message: String| BusinessError::Tool {
                tool: t.name.clone(),
                message,
            };
            if !names.insert(t.name.clone()) {
                return Err(err("defined twice".into()));
            }
            check_schema(&t.parameters).map_err(err)?;
            let mut ex = Vec::new();
            for (arg, pattern) in &t.extract {
                if t.parameters["properties"].get(arg).is_none() {
                    return Err(err(format!("extract names an unknown argument {arg}")));
                }
                let re = Regex::new(pattern).map_err(|e| err(format!("extract {arg}: {e}")))?;
                ex.push((arg.clone(), re));
            }
            extractors.insert(t.name.clone(), ex);
        }
        for t in &business.tools {
            if let Some(f) = &t.fallback {
                if !names.contains(f) {
                    return Err(BusinessError::Tool {
                        tool: t.name.clone(),
                        message: format!("fallback {f} is not a tool"),
                    });
                }
            }
        }
        if let Some(p) = &business.profile_tool {
            if !names.contains(p) {
                return Err(BusinessError::Tool {
                    tool: p.clone(),
                    message: "profile_tool is not a tool".into(),
                });
            }
        }
        for f in &business.flows {
            f.check(&names).map_err(|message| BusinessError::Flow {
                flow: f.name.clone(),
                message,
            })?;
        }
        Ok(ToolSet {
            business,
            extractors,
            transport,
        })
    }

    pub fn tool(&self, name: &str) -> Option<&ToolDef> {
        self.business.tools.iter().find(|t| t.name == name)
    }

    /// The first read-only tool whose triggers match the message, else the first whose argument rules find a value
    /// in it (a message naming an order number is about that order).
    pub fn triggered(&self, text: &str, intent: Option<&str>) -> Option<&ToolDef> {
        let tools = || self.business.tools.iter().filter(|t| !t.mutating);
        tools()
            .find(|t| t.triggers.matches(text, intent))
            .or_else(|| {
                tools().find(|t| {
                    self.extractors
                        .get(&t.name)
                        .is_some_and(|ex| ex.iter().any(|(_, re)| re.is_match(text)))
                })
            })
    }

    /// Arguments pulled out of the texts by the tool's rules (the first text that has a value wins: pass the
    /// message first, then older customer messages).
    pub fn extract(&self, tool: &ToolDef, texts: &[&str]) -> Map<String, Value> {
        let mut args = Map::new();
        for (arg, re) in self.extractors.get(&tool.name).into_iter().flatten() {
            let found = texts.iter().find_map(|t| {
                re.captures(t).map(|c| {
                    c.get(1)
                        .or_else(|| c.get(0))
                        .map_or("", |m| m.as_str())
                        .to_owned()
                })
            });
            if let Some(v) = found {
                let v = match tool.parameters["properties"][arg]["type"].as_str() {
                    Some("integer") => v
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(Value::String(v)),
                    _ => Value::String(v),
                };
                args.insert(arg.clone(), v);
            }
        }
        args
    }

    /// Calls the tool with validated arguments for this customer.
    pub async fn call(
        &self,
        tool: &ToolDef,
        args: &Map<String, Value>,
        customer: &str,
    ) -> ToolResult {
        let started = Instant::now();
        let outcome = self.call_inner(tool, args, customer).await;
        ToolResult {
            name: tool.name.clone(),
            arguments: Value::Object(args.clone()),
            outcome,
            ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    }

    async fn call_inner(
        &self,
        tool: &ToolDef,
        args: &Map<String, Value>,
        customer: &str,
    ) -> Result<Value, ToolError> {
        validate(&tool.parameters, &Value::Object(args.clone())).map_err(ToolError::Invalid)?;
        let request = HttpRequest {
            method: tool.http.method,
            url: fill_url(&tool.http.url, args, customer),
            bearer: tool.http.bearer.clone(),
            body: (tool.http.method == Method::Post).then(|| Value::Object(args.clone())),
            timeout: Duration::from_millis(tool.http.timeout_ms),
        };
        let (status, body) = self
            .transport
            .send(request)
            .await
            .map_err(ToolError::Unavailable)?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            let code = body["error"]["code"].as_str().unwrap_or("error").to_owned();
            let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
            Err(ToolError::Refused {
                status,
                code,
                message,
            })
        }
    }
}

/// One call and what came back.
#[derive(Debug, Clone)]
pub struct ToolResult {
    pub name: String,
    pub arguments: Value,
    pub outcome: Result<Value, ToolError>,
    pub ms: f64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ToolError {
    #[error("invalid arguments: {0}")]
    Invalid(String),
    #[error("the system said {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the system is unavailable: {0}")]
    Unavailable(String),
}

impl ToolError {
    /// A stable code for traces.
    pub fn code(&self) -> &str {
        match self {
            ToolError::Invalid(_) => "invalid_arguments",
            ToolError::Refused { code, .. } => code,
            ToolError::Unavailable(_) => "unavailable",
        }
    }
}

/// A configured pattern (argument schemas, flow slots), compiled once per process: validation and slot filling
/// run on every turn, the patterns come from a few configuration files.
pub(crate) fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    static CACHE: std::sync::OnceLock<
        parking_lot::Mutex<std::collections::HashMap<String, Regex>>,
    > = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().get(pattern) {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)?;
    cache.lock().insert(pattern.to_owned(), re.clone());
    Ok(re)
}

/// `${name}` → `vars[name]`, else the environment variable, else left as is (and the load fails later if it
/// matters, e.g. an unreachable URL).
fn expand_vars(text: &str, vars: &BTreeMap<String, String>) -> String {
    static VAR: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = VAR.get_or_init(|| Regex::new(r"\$\{([A-Za-z0-9_]+)\}").expect("valid"));
    re.replace_all(text, |c: &regex::Captures<'_>| {
        let name = &c[1];
        vars.get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .unwrap_or_else(|| c[0].to_owned())
    })
    .into_owned()
}

fn fill_url(template: &str, args: &Map<String, Value>, customer: &str) -> String {
    let mut url = template.replace("{customer}", &encode(customer));
    for (k, v) in args {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        url = url.replace(&format!("{{{k}}}"), &encode(&v));
    }
    url
}

/// Percent-encodes everything but letters, digits, `-`, `_` and `~` (dots too, so `..` cannot climb a segment):
/// an argument cannot add a path segment or a query.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const SCHEMA_KEYS: &[&str] = &[
    "type",
    "properties",
    "required",
    "description",
    "pattern",
    "enum",
    "maxLength",
    "minLength",
    "additionalProperties",
];

/// Checks that a schema uses only the subset [`validate`] enforces.
fn check_schema(schema: &Value) -> Result<(), String> {
    fn check(s: &Value, top: bool) -> Result<(), String> {
        let obj = s.as_object().ok_or("a schema must be an object")?;
        if let Some(k) = obj.keys().find(|k| !SCHEMA_KEYS.contains(&k.as_str())) {
            return Err(format!("unsupported schema keyword {k}"));
        }
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "object" if top => {
                for p in obj
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    check(p.1, false)?;
                }
                Ok(())
            }
            "string" => {
                if let Some(p) = obj.get("pattern") {
                    compiled(p.as_str().ok_or("pattern must be a string")?)
                        .map_err(|e| format!("bad pattern: {e}"))?;
                }
                Ok(())
            }
            "integer" | "number" | "boolean" => Ok(()),
            other => Err(format!("unsupported type {other:?}")),
        }
    }
    check(schema, true)
}

/// Validates arguments against a schema of the supported subset.
pub fn validate(schema: &Value, args: &Value) -> Result<(), String> {
    let obj = args.as_object().ok_or("arguments must be an object")?;
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for req in schema["required"].as_array().into_iter().flatten() {
        let name = req.as_str().unwrap_or_default();
        if !obj.contains_key(name) {
            return Err(format!("{name} is required"));
        }
    }
    for (k, v) in obj {
        let Some(p) = props.get(k) else {
            return Err(format!("unknown argument {k}"));
        };
        let ok = match p["type"].as_str().unwrap_or("") {
            "string" => {
                let Some(s) = v.as_str() else {
                    return Err(format!("{k} must be a string"));
                };
                let n = s.chars().count() as u64;
                if p["maxLength"].as_u64().is_some_and(|m| n > m)
                    || p["minLength"].as_u64().is_some_and(|m| n < m)
                {
                    return Err(format!("{k} has the wrong length"));
                }
                if let Some(pat) = p["pattern"].as_str() {
                    let re = compiled(pat).map_err(|e| e.to_string())?;
                    if !re.is_match(s) {
                        return Err(format!("{k} does not match {pat}"));
                    }
                }
                true
            }
            "integer" => v.as_i64().is_some(),
            "number" => v.as_f64().is_some(),
            "boolean" => v.as_bool().is_some(),
            _ => false,
        };
        if !ok {
            return Err(format!("{k} has the wrong type"));
        }
        if let Some(allowed) = p["enum"].as_array() {
            if !allowed.contains(v) {
                return Err(format!("{k} is not one of the allowed values"));
            }
        }
    }
    Ok(())
}

/// The JSON schema handed to a model to fill a tool's arguments.
pub fn model_schema(tool: &ToolDef) -> Value {
    let mut s = tool.parameters.clone();
    s["additionalProperties"] = Value::Bool(false);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const YAML: &str = r#"
tools:
  - name: get_order
    description: One order with its items and shipment.
    parameters:
      type: object
      properties:
        order_id: {type: string, pattern: "^KF[0-9]{8}$"}
      required: [order_id]
    http: {method: GET, url: "${base}/customers/{customer}/orders/{order_id}", bearer: "${token}"}
    triggers: {keywords: [物流, 快递, where is my order]}
    extract: {order_id: "(?i)\\b(KF\\d{8})\\b"}
    fallback: list_orders
  - name: list_orders
    description: The customer's orders.
    http: {method: GET, url: "${base}/customers/{customer}/orders"}
"#;

    struct NoNetwork;

    #[async_trait::async_trait]
    impl HttpTransport for NoNetwork {
        async fn send(&self, _: HttpRequest) -> Result<(u16, Value), String> {
            Err("no network in unit tests".into())
        }
    }

    fn load(yaml: &str) -> Result<ToolSet, BusinessError> {
        ToolSet::from_yaml(yaml, &vars(), std::sync::Arc::new(NoNetwork))
    }

    fn vars() -> BTreeMap<String, String> {
        [("base", "http://x"), ("token", "t")]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect()
    }

    #[test]
    fn loads_triggers_and_extracts_rules_first() {
        let set = load(YAML).unwrap();
        let t = set.triggered("我的快递到哪了", None).unwrap();
        assert_eq!(t.name, "get_order");
        assert_eq!(t.http.bearer.as_deref(), Some("t"));
        assert!(set.triggered("你好", None).is_none());
        // Naming an order is enough.
        assert_eq!(
            set.triggered("status of KF20261112?", None).unwrap().name,
            "get_order"
        );
        let args = set.extract(t, &["查一下 kf20261108 的物流", "KF20261101"]);
        assert_eq!(args["order_id"], "kf20261108");
        // The newest text with a value wins; none → empty.
        assert!(set.extract(t, &["where is my order"]).is_empty());
    }

    #[test]
    fn bad_definitions_are_rejected_with_the_tool_named() {
        let bad_kw = YAML.replace("pattern:", "format:");
        let e = load(&bad_kw).unwrap_err().to_string();
        assert!(e.contains("get_order") && e.contains("format"), "{e}");
        let bad_fb = YAML.replace("fallback: list_orders", "fallback: nope");
        assert!(load(&bad_fb).is_err());
        let twice = format!(
            "{YAML}{}",
            &YAML[YAML.find("  - name: list_orders").unwrap()..]
        );
        assert!(load(&twice).unwrap_err().to_string().contains("twice"));
        assert!(load("tools: [{name: x}]").is_err());
    }

    #[test]
    fn validation_enforces_the_schema() {
        let set = load(YAML).unwrap();
        let schema = &set.tool("get_order").unwrap().parameters;
        assert!(validate(schema, &json!({"order_id": "KF20261101"})).is_ok());
        assert!(validate(schema, &json!({}))
            .unwrap_err()
            .contains("required"));
        assert!(validate(schema, &json!({"order_id": "KF1"})).is_err());
        assert!(validate(schema, &json!({"order_id": 5})).is_err());
        assert!(validate(schema, &json!({"order_id": "KF20261101", "x": 1})).is_err());
    }

    #[test]
    fn urls_encode_arguments_so_they_cannot_change_the_path() {
        let mut args = Map::new();
        args.insert("order_id".into(), json!("../../customers/C1002?x=1"));
        let url = fill_url(
            "http://s/customers/{customer}/orders/{order_id}",
            &args,
            "C1001",
        );
        assert_eq!(
            url,
            "http://s/customers/C1001/orders/%2E%2E%2F%2E%2E%2Fcustomers%2FC1002%3Fx%3D1"
        );
    }
}
