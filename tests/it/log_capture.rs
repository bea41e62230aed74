//! One log capture for the whole test binary: the first test that asks for it installs a
//! JSON subscriber at DEBUG for every crate, writing into memory. Tests that read logs filter
//! them (by message id) or search all of them (for secrets that must never appear).

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(m) = LOGS.get()
            && let Ok(mut v) = m.lock()
        {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capture (once per process; later calls do nothing).
pub fn install() {
    LOGS.get_or_init(|| Mutex::new(Vec::new()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(|| Capture)
        .try_init();
}

/// Everything captured so far, one JSON object per line.
pub fn text() -> String {
    LOGS.get()
        .and_then(|m| {
            m.lock()
                .ok()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        })
        .unwrap_or_default()
}
