//! `/dashboard/`: the tenants' settings page, a single-page app built from `dashboard/` (Vite)
//! into `dashboard/dist/` and embedded in the binary (release builds embed the files at
//! compile time; debug builds read them from disk, so a rebuilt page shows without a
//! recompile). The page is a client of the public `/v1` API only.
//!
//! What this module owns: content types, caching (hashed files under `assets/` are
//! immutable for a year, everything else is revalidated), the single-page-app fallback
//! (unknown paths serve `index.html`), a strict Content-Security-Policy with the other
//! security headers on every response, and a short page saying how to build the files when
//! they are absent (so `cargo build` and `cargo test` need no Node).
//!
//! Not part of the JSON API, so not in the OpenAPI document.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the page lives.
pub const MOUNT: &str = "/dashboard";

/// Sent with every dashboard response: scripts, styles and connections only from this
/// origin, no inline code, no framing, no forms posting anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

/// Hashed build output (Vite's `assetsDir`): safe to cache for good.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else (`index.html` above all) is revalidated on each use.
const REVALIDATE: &str = "no-cache";

/// Where the dashboard's files come from: the embedded build, or (in tests) a fixed set.
pub trait AssetSource: Send + Sync + 'static {
    /// The file at `path` (relative to `dist/`, no leading slash), if there is one.
    fn file(&self, path: &str) -> Option<Cow<'static, [u8]>>;
}

#[derive(rust_embed::Embed)]
#[folder = "dashboard/dist/"]
#[allow_missing = true]
struct BuiltFiles;

/// The files of `dashboard/dist/` as built when the binary was compiled (release), or as on
/// disk now (debug). Empty when the page was never built.
pub struct EmbeddedAssets;

impl AssetSource for EmbeddedAssets {
    fn file(&self, path: &str) -> Option<Cow<'static, [u8]>> {
        <BuiltFiles as rust_embed::Embed>::get(path).map(|f| f.data)
    }
}

/// A fixed set of files held in memory, e.g. for tests.
#[derive(Debug, Default, Clone)]
pub struct StaticAssets(pub HashMap<String, Vec<u8>>);

impl StaticAssets {
    pub fn with(mut self, path: &str, body: impl Into<Vec<u8>>) -> StaticAssets {
        self.0.insert(path.to_owned(), body.into());
        self
    }
}

impl AssetSource for StaticAssets {
    fn file(&self, path: &str) -> Option<Cow<'static, [u8]>> {
        self.0.get(path).map(|b| Cow::Owned(b.clone()))
    }
}

/// The dashboard's routes over `source`, with their security headers.
pub fn routes<S: Clone + Send + Sync + 'static>(source: Arc<dyn AssetSource>) -> Router<S> {
    let index_source = source.clone();
    Router::new()
        .route(MOUNT, get(|| async { Redirect::permanent("/dashboard/") }))
        .route(
            "/dashboard/",
            get(move || {
                let source = index_source.clone();
                async move { index(source.as_ref()) }
            }),
        )
        .route(
            "/dashboard/{*path}",
            get(move |Path(path): Path<String>| {
                let source = source.clone();
                async move { file(source.as_ref(), &path) }
            }),
        )
        .layer(axum::middleware::map_response(with_security_headers))
}

async fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A path inside `dist/` that cannot climb out of it or name a hidden file.
fn is_plain_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|segment| {
            !segment.is_empty() && !segment.starts_with('.') && !segment.contains(['\\', '\0'])
        })
}

fn file(source: &dyn AssetSource, path: &str) -> Response {
    if is_plain_path(path)
        && let Some(body) = source.file(path)
    {
        let cache = if path.starts_with("assets/") {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        return respond(StatusCode::OK, content_type(path), cache, body);
    }
    if path.starts_with("assets/") {
        // A missing build file is a 404, not the page: a script answered with HTML only
        // confuses, and must not be cached as if it were the file.
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            REVALIDATE,
            Cow::Borrowed(b"not found\n"),
        );
    }
    // Any other path is one of the page's own routes: the page handles it.
    index(source)
}

fn index(source: &dyn AssetSource) -> Response {
    match source.file("index.html") {
        Some(body) => respond(StatusCode::OK, "text/html; charset=utf-8", REVALIDATE, body),
        None => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            REVALIDATE,
            Cow::Borrowed(NOT_BUILT.as_bytes()),
        ),
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    body: Cow<'static, [u8]>,
) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body.into_owned(),
    )
        .into_response()
}

/// The content type of a build file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Served at `/dashboard/` when the page's files were not built.
const NOT_BUILT: &str = "<!doctype html>
<html lang=\"en\">
<head><meta charset=\"utf-8\"><title>Dashboard not built</title></head>
<body>
<h1>The dashboard is not built</h1>
<p>This binary was compiled without the dashboard's files. Build them, then rebuild the
binary (release builds embed the files; debug builds read them from disk, so a restart is
enough):</p>
<pre>cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>The API itself works without them: see <a href=\"/openapi.json\">/openapi.json</a>.</p>
</body>
</html>
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_build_folder_are_not_plain() {
        assert!(is_plain_path("assets/index-abc123.js"));
        assert!(is_plain_path("favicon.svg"));
        for bad in [
            "",
            "../Cargo.toml",
            "assets/../../x",
            "a//b",
            ".env",
            "a\\b",
            "/etc/passwd",
        ] {
            assert!(!is_plain_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type("assets/a-1.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("assets/a-1.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("logo.svg"), "image/svg+xml");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
