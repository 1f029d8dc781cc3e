//! The admin HTTP server (`[admin]`, off by default): health and readiness for
//! orchestrators, `/status` as JSON and `/` as a page for people, and `/metrics` for
//! Prometheus. It reads the same immutable snapshot and status board as everything
//! else, so nothing it does touches the query path. Loopback only unless a bearer
//! token is set (the config refuses anything else). Connections are capped and timed
//! out ([`connections`]); every response forbids sniffing, framing and caching.

mod auth;
mod connections;
mod history;
mod page;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AdminConfig;
use crate::published::Published;
use crate::refresh::BoardCell;
use crate::service::ReadyWatch;
use crate::snapshot::SnapshotCell;

pub use view::{FileProblem, PolicyView, Problems, StatusView};

/// Everything the admin server reads; all of it is shared, none of it locked on the
/// query path.
#[derive(Clone)]
pub struct AdminState {
    pub snapshot: Arc<SnapshotCell>,
    pub board: Arc<BoardCell>,
    pub published: Arc<Published>,
    /// Current errors of policy files, by file (from the reload service).
    pub problems: Arc<ArcSwap<Problems>>,
    pub ready: ReadyWatch,
    /// Prometheus text, rendered on scrape.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// The query counters summed, sampled for the status page's chart.
    pub queries: Arc<dyn Fn() -> crate::dns::stats::QueryCounts + Send + Sync>,
    /// The last hour of responses per second by rcode.
    pub history: Arc<std::sync::Mutex<history::History>>,
    /// Each domain's DMARC report summary and advice (domains with reports only).
    pub reports: Arc<crate::reports::watch::ReportBoard>,
    /// Connections closed over the cap (counted here, read by the metrics).
    pub refused: Arc<AtomicU64>,
}

/// Serves the admin routes on `listener` until `stop`, within `config`'s limits.
pub async fn serve(listener: TcpListener, state: AdminState, config: AdminConfig, stop: CancellationToken) {
    tokio::spawn(history::sample(
        state.history.clone(),
        state.queries.clone(),
        stop.clone(),
    ));
    let refused = state.refused.clone();
    let router = router(state, config.token);
    connections::accept(listener, router, config.limits, refused, stop).await;
}

/// Binds the admin address (port 0 picks one, for tests).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

fn router(state: AdminState, token: Option<String>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .route("/domain/{domain}", get(domain_page))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            auth::require_token,
        ))
        .layer(axum::middleware::map_response(protect))
        .with_state(state)
}

/// The headers every response carries: no content sniffing, no framing by another
/// site (clickjacking), no copy kept by a browser or proxy (the pages show every
/// domain's state).
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.ready.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading\n").into_response()
    }
}

async fn status(State(state): State<AdminState>) -> Response {
    axum::Json(StatusView::build(&state, view::now())).into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let body = (state.metrics)();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn index(State(state): State<AdminState>) -> Html<String> {
    let view = StatusView::build(&state, view::now());
    let chart = page::qps_chart(&state.history.lock().expect("history lock"));
    Html(page::index(&view, &chart))
}

async fn domain_page(State(state): State<AdminState>, Path(domain): Path<String>) -> Response {
    let view = StatusView::build(&state, view::now());
    let wanted = domain.trim_end_matches('.').to_ascii_lowercase();
    match view.policies.iter().find(|p| p.domain == wanted) {
        Some(policy) => Html(page::domain(policy, &view)).into_response(),
        None => (StatusCode::NOT_FOUND, Html(page::not_found(&wanted))).into_response(),
    }
}
