//! Request metrics: `communication_http_requests_total{method, route, status}` and
//! `communication_http_request_seconds{method, route}`. The route is the matched pattern
//! (`/v1/messages/{id}`), never the raw path, so ids do not explode the label space.
//!
//! The handles of each (route, method, status) are looked up in the recorder once and kept
//! here, so a request records with no label strings to build and no registry lookup.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};

/// Label for requests that matched no route (the 404 fallback).
pub const UNMATCHED: &str = "unmatched";

/// One route's handles per method (and status). The routes are a fixed set (matched
/// patterns), and so are the methods and statuses they answer with.
#[derive(Default)]
struct RouteHandles {
    durations: Vec<(Method, Histogram)>,
    counts: Vec<(Method, StatusCode, Counter)>,
}

static HANDLES: LazyLock<RwLock<HashMap<String, RouteHandles>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

fn cached(route: &str, method: &Method, status: StatusCode) -> Option<(Histogram, Counter)> {
    let handles = HANDLES.read().unwrap_or_else(|p| p.into_inner());
    let route = handles.get(route)?;
    let duration = route.durations.iter().find(|(m, _)| m == method)?.1.clone();
    let count = route
        .counts
        .iter()
        .find(|(m, s, _)| m == method && *s == status)?
        .2
        .clone();
    Some((duration, count))
}

fn register(route: &str, method: &Method, status: StatusCode) -> (Histogram, Counter) {
    let mut handles = HANDLES.write().unwrap_or_else(|p| p.into_inner());
    let entry = handles.entry(route.to_owned()).or_default();
    let duration = match entry.durations.iter().find(|(m, _)| m == method) {
        Some((_, h)) => h.clone(),
        None => {
            let h = metrics::histogram!(
                "communication_http_request_seconds",
                "method" => method.as_str().to_owned(),
                "route" => route.to_owned(),
            );
            entry.durations.push((method.clone(), h.clone()));
            h
        }
    };
    let count = match entry
        .counts
        .iter()
        .find(|(m, s, _)| m == method && *s == status)
    {
        Some((_, _, c)) => c.clone(),
        None => {
            let c = metrics::counter!(
                "communication_http_requests_total",
                "method" => method.as_str().to_owned(),
                "route" => route.to_owned(),
                "status" => status.as_u16().to_string(),
            );
            entry.counts.push((method.clone(), status, c.clone()));
            c
        }
    };
    (duration, count)
}

pub async fn record(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let status = response.status();
    let (duration, count) =
        cached(route, &method, status).unwrap_or_else(|| register(route, &method, status));
    duration.record(started.elapsed().as_secs_f64());
    count.increment(1);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_registered_once_per_route_method_and_status_and_record() {
        let exporter = crate::telemetry::metrics_handle();
        let route = "/test/http-metrics/{id}";
        assert!(cached(route, &Method::GET, StatusCode::OK).is_none());
        let (duration, count) = register(route, &Method::GET, StatusCode::OK);
        duration.record(0.01);
        count.increment(2);
        let (_, again) = cached(route, &Method::GET, StatusCode::OK).expect("cached");
        again.increment(1);
        assert!(cached(route, &Method::GET, StatusCode::NOT_FOUND).is_none());
        assert!(cached(route, &Method::POST, StatusCode::OK).is_none());
        let (_, not_found) = register(route, &Method::GET, StatusCode::NOT_FOUND);
        not_found.increment(1);
        {
            let handles = HANDLES.read().expect("lock");
            let entry = handles.get(route).expect("route");
            assert_eq!(entry.durations.len(), 1, "one histogram per method");
            assert_eq!(entry.counts.len(), 2, "one counter per status");
        }
        let text = exporter.render();
        let line = |status: &str| {
            format!(
                "communication_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"{status}\"}} "
            )
        };
        assert!(text.contains(&format!("{}3", line("200"))), "{text}");
        assert!(text.contains(&format!("{}1", line("404"))), "{text}");
        assert!(
            text.contains(&format!(
                "communication_http_request_seconds_count{{method=\"GET\",route=\"{route}\"}} 1"
            )),
            "{text}"
        );
    }
}
