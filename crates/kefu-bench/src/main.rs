//! Benchmarks against a real `kefu serve` child process, with the scripted fake model answering instantly, so what
//! is measured is kefu's own overhead (HTTP, auth, storage, turn, streaming), not a model's.
//!
//! ```text
//! kefu-bench send    --backend sqlite|postgres --concurrency 1,50,500 --seconds 10 [--interval-ms 2000]
//! kefu-bench ws-idle --connections 10000
//! ```
//! Without `--interval-ms` each conversation sends its next message as soon as the reply arrives (closed loop:
//! measures saturation throughput; latency is then mostly queueing). With it, each conversation sends one message
//! every interval (open loop, like customers typing), and latency is measured from the scheduled send time so a
//! stalled server cannot hide its delay (no coordinated omission).
//! Run through `cargo xtask bench-api …`, which builds in release mode and raises the open-file limit.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::{json, Value};

use kefu_testkit::FakeLlm;

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

async fn start_server(fake: &FakeLlm, db_url: &str) -> anyhow::Result<Server> {
    let dir =
        std::env::temp_dir().join(format!("kefu-bench-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port();
    let cfg = dir.join("bench.toml");
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
providers = [{{ name = "fake", base_url = "{}" }}]
chain = [{{ provider = "fake", model = "instant" }}]
[log]
filter = "error"
"#,
            fake.base_url()
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

async fn create_conversations(
    client: &reqwest::Client,
    s: &Server,
    n: usize,
    tag: &str,
) -> anyhow::Result<Vec<String>> {
    let ids = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}/v1/conversations", s.base);
            let key = s.api_key.clone();
            let tag = tag.to_owned();
            async move {
                let r = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({ "customer_external_id": format!("{tag}-{i}") }))
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
) -> anyhow::Result<()> {
    let fake = FakeLlm::start().await;
    let db_url = match backend {
        "sqlite" => String::new(),
        "postgres" => kefu_testkit::pg::fresh_database().await,
        other => bail!("unknown backend {other}"),
    };
    let server = start_server(&fake, &db_url).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let mode = match interval {
        Some(d) => format!("open loop, 1 msg / {} ms / conversation", d.as_millis()),
        None => "closed loop".to_owned(),
    };
    println!("| backend | load | concurrent conversations | turns/s | p50 ms | p90 ms | p99 ms | max ms | errors |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &c in concurrency {
        let convs = create_conversations(&client, &server, c, &format!("c{c}")).await?;
        // Warm up connections and caches.
        run_load(&client, &server, &convs, Duration::from_secs(1), None).await;
        let (lat, errors, elapsed) = run_load(
            &client,
            &server,
            &convs,
            Duration::from_secs(seconds),
            interval,
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
                        .json(&json!({ "content": format!("订单 {i} 到哪了？") }))
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

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
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
    let server = start_server(&fake, "").await?;
    let client = reqwest::Client::new();
    let convs = create_conversations(&client, &server, connections, "ws").await?;
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

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("send") => {
            let backend = arg(&args, "--backend").unwrap_or("sqlite");
            let conc: Vec<usize> = arg(&args, "--concurrency")
                .unwrap_or("1,50,500")
                .split(',')
                .map(|c| c.trim().parse())
                .collect::<Result<_, _>>()?;
            let secs = arg(&args, "--seconds").unwrap_or("10").parse()?;
            let interval = arg(&args, "--interval-ms").map(|v| v.parse().map(Duration::from_millis)).transpose()?;
            bench_send(backend, &conc, secs, interval).await
        }
        Some("ws-idle") => bench_ws_idle(arg(&args, "--connections").unwrap_or("10000").parse()?).await,
        _ => bail!("usage: kefu-bench send [--backend sqlite|postgres] [--concurrency 1,50,500] [--seconds 10] | ws-idle [--connections 10000]"),
    }
}
