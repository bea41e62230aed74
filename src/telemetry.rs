//! Logging and metrics set-up, and the worker's small `/healthz` + `/metrics` listener.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets of every `*_seconds` histogram: 1 ms to 5 minutes (provider calls and accept→sent
/// can take minutes when retries are involved).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Buckets of the writer's batch sizes (rows per statement).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// The process's Prometheus recorder, installed on first use. Histograms are exported as real
/// Prometheus histograms (`_bucket`, `_sum`, `_count`), so they aggregate across replicas.
pub fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("communication_db_batch_size".into()),
                    BATCH_BUCKETS,
                )
            }) {
            Ok(b) => b,
            // Only an empty bucket list fails; fall back to the exporter's summaries.
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Structured logs to stderr for every command (`serve`, `worker`, `all`, …);
/// `COMMUNICATION_LOG_FORMAT=json` for JSON lines, whose `span`/`spans` fields carry the
/// `trace_id` of the send being handled (see `trace_context`). Level from `RUST_LOG`
/// (default `info`). Text logs are coloured only on a terminal (see [`colour_text_logs`]).
pub fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("COMMUNICATION_LOG_FORMAT").is_ok_and(|v| v.trim() == "json");
    let colour = colour_text_logs(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    if json {
        let _ = builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Whether text logs carry ANSI colour codes: only when they go to a terminal, so a file or a
/// pipe (a log shipper, `| grep`) gets plain text; and never when `NO_COLOR` is set to
/// anything non-empty (<https://no-color.org>).
pub fn colour_text_logs(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Serves `GET /healthz`, `GET /readyz` and `GET /metrics` for a worker process (which has no
/// HTTP API) until `shutdown` is cancelled, so its metrics can be scraped and its liveness and
/// readiness probed. Ready means: consuming from RabbitMQ (`consuming`) and Postgres answers.
pub async fn serve_worker_endpoints(
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
    consuming: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pool: sqlx::PgPool,
) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::sync::atomic::Ordering;
    let readyz = move || {
        let consuming = consuming.clone();
        let pool = pool.clone();
        async move {
            let broker = consuming.load(Ordering::Relaxed);
            let database = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                sqlx::query("SELECT 1").execute(&pool),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            let status = if broker && database {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let word = |ok: bool| if ok { "ok" } else { "down" };
            (
                status,
                axum::Json(serde_json::json!({
                    "status": if broker && database { "ready" } else { "not_ready" },
                    "rabbitmq": word(broker),
                    "postgres": word(database),
                })),
            )
        }
    };
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    metrics_handle().render(),
                )
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Installs the one TLS crypto provider (aws-lc-rs) before any TLS client is built.
pub fn init_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::colour_text_logs;
    use std::ffi::OsStr;

    #[test]
    fn text_logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour_text_logs(true, None));
        assert!(colour_text_logs(true, Some(OsStr::new(""))));
        assert!(
            !colour_text_logs(false, None),
            "a file or a pipe gets plain text"
        );
        assert!(!colour_text_logs(true, Some(OsStr::new("1"))));
        assert!(!colour_text_logs(false, Some(OsStr::new("1"))));
    }
}
