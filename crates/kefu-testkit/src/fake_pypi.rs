//! A PyPI *simple* index on `127.0.0.1:0` serving small wheels built on the fly, for testing `kefu model pull`:
//! Range requests, a download that breaks mid-way, a failing file, an index that advertises a wrong checksum.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Inner {
    /// normalised package name → wheel file names
    packages: HashMap<String, Vec<String>>,
    files: HashMap<String, Vec<u8>>,
    wrong_hash: HashSet<String>,
    break_once: HashMap<String, usize>,
    failing: HashSet<String>,
    /// (path, Range header)
    log: Vec<(String, Option<String>)>,
}

#[derive(Clone)]
pub struct FakePypi {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakePypi {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/simple/{package}/", get(page))
            .route("/files/{name}", get(file))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    pub fn index_url(&self) -> String {
        format!("http://{}/simple", self.addr)
    }

    /// Builds a wheel for `package==version` holding `members` and lists it in the index. Returns its file name.
    pub fn add_wheel(&self, package: &str, version: &str, members: &[(&str, &[u8])]) -> String {
        let filename = format!("{}-{version}-py3-none-any.whl", package.replace('-', "_"));
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (name, data) in members {
                z.start_file(*name, opts).unwrap();
                z.write_all(data).unwrap();
            }
            z.start_file(
                format!("{}-{version}.dist-info/METADATA", package.replace('-', "_")),
                opts,
            )
            .unwrap();
            z.write_all(format!("Name: {package}\nVersion: {version}\n").as_bytes())
                .unwrap();
            z.finish().unwrap();
        }
        let mut g = self.inner.lock();
        g.packages
            .entry(kefu_models::normalise_name(package))
            .or_default()
            .push(filename.clone());
        g.files.insert(filename.clone(), buf.into_inner());
        filename
    }

    /// The index advertises a checksum that does not match the file.
    pub fn advertise_wrong_hash(&self, filename: &str) {
        self.inner.lock().wrong_hash.insert(filename.to_owned());
    }

    /// The next download of `filename` sends `bytes` bytes and then drops the connection.
    pub fn break_once(&self, filename: &str, bytes: usize) {
        self.inner
            .lock()
            .break_once
            .insert(filename.to_owned(), bytes);
    }

    /// Downloads of `filename` answer 500 until `fail(…, false)`.
    pub fn fail(&self, filename: &str, failing: bool) {
        let mut g = self.inner.lock();
        if failing {
            g.failing.insert(filename.to_owned());
        } else {
            g.failing.remove(filename);
        }
    }

    /// Every request so far: (path, Range header).
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.inner.lock().log.clone()
    }
}

async fn page(State(inner): State<Arc<Mutex<Inner>>>, Path(package): Path<String>) -> Response {
    let mut g = inner.lock();
    g.log.push((format!("/simple/{package}/"), None));
    let Some(files) = g.packages.get(&kefu_models::normalise_name(&package)) else {
        return (StatusCode::NOT_FOUND, "no such project").into_response();
    };
    let mut html = String::from("<!DOCTYPE html><html><body>\n");
    for f in files {
        let data = &g.files[f];
        let sha = if g.wrong_hash.contains(f) {
            "0".repeat(64)
        } else {
            hex::encode(Sha256::digest(data))
        };
        html.push_str(&format!(
            "<a href=\"../../files/{f}#sha256={sha}\">{f}</a><br/>\n"
        ));
    }
    html.push_str("</body></html>");
    Html(html).into_response()
}

async fn file(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (data, cut) = {
        let mut g = inner.lock();
        g.log.push((format!("/files/{name}"), range.clone()));
        if g.failing.contains(&name) {
            return (StatusCode::INTERNAL_SERVER_ERROR, "scripted failure").into_response();
        }
        let Some(data) = g.files.get(&name).cloned() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        (data, g.break_once.remove(&name))
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    if start >= data.len() && start > 0 {
        return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    }
    let body = data[start..].to_vec();
    let status = if start > 0 {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    match cut {
        Some(n) => {
            let first = Bytes::from(body[..n.min(body.len())].to_vec());
            // Let the first bytes reach the client before the connection is dropped.
            let stream =
                futures::stream::iter(vec![Ok(first)]).chain(futures::stream::once(async {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    Err(std::io::Error::other("scripted break"))
                }));
            Response::builder()
                .status(status)
                .header("content-length", body.len())
                .body(Body::from_stream(stream))
                .unwrap()
        }
        None => Response::builder()
            .status(status)
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap(),
    }
}
