//! The HTTP surfaces: the unified API v1, the channel notification endpoint and the admin
//! listener. Handlers translate; the work happens in `payments`.

mod admin;
mod bills;
pub mod edge;
mod lists;
mod notify;
pub mod problem;
pub mod splits;
pub mod types;

use crate::domain::ErrorCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use self::problem::Problem;
use self::types::{
    parse_create, parse_refund, valid_out_refund_no, valid_out_trade_no, PaymentView, RefundView,
};
use crate::channels::{InboundNotification, NotificationEvent};
use crate::payments::Payments;

pub use self::admin::admin_router;
pub use self::notify::notify_router;

/// Request bodies above this size are refused with 413 (no payment request comes close).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The committed OpenAPI 3.1 document of the unified API.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// A listener whose connections send small writes at once (`TCP_NODELAY`): without it, a
/// response written in two pieces waits for the peer's delayed ACK, tens of milliseconds.
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    })
}

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub payments: Arc<Payments>,
    /// The configuration and its reloads.
    pub store: Arc<crate::reload::ConfigStore>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// False while starting and while draining on shutdown.
    pub ready: Arc<AtomicBool>,
    /// The events feed, the outbox and the order list.
    pub events: Arc<dyn crate::ledger::EventStore>,
    /// Whether events are delivered to the app (`--events-url`).
    pub events_delivered: bool,
    /// Statements and reconciliations.
    pub reconciler: Arc<crate::reconcile::Reconciler>,
}

pub(super) fn json_response(status: StatusCode, body: impl serde::Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Checks the content type and parses the JSON body, then lets go of both. They are slices of
/// the connection's read buffer: a request kept waiting on a channel (up to the call timeout)
/// would otherwise hold that buffer alive beside the one the connection reads into next, about
/// 8 KiB more per payment in flight.
pub(super) fn json_request<T>(
    headers: HeaderMap,
    body: Bytes,
    parse: impl FnOnce(&[u8]) -> Result<T, Problem>,
) -> Result<T, Problem> {
    require_json(&headers)?;
    parse(&body)
}

pub(super) fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    match headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(()),
        Some(ct)
            if ct.split(';').next().is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || m.ends_with("+json")
            }) =>
        {
            Ok(())
        }
        Some(ct) => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            format!("content-type {ct} is not supported; send application/json"),
        )),
    }
}

/// Names the order in the request's span, so that every later log line carries it.
fn record_trade_no(no: &str) {
    tracing::Span::current().record("out_trade_no", no);
}

/// A payment answer. The order's channel is named on the request's span first, so that the
/// access line carries it even when the answer came from the ledger.
fn payment_answer(status: StatusCode, order: &crate::ledger::Order) -> Response {
    if let Some(channel) = order.channel.as_deref() {
        crate::logging::record_channel(channel);
    }
    json_response(status, PaymentView::of(order))
}

/// A refund answer, its channel named on the request's span (see [`payment_answer`]).
fn refund_answer(status: StatusCode, refund: &crate::ledger::Refund) -> Response {
    crate::logging::record_channel(&refund.channel);
    json_response(status, RefundView::of(refund))
}

/// The `{out_trade_no}` of a path; one that is not even UTF-8 (`%FF`) is just as invalid.
/// A refund, split or return number from the path: 6 to 64 characters of letters, digits, `_`.
pub(super) fn number_in_path(
    param: Result<Path<String>, PathRejection>,
    field: &str,
    code: ErrorCode,
) -> Result<String, Problem> {
    match param {
        Ok(Path(no)) if valid_out_refund_no(&no) => Ok(no),
        _ => Err(Problem::field(
            code,
            field,
            format!("{field} must be 6-64 characters of letters, digits and _"),
        )),
    }
}

pub(super) fn trade_no(param: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    match param {
        Ok(Path(no)) if valid_out_trade_no(&no) => {
            record_trade_no(&no);
            Ok(no)
        }
        _ => Err(Problem::field(
            ErrorCode::InvalidOutTradeNo,
            "out_trade_no",
            "out_trade_no must be 6-32 characters of letters, digits and _",
        )),
    }
}

async fn create_payment(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let req = json_request(headers, body, |b| parse_create(b, chrono::Utc::now()))?;
    record_trade_no(&req.out_trade_no);
    let order = s.payments.create(req).await?;
    Ok(payment_answer(StatusCode::CREATED, &order))
}

async fn get_payment(
    State(s): State<AppState>,
    no: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let no = trade_no(no)?;
    let order = s.payments.query(&no).await?;
    Ok(payment_answer(StatusCode::OK, &order))
}

async fn close_payment(
    State(s): State<AppState>,
    no: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let no = trade_no(no)?;
    let order = s.payments.close(&no).await?;
    Ok(payment_answer(StatusCode::OK, &order))
}

async fn create_refund(
    State(s): State<AppState>,
    no: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let no = trade_no(no)?;
    let req = json_request(headers, body, parse_refund)?;
    let refund = s.payments.refund(&no, req).await?;
    Ok(refund_answer(StatusCode::CREATED, &refund))
}

async fn get_refund(
    State(s): State<AppState>,
    no: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let no = number_in_path(no, "out_refund_no", ErrorCode::InvalidOutRefundNo)?;
    tracing::Span::current().record("out_refund_no", no.as_str());
    let refund = s.payments.refund_query(&no).await?;
    Ok(refund_answer(StatusCode::OK, &refund))
}

async fn openapi() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON,
    )
        .into_response()
}

async fn not_found() -> Problem {
    Problem::not_found("resource")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this method is not allowed on this path",
    )
}

/// axum's own rejections (a path that is not UTF-8, a body over the limit, a JSON body a
/// sandbox control endpoint cannot read, …) are plain text or empty; every such 4xx becomes a
/// problem, so that no client of these listeners has to parse text.
pub async fn rejections_as_problems(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let plain = match resp.headers().get(http::header::CONTENT_TYPE) {
        None => true,
        Some(ct) => ct.as_bytes().starts_with(b"text/plain"),
    };
    if !status.is_client_error() || !plain {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let (code, detail) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::BodyTooLarge,
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "this method is not allowed on this path".to_string(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::UnsupportedMediaType,
            "send application/json".to_string(),
        ),
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "resource not found".to_string()),
        _ if text.contains("URL") || text.contains("path") => {
            (ErrorCode::InvalidPath, text.into_owned())
        }
        _ if text.contains("JSON") => (ErrorCode::InvalidJson, text.into_owned()),
        _ => (ErrorCode::InvalidRequest, text.into_owned()),
    };
    Problem::new(status, code, detail).into_response()
}

/// The `operation` label of a unified API request (a fixed set: never the order number).
fn api_operation(method: &http::Method, path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "payments"]) => "create_payment",
        ("GET", ["v1", "payments"]) => "list_payments",
        ("GET", ["v1", "events"]) => "list_events",
        ("POST", ["v1", "events", _, "redeliver"]) => "redeliver_event",
        ("GET", ["v1", "payments", _]) => "get_payment",
        ("POST", ["v1", "payments", _, "close"]) => "close_payment",
        ("POST", ["v1", "payments", _, "refunds"]) => "create_refund",
        ("GET", ["v1", "refunds", _]) => "get_refund",
        ("POST", ["v1", "payments", _, "splits"]) => "create_split",
        ("GET", ["v1", "splits", _]) => "get_split",
        ("POST", ["v1", "splits", _, "returns"]) => "create_split_return",
        ("GET", ["v1", "split-returns", _]) => "get_split_return",
        ("GET", ["v1", "bills", _, _]) => "get_bill",
        ("POST", ["v1", "reconciliations"]) => "create_reconciliation",
        ("GET", ["v1", "reconciliations", _]) => "get_reconciliation",
        ("GET", ["openapi.json"]) => "openapi",
        _ => "other",
    }
}

/// Counts and times every unified API request by operation and status.
async fn http_metrics(
    State(metrics): State<Arc<crate::metrics::Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let operation = api_operation(req.method(), req.uri().path());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    metrics
        .http_requests
        .with_label_values(&[operation, resp.status().as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[operation])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// The unified API v1 (listener 1).
pub fn api_router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route(
            "/v1/payments",
            post(create_payment).get(lists::list_payments),
        )
        .route("/v1/events", get(lists::list_events))
        .route("/v1/events/{id}/redeliver", post(lists::redeliver))
        .route("/v1/payments/{out_trade_no}", get(get_payment))
        .route("/v1/payments/{out_trade_no}/close", post(close_payment))
        .route("/v1/payments/{out_trade_no}/refunds", post(create_refund))
        .route("/v1/refunds/{out_refund_no}", get(get_refund))
        .route(
            "/v1/payments/{out_trade_no}/splits",
            post(splits::create_split),
        )
        .route("/v1/splits/{out_split_no}", get(splits::get_split))
        .route(
            "/v1/splits/{out_split_no}/returns",
            post(splits::create_return),
        )
        .route("/v1/split-returns/{out_return_no}", get(splits::get_return))
        .route("/v1/bills/{channel}/{date}", get(bills::get_bill))
        .route("/v1/reconciliations", post(bills::create_reconciliation))
        .route("/v1/reconciliations/{id}", get(bills::get_reconciliation))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Size limit first: nothing reads more than MAX_BODY_BYTES of a request.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(rejections_as_problems))
        .layer(axum::middleware::from_fn_with_state(metrics, http_metrics))
        .with_state(state)
}
