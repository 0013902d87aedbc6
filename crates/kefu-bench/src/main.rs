//! Benchmarks against a real `kefu serve` child process, with the scripted fake model answering instantly, so what
//! is measured is kefu's own overhead (HTTP, auth, storage, turn, streaming), not a model's.
//!
//! ```text
//! kefu-bench send    --backend sqlite|postgres --concurrency 1,50,500 --seconds 10 [--interval-ms 2000]
//!                    [--pipeline full|bare]
//! kefu-bench ws-idle --connections 10000
//! kefu-bench local   --model PATH.gguf --threads 1,2 [--parallel 4] [--write-prompt DIR]
//! kefu-bench embed   --model PATH [--sentences bench/data/embed_sentences.txt] [--rounds 3]
//! kefu-bench nlu     [--encoder PATH/e5-small-q4.bin] [--messages 1500] [--gap-ms 0]
//! kefu-bench kb      [--sizes 10000,100000,1000000] [--dim 384] [--queries 200]
//! kefu-bench products [--rows 1,4,8,12,16,32] [--rounds 20]
//! ```
//! Without `--interval-ms` each conversation sends its next message as soon as the reply arrives (closed loop:
//! measures saturation throughput; latency is then mostly queueing). With it, each conversation sends one message
//! every interval (open loop, like customers typing), and latency is measured from the scheduled send time so a
//! stalled server cannot hide its delay (no coordinated omission).
//! `--pipeline full` (the default) runs every turn through the whole engine as the demo ships it: the demo shop's
//! tools and flows, the demo knowledge base, its intent model, the answer cache, moderation and grounding, with a
//! mix of FAQ, knowledge, order and small-talk messages from a signed-in demo customer. Its models answer instantly:
//! chat from the deterministic extractive stand-in of `kefu eval conversations` (a cited first sentence of the top
//! passage, so answers pass the grounding check as a real model's would) and embeddings from the fake server's
//! `/embeddings` as a hosted embedder. What is left is the engine's own time. `--pipeline bare` is the foundation's
//! path (no demo, no knowledge base, no embedder), for comparison with the first rows in bench/RESULTS.md.
//! Run through `cargo xtask bench-api …`, which builds in release mode and raises the open-file limit.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::{json, Value};

use kefu_testkit::FakeLlm;

mod kb;
mod nlu;

struct Server {
    child: Child,
    base: String,
    api_key: String,
    _dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kefu_bin() -> PathBuf {
    std::env::var_os("KEFU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .expect("exe")
                .parent()
                .expect("dir")
                .join("kefu")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Which engine path the benchmark drives (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipeline {
    Full,
    Bare,
}

/// What a conversation's customer says, in turn (offset per conversation): curated FAQ answers, knowledge answers
/// (the second asking of one is an answer-cache hit), order and logistics tools, recommendations and small talk, in
/// Chinese and English. Nothing here asks for a person or sounds upset, so conversations stay with the assistant.
const FULL_MIX: &[&str] = &[
    "退款多久到账？",
    "How long does express delivery take?",
    "订单KF20261108的快递到哪了？",
    "你好",
    "Do you ship to other countries?",
    "可以换货吗？",
    "What's the status of order KF20261115?",
    "有什么配件推荐吗",
];

async fn start_server(fake: &FakeLlm, db_url: &str, pipeline: Pipeline) -> anyhow::Result<Server> {
    let dir =
        std::env::temp_dir().join(format!("kefu-bench-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port();
    let cfg = dir.join("bench.toml");
    let (llm, demo) = match pipeline {
        Pipeline::Bare => (
            format!(
                r#"providers = [{{ name = "fake", base_url = "{}" }}]
chain = [{{ provider = "fake", model = "instant" }}]"#,
                fake.base_url()
            ),
            false,
        ),
        Pipeline::Full => {
            let extractive = kefu::eval_conversations::serve_extractive().await?;
            (
                format!(
                    r#"providers = [{{ name = "extractive", base_url = "http://{extractive}/v1" }}, {{ name = "fake", base_url = "{}" }}]
chain = [{{ provider = "extractive", model = "extractive" }}]
embedder = {{ provider = "fake", model = "bench-embed", dim = {} }}"#,
                    fake.base_url(),
                    kefu_testkit::FAKE_EMBEDDING_DIM
                ),
                true,
            )
        }
    };
    std::fs::write(
        &cfg,
        format!(
            r#"
[server]
bind = "127.0.0.1:{port}"
[database]
url = "{db_url}"
max_connections = 32
[limits]
per_ip_per_minute = 0
per_key_per_minute = 0
[llm]
{llm}
[models]
chat = ""
embedder = ""
auto_pull = false
[demo]
shop = {demo}
[log]
filter = "error"
"#
        ),
    )?;
    let child = Command::new(kefu_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", kefu_bin().display()))?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("server did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let env = std::fs::read_to_string(dir.join("bootstrap.env"))?;
    let api_key = env
        .lines()
        .find_map(|l| l.strip_prefix("KEFU_API_KEY="))
        .context("api key in bootstrap.env")?
        .to_owned();
    Ok(Server {
        child,
        base,
        api_key,
        _dir: dir,
    })
}

/// `n` conversations; with `customer`, all of that demo customer's (the shop's tools answer for them), otherwise
/// each of its own anonymous customer.
async fn create_conversations(
    client: &reqwest::Client,
    s: &Server,
    n: usize,
    tag: &str,
    customer: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let ids = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}/v1/conversations", s.base);
            let key = s.api_key.clone();
            let external = customer.map_or_else(|| format!("{tag}-{i}"), str::to_owned);
            async move {
                let r = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({ "customer_external_id": external }))
                    .send()
                    .await?;
                let v: Value = r.error_for_status()?.json().await?;
                anyhow::Ok(v["id"].as_str().context("id")?.to_owned())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    ids.into_iter().collect()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

async fn bench_send(
    backend: &str,
    concurrency: &[usize],
    seconds: u64,
    interval: Option<Duration>,
    pipeline: Pipeline,
) -> anyhow::Result<()> {
    let fake = FakeLlm::start().await;
    let db_url = match backend {
        "sqlite" => String::new(),
        "postgres" => kefu_testkit::pg::fresh_database().await,
        other => bail!("unknown backend {other}"),
    };
    let server = start_server(&fake, &db_url, pipeline).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let mode = match interval {
        Some(d) => format!("open loop, 1 msg / {} ms / conversation", d.as_millis()),
        None => "closed loop".to_owned(),
    };
    let (customer, mix): (Option<&str>, Vec<String>) = match pipeline {
        Pipeline::Full => (
            Some("C1001"),
            FULL_MIX.iter().map(|m| m.to_string()).collect(),
        ),
        Pipeline::Bare => (None, vec!["订单 {i} 到哪了？".to_owned()]),
    };
    println!("pipeline: {pipeline:?}");
    println!("| backend | load | concurrent conversations | turns/s | p50 ms | p90 ms | p99 ms | max ms | errors |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut sampled = Vec::new();
    let mut measured_from = Vec::new();
    for &c in concurrency {
        let convs = create_conversations(&client, &server, c, &format!("c{c}"), customer).await?;
        // Warm up connections and caches.
        run_load(&client, &server, &convs, Duration::from_secs(1), None, &mix).await;
        let started = chrono::Utc::now();
        let (lat, errors, elapsed) = run_load(
            &client,
            &server,
            &convs,
            Duration::from_secs(seconds),
            interval,
            &mix,
        )
        .await;
        let mut lat = lat;
        lat.sort_unstable();
        println!(
            "| {backend} | {mode} | {c} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {errors} |",
            lat.len() as f64 / elapsed.as_secs_f64(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.90),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0),
        );
        measured_from.extend(std::iter::repeat_n(started, convs.len().min(50)));
        sampled.extend(convs.into_iter().take(50));
    }
    if pipeline == Pipeline::Full {
        print_stages(&client, &server, &sampled, &measured_from).await?;
    }
    Ok(())
}

/// What the engine recorded for the measured turns of the sampled conversations (those after `from`, not the
/// warm-up's): the paths taken, and the engine's own time per turn (the whole turn less the model's generation) with
/// its stages.
async fn print_stages(
    client: &reqwest::Client,
    s: &Server,
    convs: &[String],
    from: &[chrono::DateTime<chrono::Utc>],
) -> anyhow::Result<()> {
    let env = std::fs::read_to_string(s._dir.join("bootstrap.env"))?;
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
            .with_context(|| format!("{k} in bootstrap.env"))
    };
    let login: Value = client
        .post(format!("{}/v1/auth/login", s.base))
        .json(
            &json!({"tenant": var("KEFU_TENANT")?, "email": var("KEFU_ADMIN_EMAIL")?,
                      "password": var("KEFU_ADMIN_PASSWORD")?}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("token")?;
    let mut paths: std::collections::BTreeMap<String, usize> = Default::default();
    let mut stages: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    let mut by_path: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (id, from) in convs.iter().zip(from) {
        let turns: Vec<Value> = client
            .get(format!("{}/v1/conversations/{id}/turns", s.base))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for t in turns {
            let at = t["created_at"]
                .as_str()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
            if at.is_none_or(|at| at < *from) {
                continue;
            }
            let tr = &t["trace"];
            *paths
                .entry(tr["path"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
            let st = &tr["stages"];
            let ms = |k: &str| st[k].as_f64().unwrap_or(0.0);
            let us = |v: f64| (v * 1000.0) as u64;
            stages
                .entry("engine (total − generate)")
                .or_default()
                .push(us(ms("total_ms") - ms("generate_ms")));
            by_path
                .entry(format!(
                    "whole turn, path {}",
                    tr["path"].as_str().unwrap_or("?")
                ))
                .or_default()
                .push(us(ms("total_ms")));
            for k in [
                "understand_ms",
                "retrieve_ms",
                "tools_ms",
                "check_ms",
                "generate_ms",
                "total_ms",
            ] {
                stages.entry(k).or_default().push(us(ms(k)));
            }
        }
    }
    let n: usize = paths.values().sum();
    println!(
        "\nturns sampled: {n}; paths: {}",
        paths
            .iter()
            .map(|(p, c)| format!("{p} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| stage (server side, as recorded per turn) | p50 ms | p90 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    let rows = stages
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(by_path);
    for (k, mut v) in rows {
        v.sort_unstable();
        println!(
            "| {k} | {:.2} | {:.2} | {:.2} |",
            percentile(&v, 0.5),
            percentile(&v, 0.9),
            percentile(&v, 0.99)
        );
    }
    Ok(())
}

/// Each conversation sends messages with `wait=true` (the response returns once the reply is stored): back to back
/// (closed loop), or one per `interval` starting at a spread-out offset (open loop).
async fn run_load(
    client: &reqwest::Client,
    s: &Server,
    convs: &[String],
    dur: Duration,
    interval: Option<Duration>,
    mix: &[String],
) -> (Vec<u64>, usize, Duration) {
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = convs
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let client = client.clone();
            let offset = interval.map(|d| d.mul_f64(n as f64 / convs.len() as f64));
            let url = format!("{}/v1/conversations/{id}/messages?wait=true", s.base);
            let key = s.api_key.clone();
            let mix = mix.to_vec();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                let mut i = 0u64;
                let mut next = offset.map(|o| start + o);
                while Instant::now() < deadline {
                    i += 1;
                    let t = match (next, interval) {
                        (Some(at), Some(every)) => {
                            if at >= deadline {
                                break;
                            }
                            tokio::time::sleep_until(at.into()).await;
                            next = Some(at + every);
                            at
                        }
                        _ => Instant::now(),
                    };
                    let r = client
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json!({
                            "content": mix[(n + i as usize) % mix.len()].replace("{i}", &i.to_string())
                        }))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let ok = r
                                .json::<Value>()
                                .await
                                .map(|v| !v["reply"].is_null())
                                .unwrap_or(false);
                            if ok {
                                lat.push(t.elapsed().as_micros() as u64);
                            } else {
                                errors += 1;
                            }
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("worker");
        all.extend(l);
        errors += e;
    }
    (all, errors, start.elapsed())
}

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

async fn bench_ws_idle(connections: usize) -> anyhow::Result<()> {
    let fake = FakeLlm::start().await;
    let server = start_server(&fake, "", Pipeline::Bare).await?;
    let client = reqwest::Client::new();
    let convs = create_conversations(&client, &server, connections, "ws", None).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = server.child.id();
    let before = rss_kib(pid)?;
    let ws_base = server.base.replace("http://", "ws://");
    let key = Arc::new(server.api_key.clone());
    let t = Instant::now();
    let sockets: Vec<_> = futures::stream::iter(convs.iter().cloned())
        .map(|id| {
            let url = format!("{ws_base}/v1/conversations/{id}/ws?access_token={key}");
            async move {
                tokio_tungstenite::connect_async(url)
                    .await
                    .map(|(ws, _)| ws)
            }
        })
        .buffered(256) // ordered: sockets[i] belongs to convs[i]
        .collect()
        .await;
    let connected = sockets.iter().filter(|s| s.is_ok()).count();
    let open_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;
    // Prove the sockets are live: a message to the first conversation reaches its socket.
    let mut sockets: Vec<_> = sockets.into_iter().filter_map(Result::ok).collect();
    let r = client
        .post(format!(
            "{}/v1/conversations/{}/messages",
            server.base, convs[0]
        ))
        .bearer_auth(server.api_key.as_str())
        .json(&json!({"content": "ping"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 201, "send failed");
    let first = tokio::time::timeout(Duration::from_secs(10), sockets[0].next()).await?;
    anyhow::ensure!(first.is_some(), "no event on the first socket");
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / connected.max(1) as f64;
    println!("| idle WebSockets | connected | open time s | server RSS before MiB | after MiB | per connection KiB |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {connections} | {connected} | {open_secs:.1} | {:.1} | {:.1} | {:.1} |",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per_conn / 1024.0
    );
    drop(sockets);
    Ok(())
}

/// A retrieval-augmented prompt of about 1,000 tokens: persona, eight passages (zh + en), the question.
fn rag_messages(question: &str) -> Vec<kefu_llm::ChatMessage> {
    let passages = [
        "退货政策：自签收之日起七天内，商品未使用且包装完好，可申请无理由退货。定制商品、贴身衣物、生鲜食品不适用七天无理由退货。",
        "Returns: items can be returned within 7 days of delivery if unused and in their original packaging. Custom-made items, underwear and fresh food are excluded.",
        "退款时效：退货商品验收合格后，退款将在1至3个工作日内原路退回。信用卡退款到账时间以发卡行为准，通常为3至7个工作日。",
        "Refunds are issued to the original payment method within 1-3 business days after the returned item passes inspection; card refunds may take 3-7 business days to appear.",
        "运费说明：因质量问题退货，运费由商家承担；无理由退货的运费由买家承担。会员等级为金卡及以上的用户每月享有两次免费退货。",
        "Shipping costs: the shop pays return shipping for defective items; for no-reason returns the customer pays. Gold members and above get two free returns per month.",
        "换货流程：在订单详情页点击申请换货，选择换货原因并上传照片，审核通过后按页面提示寄回商品，新商品将在收到退货后48小时内发出。",
        "Exchanges: open the order page, choose Request exchange, pick a reason and upload photos; after approval send the item back and the replacement ships within 48 hours of receipt.",
    ];
    let mut system = String::from(
        "You are the customer-service assistant of an online shop. Answer only from the passages below, in the \
         customer's language, and cite the passage numbers you used. If the passages do not answer the question, say \
         so and offer a human agent.\n\n",
    );
    for (i, p) in passages.iter().enumerate() {
        system.push_str(&format!("[{}] {p}\n", i + 1));
    }
    // Repeat the passage block once more (as retrieval often returns overlapping chunks), then the rest of what
    // retrieval found, to reach ~1,000 tokens.
    for (i, p) in passages.iter().enumerate() {
        system.push_str(&format!("[{}] {p}\n", i + 9));
    }
    let more = [
        "发票说明：订单完成后可在订单详情页申请电子发票，支持个人和企业抬头，企业抬头需填写纳税人识别号，发票将在3个工作日内发送到邮箱。",
        "Invoices: after an order is completed you can request an electronic invoice on the order page, for a person or a company (with its tax ID); it is emailed within 3 business days.",
        "保修政策：电子产品自签收之日起享受一年保修，人为损坏、进水和私自拆机不在保修范围内，保修期内维修免费并承担往返运费。",
        "Warranty: electronics carry a one-year warranty from delivery; accidental damage, water damage and opened devices are not covered. Repairs under warranty are free, shipping included.",
        "配送时效：现货商品下单后24小时内发货，江浙沪地区次日达，其他地区一般2至4天送达，偏远地区可能需要5至7天。",
        "Delivery: in-stock items ship within 24 hours; next-day delivery in Jiangsu, Zhejiang and Shanghai, 2-4 days elsewhere, 5-7 days for remote areas.",
    ];
    for (i, p) in more.iter().enumerate() {
        system.push_str(&format!("[{}] {p}\n", i + 17));
    }
    vec![
        kefu_llm::ChatMessage::system(system),
        kefu_llm::ChatMessage::user(question),
    ]
}

struct TurnTiming {
    ttft_ms: f64,
    prompt_tokens: u32,
    completion_tokens: u32,
    gen_tok_s: f64,
    text: String,
}

async fn timed_turn(
    chat: &kefu_llm_local::LocalChat,
    messages: Vec<kefu_llm::ChatMessage>,
) -> anyhow::Result<TurnTiming> {
    use kefu_llm::{ChatEvent, ChatModel};
    let req = kefu_llm::ChatRequest {
        messages,
        max_tokens: Some(64),
        ..Default::default()
    };
    let t = Instant::now();
    let mut s = chat.stream(req).await?;
    let mut first = None;
    let mut text = String::new();
    let mut usage = None;
    let mut finish = None;
    while let Some(ev) = s.next().await {
        match ev? {
            ChatEvent::Delta(d) => {
                first.get_or_insert_with(|| t.elapsed());
                text.push_str(&d);
            }
            ChatEvent::Usage(u) => usage = Some(u),
            ChatEvent::Finished(f) => finish = Some(f),
            _ => {}
        }
    }
    let total = t.elapsed();
    let first = first.unwrap_or(total);
    let usage = usage.context("usage")?;
    let gen_secs = (total - first).as_secs_f64();
    Ok(TurnTiming {
        ttft_ms: first.as_secs_f64() * 1000.0,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        // Decodes between the first token and the end: one per token after the first, plus the one whose
        // result was the end-of-turn token when the model stopped by itself (as llama.cpp's own count does).
        gen_tok_s: if gen_secs > 0.0 {
            let stopped = matches!(finish, Some(kefu_llm::FinishReason::Stop));
            f64::from(usage.completion_tokens - u32::from(!stopped).min(usage.completion_tokens))
                / gen_secs
        } else {
            0.0
        },
        text,
    })
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn bench_local(
    model: &str,
    threads: &[usize],
    parallel: usize,
    write_prompt: Option<&str>,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    let name = std::path::Path::new(model)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut turn_rows = Vec::new();
    let mut concurrent_rows = Vec::new();
    for &th in threads {
        let mut cfg = kefu_llm_local::LocalConfig::new(model);
        cfg.threads = Some(th);
        cfg.parallel = parallel;
        let chat = kefu_llm_local::LocalChat::load(cfg).await?;
        let mut messages = rag_messages("我买的鞋子尺码不对，可以退货吗？运费谁出？");
        if let Some(dir) = write_prompt {
            // The turn-1 prompt, for the reference runner (bench/llama-reference).
            std::fs::write(format!("{dir}/system.txt"), &messages[0].content)?;
            std::fs::write(format!("{dir}/user.txt"), &messages[1].content)?;
        }
        let followups = [
            "退款多久能到账？",
            "And if I paid by credit card, how long does it take?",
        ];
        for turn in 1..=3 {
            let decoded_before = chat.stats().decoded_prompt_tokens.load(Ordering::Relaxed);
            let t = timed_turn(&chat, messages.clone()).await?;
            let decoded =
                chat.stats().decoded_prompt_tokens.load(Ordering::Relaxed) - decoded_before;
            turn_rows.push(format!(
                "| {name} | {th} | {turn} | {} | {decoded} | {:.0} | {:.1} | {:.1} |",
                t.prompt_tokens,
                t.ttft_ms,
                decoded as f64 / (t.ttft_ms / 1000.0),
                t.gen_tok_s
            ));
            messages.push(kefu_llm::ChatMessage::assistant(t.text));
            if turn < 3 {
                messages.push(kefu_llm::ChatMessage::user(followups[turn - 1]));
            }
        }

        // Four conversations at once on the same model. Warm the shared system prefix first, as a running server
        // would have it.
        timed_turn(&chat, rag_messages("你好")).await?;
        // Questions with long answers, so generation (what batching speeds up) dominates the wall time.
        let questions = [
            "请详细列出退货的全部步骤和注意事项。",
            "Explain in detail every step of returning an item and getting a refund.",
            "请详细说明运费、发货时间和配送方式。",
            "Describe in detail the shipping options, costs and delivery times.",
        ];
        let t = Instant::now();
        let turns =
            futures::future::join_all(questions.iter().map(|q| timed_turn(&chat, rag_messages(q))))
                .await
                .into_iter()
                .collect::<anyhow::Result<Vec<_>>>()?;
        let wall = t.elapsed().as_secs_f64();
        let tokens: u32 = turns.iter().map(|t| t.completion_tokens).sum();
        concurrent_rows.push(format!(
            "| {name} | {th} | {parallel} | {} | {tokens} | {wall:.1} | {:.1} | {:.0} |",
            questions.len(),
            f64::from(tokens) / wall,
            turns.iter().map(|t| t.ttft_ms).sum::<f64>() / turns.len() as f64
        ));
    }
    println!("| model | threads | turn | prompt tokens | decoded (not reused) | time to first token ms | prompt tok/s | generation tok/s |");
    println!("|---|---|---|---|---|---|---|---|");
    turn_rows.iter().for_each(|r| println!("{r}"));
    println!("\n| model | threads | parallel sequences | concurrent conversations | completion tokens | wall s | aggregate generation tok/s | mean time to first token ms |");
    println!("|---|---|---|---|---|---|---|---|");
    concurrent_rows.iter().for_each(|r| println!("{r}"));
    println!(
        "\npeak RSS of the benchmark process: {:.0} MiB",
        peak_rss_mib()
    );
    Ok(())
}

/// The local encoders' int8 products on every kernel path this CPU has (AMX, AVX512-VNNI, AVX-512, AVX2), one
/// thread, one 384-wide layer's projections, in billions of multiply-adds per second per row count: the paths side by
/// side on one host, in one run.
fn bench_products(rows: &[usize], rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        !rows.is_empty() && rows.iter().all(|&r| r > 0) && rounds > 0,
        "--rows needs counts above 0 and --rounds at least 1"
    );
    let speeds = kefu_embed_local::product_speed(rows, rounds);
    println!("int8 products, one 384-wide layer (qkv 1152x384, output 384x384, feed-forward 1536x384 and 384x1536), one thread, best of {rounds} rounds; GMAC/s");
    println!(
        "| weights | kernel | {} |",
        rows.iter()
            .map(|&r| format!("{r} row{}", if r == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}", "---:|".repeat(rows.len()));
    for line in speeds.chunks(rows.len()) {
        println!(
            "| {} | {} | {} |",
            line[0].weights,
            line[0].kernel,
            line.iter()
                .map(|s| format!("{:.1}", s.gmacs))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(())
}

/// Embedding throughput of a local encoder: one sentence per call (what a customer's question costs) and batches
/// of 32 (what ingestion does). Thread count follows `RAYON_NUM_THREADS` (default: all cores). `precision` applies to
/// a BERT directory (MiniLM).
async fn bench_embed(
    model: &str,
    precision: kefu_embed_local::Precision,
    sentences: &str,
    rounds: usize,
) -> anyhow::Result<()> {
    use kefu_llm::{EmbedKind, Embedder};
    let texts: Vec<String> = std::fs::read_to_string(sentences)
        .with_context(|| format!("reading {sentences}"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let t = Instant::now();
    let path = model.to_owned();
    let embedder = tokio::task::spawn_blocking(move || {
        kefu_embed_local::LocalEmbedder::load_with(path, "bench", precision)
    })
    .await??;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let tokens: usize = texts
        .iter()
        .map(|s| embedder.token_count(EmbedKind::Passage, s))
        .sum::<Result<usize, _>>()?;
    // Warm-up (first-touch allocations).
    embedder.embed(EmbedKind::Query, &texts[..4]).await?;
    let t = Instant::now();
    for _ in 0..rounds {
        for s in &texts {
            embedder
                .embed(EmbedKind::Query, std::slice::from_ref(s))
                .await?;
        }
    }
    let single = (rounds * texts.len()) as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..rounds {
        for batch in texts.chunks(32) {
            embedder.embed(EmbedKind::Passage, batch).await?;
        }
    }
    let batched = (rounds * texts.len()) as f64 / t.elapsed().as_secs_f64();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    println!("| model | weights | threads | load ms | sentences | mean tokens | single sentences/s | batch-32 sentences/s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let weights = match kefu_embed_local::Format::detect(std::path::Path::new(model)) {
        kefu_embed_local::Format::E5Packed => "4-bit".to_owned(),
        kefu_embed_local::Format::BertDir | kefu_embed_local::Format::GemmaDir => {
            format!("{precision:?}")
        }
    };
    println!(
        "| {} | {weights} | {threads} | {load_ms:.0} | {} | {:.1} | {single:.1} | {batched:.1} | {:.0} |",
        std::path::Path::new(model)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        texts.len(),
        tokens as f64 / texts.len() as f64,
        peak_rss_mib()
    );
    Ok(())
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// A comma-separated list of counts (`--concurrency 1,50,500`), or `default` when the flag is absent.
fn counts(args: &[String], name: &str, default: &str) -> anyhow::Result<Vec<usize>> {
    arg(args, name)
        .unwrap_or(default)
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .with_context(|| format!("{name}: {c:?} is not a count"))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("send") => {
            let backend = arg(&args, "--backend").unwrap_or("sqlite");
            let conc = counts(&args, "--concurrency", "1,50,500")?;
            let secs = arg(&args, "--seconds").unwrap_or("10").parse()?;
            let interval = arg(&args, "--interval-ms").map(|v| v.parse().map(Duration::from_millis)).transpose()?;
            let pipeline = match arg(&args, "--pipeline").unwrap_or("full") {
                "full" => Pipeline::Full,
                "bare" => Pipeline::Bare,
                other => bail!("--pipeline {other}: full or bare"),
            };
            bench_send(backend, &conc, secs, interval, pipeline).await
        }
        Some("local") => {
            let model = arg(&args, "--model").context("--model PATH.gguf")?;
            let threads = counts(&args, "--threads", "1,2")?;
            let parallel = arg(&args, "--parallel").unwrap_or("4").parse()?;
            bench_local(model, &threads, parallel, arg(&args, "--write-prompt")).await
        }
        Some("embed") => {
            let model = arg(&args, "--model").context("--model PATH (e5 .bin file or MiniLM directory)")?;
            let sentences = arg(&args, "--sentences").unwrap_or("bench/data/embed_sentences.txt");
            let precision = match arg(&args, "--weights").unwrap_or("int8") {
                "int8" => kefu_embed_local::Precision::Int8,
                "f32" => kefu_embed_local::Precision::F32,
                other => bail!("--weights int8|f32, not {other:?}"),
            };
            bench_embed(model, precision, sentences, arg(&args, "--rounds").unwrap_or("3").parse()?).await
        }
        Some("products") => {
            let rows = counts(&args, "--rows", "1,4,8,12,16,32")?;
            bench_products(&rows, arg(&args, "--rounds").unwrap_or("20").parse()?)
        }
        Some("nlu") => nlu::bench_nlu(
            arg(&args, "--encoder"),
            arg(&args, "--messages").unwrap_or("1500").parse()?,
            Duration::from_millis(arg(&args, "--gap-ms").unwrap_or("0").parse()?),
        ),
        Some("kb") => {
            let sizes = counts(&args, "--sizes", "10000,100000,1000000")?;
            kb::run(&sizes, arg(&args, "--dim").unwrap_or("384").parse()?, arg(&args, "--queries").unwrap_or("200").parse()?)
        }
        Some("ws-idle") => bench_ws_idle(arg(&args, "--connections").unwrap_or("10000").parse()?).await,
        _ => bail!("usage: kefu-bench send [--backend sqlite|postgres] [--concurrency 1,50,500] [--seconds 10] | ws-idle [--connections 10000] | local --model PATH.gguf [--threads 1,2] | embed --model PATH [--weights int8|f32] [--sentences FILE] [--rounds 3] | kb [--sizes 10000,100000,1000000] [--dim 384] [--queries 200] | nlu [--encoder PATH] [--messages 1500] [--gap-ms 0] | products [--rows 1,4,8,12,16,32] [--rounds 20]"),
    }
}
