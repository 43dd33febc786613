//! The human agent console: static files from `assets/console`, compiled into
//! the binary so the gateway serves them with no build step and no files on disk.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (name, content type, body) of every console file.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../assets/console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/console/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/console/style.css"),
    ),
    (
        "meter.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/console/meter.js"),
    ),
    (
        "call.html",
        "text/html; charset=utf-8",
        include_str!("../../assets/console/call.html"),
    ),
];

fn serve(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no console file {name:?}")).into_response(),
    }
}

/// `GET /console`: the console page.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /console/{file}`: its script, style sheet, and the browser caller page (`call.html`).
pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}
