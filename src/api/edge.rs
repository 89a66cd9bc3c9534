//! What every listener does around its routes: a request id and W3C trace context on a
//! tracing span, an access log line, and a bounded body read.

use crate::domain::ErrorCode;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{HeaderName, HeaderValue, StatusCode};
use tracing::Instrument as _;

use super::problem::Problem;
use super::MAX_BODY_BYTES;

/// The request id header: taken from the request when valid, otherwise generated; echoed.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context header, passed through when valid.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The longest request id taken from a request.
const MAX_REQUEST_ID: usize = 128;

/// Wraps a listener's routes (outermost first).
pub fn layered(router: Router, listener: &'static str, body_timeout: Duration) -> Router {
    router
        // The whole body is read before any handler runs, within `body_timeout`: a client
        // that trickles a body cannot hold a connection and a task for longer.
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            read_body,
        ))
        // Outermost: every log line of the request, including those of the layers above,
        // carries its request id, and every response echoes it.
        .layer(axum::middleware::from_fn_with_state(listener, context))
}

/// A request id from the app is kept when it is 1–128 visible ASCII characters.
pub fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The trace id of a valid W3C `traceparent` (`version-traceid-parentid-flags`).
pub fn traceparent_trace_id(value: &str) -> Option<&str> {
    let lower_hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let not_zero = |s: &str| s.bytes().any(|b| b != b'0');
    if value.len() < 55 {
        return None;
    }
    let (head, rest) = value.split_at(55);
    let version = &head[..2];
    // Version 00 is exactly 55 characters; later versions may append `-…`.
    let tail_ok = if version == "00" {
        rest.is_empty()
    } else {
        rest.is_empty() || rest.starts_with('-')
    };
    let parts: Vec<&str> = head.split('-').collect();
    let [v, trace, parent, flags] = parts.as_slice() else {
        return None;
    };
    (tail_ok
        && lower_hex(v, 2)
        && *v != "ff"
        && lower_hex(trace, 32)
        && not_zero(trace)
        && lower_hex(parent, 16)
        && not_zero(parent)
        && lower_hex(flags, 2))
    .then_some(*trace)
}

fn header(req: &Request, name: &HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Opens the request's span (`request_id`, `trace_id`; handlers add `out_trade_no` and the
/// order's `channel`, see `logging::record_channel`), echoes the ids in the response and logs
/// one access line.
async fn context(
    axum::extract::State(listener): axum::extract::State<&'static str>,
    req: Request,
    next: Next,
) -> Response {
    let request_id = header(&req, &X_REQUEST_ID)
        .filter(|id| valid_request_id(id))
        .unwrap_or_else(|| crate::crypto::random_hex(16));
    let traceparent = header(&req, &TRACEPARENT).filter(|t| traceparent_trace_id(t).is_some());
    // An error span is enabled whatever the level filter: the ids reach warnings too.
    let span = tracing::error_span!(
        "request",
        request_id = request_id.as_str(),
        trace_id = tracing::field::Empty,
        out_trade_no = tracing::field::Empty,
        out_refund_no = tracing::field::Empty,
        channel = tracing::field::Empty,
    );
    if let Some(t) = traceparent.as_deref().and_then(traceparent_trace_id) {
        span.record("trace_id", t);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let _entered = span.enter();
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    // Probes and scrapes every few seconds would drown the rest: admin requests log at debug.
    if listener == "admin" {
        tracing::debug!(target: "payroute::access", listener, %method, path, status, ms, "request");
    } else {
        tracing::info!(target: "payroute::access", listener, %method, path, status, ms, "request");
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID.clone(), v);
    }
    if let Some(v) = traceparent.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(TRACEPARENT.clone(), v);
    }
    resp
}

/// Reads the whole body (at most `MAX_BODY_BYTES`) within the listener's body timeout.
async fn read_body(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes =
        match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                return if too_large {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::BodyTooLarge,
                        format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
                    )
                    .into_response()
                } else {
                    closing(Problem::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::InvalidBody,
                        "the request body could not be read",
                    ))
                };
            }
            Err(_) => {
                tracing::debug!(
                    timeout_ms = timeout.as_millis() as u64,
                    "request body not received in time"
                );
                return closing(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::BodyTimeout,
                    format!(
                        "the request body did not arrive within {} ms",
                        timeout.as_millis()
                    ),
                ));
            }
        };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// A problem after which the connection is closed (its unread body makes it unusable).
fn closing(p: Problem) -> Response {
    let mut resp = p.into_response();
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_follows_the_w3c_format() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            traceparent_trace_id(ok),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // A later version may carry more fields.
        assert!(traceparent_trace_id(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        )
        .is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(traceparent_trace_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_ids_are_bounded_visible_ascii() {
        assert!(valid_request_id("req-1_A.b:c/d"));
        assert!(valid_request_id(&"a".repeat(128)));
        assert!(!valid_request_id(&"a".repeat(129)));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("has space"));
        assert!(!valid_request_id("tab\there"));
        assert!(!valid_request_id("é"));
    }
}
