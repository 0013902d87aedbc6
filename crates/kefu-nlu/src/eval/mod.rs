//! Reproducible measurements behind `kefu eval intent|emotion|pii|moderation|language`.

pub mod emotion;
pub mod intent;
pub mod language;
pub mod moderation;
pub mod pii;

pub use pii::{evaluate, Counts, PiiReport};

use std::time::{Duration, Instant};

/// `f`'s result and the milliseconds it took, run after `idle` without work (outside the timing). Zero idle times
/// calls back to back, with the caches and the CPU's vector units warm; a lightly loaded service sees each message
/// after idle time.
pub fn timed_after_idle<T>(idle: Duration, f: impl FnOnce() -> T) -> (T, f64) {
    if !idle.is_zero() {
        std::thread::sleep(idle);
    }
    let t = Instant::now();
    let out = std::hint::black_box(f());
    (out, t.elapsed().as_secs_f64() * 1e3)
}

/// p50, p99 and mean of latencies in ms (sorted here; 0 for none).
pub fn latency_summary(mut ms: Vec<f64>) -> (f64, f64, f64) {
    if ms.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    ms.sort_by(f64::total_cmp);
    let pct = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (
        pct(0.5),
        pct(0.99),
        ms.iter().sum::<f64>() / ms.len() as f64,
    )
}
