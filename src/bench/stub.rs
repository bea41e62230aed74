//! A Resend-shaped provider endpoint for the HTTP case: `POST /emails` answers 200
//! `{"id": "bench-<n>"}` at once. It runs on its own thread and single-threaded runtime inside
//! the bench process, so its CPU is the bench's, not the service's; the workers reach it
//! through the operator override `RESEND_BASE_URL`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::sync::oneshot;

/// The running stub; stops when dropped.
pub struct Stub {
    pub base_url: String,
    requests: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stub {
    pub fn start() -> anyhow::Result<Stub> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the stub")?;
        listener.set_nonblocking(true)?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let requests = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let app = Router::new()
            .route("/emails", post(emails))
            .with_state(requests.clone());
        let thread = std::thread::Builder::new()
            .name("bench-stub".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        eprintln!("bench: the provider stub could not listen");
                        return;
                    };
                    let served = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(e) = served.await {
                        eprintln!("bench: the provider stub stopped: {e}");
                    }
                });
            })?;
        Ok(Stub {
            base_url,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `POST /emails` calls answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful shutdown waits for open keep-alive connections; the workers are gone by
        // now, but do not hang the bench on a straggler.
        if let Some(thread) = self.thread.take()
            && thread.is_finished()
        {
            let _ = thread.join();
        }
    }
}

async fn emails(State(requests): State<Arc<AtomicU64>>, _body: Bytes) -> impl IntoResponse {
    let n = requests.fetch_add(1, Ordering::Relaxed);
    (
        [(CONTENT_TYPE, "application/json")],
        format!("{{\"id\":\"bench-{n}\"}}"),
    )
}
