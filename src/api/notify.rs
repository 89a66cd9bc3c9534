//! The channel notification listener: `/notify/{channel}`, verified by the channel's adapter.

use super::*;

async fn notify(
    State(s): State<AppState>,
    channel: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(Path(channel)) = channel else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidPath,
            "the channel name in the path is not valid UTF-8",
        )
        .into_response();
    };
    let snap = s.payments.snapshot();
    let Some(entry) = snap.channel(&channel) else {
        return Problem::not_found("channel").into_response();
    };
    crate::logging::record_channel(&channel);
    let count = |result: &str| {
        s.metrics
            .notifications
            .with_label_values(&[channel.as_str(), result])
            .inc();
    };
    let adapter = entry.adapter.clone();
    let reply = |accepted: bool| {
        let r = adapter.notify_reply(accepted);
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            [(http::header::CONTENT_TYPE, r.content_type)],
            r.body,
        )
            .into_response()
    };
    let event = match adapter.verify_notification(&InboundNotification {
        headers: &headers,
        body: &body,
    }) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(channel = channel.as_str(), error = %e, "notification refused");
            count("rejected");
            return reply(false);
        }
    };
    let (out_trade_no, report) = match event {
        NotificationEvent::Payment {
            out_trade_no,
            report,
        } => {
            record_trade_no(&out_trade_no);
            (out_trade_no, report)
        }
        NotificationEvent::Ignored { event_type } => {
            tracing::info!(
                channel = channel.as_str(),
                event_type = event_type.as_str(),
                "notification acknowledged, not acted on"
            );
            count("ignored");
            return reply(true);
        }
    };
    match s
        .payments
        .apply_notification(&channel, &out_trade_no, &report)
        .await
    {
        Ok(true) => {
            count("accepted");
            reply(true)
        }
        Ok(false) => {
            count("unknown_order");
            reply(false)
        }
        Err(e) => {
            count("error");
            tracing::error!(channel = channel.as_str(), error = %e, "notification not applied; the channel will retry");
            let mut r = reply(false);
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    }
}

/// Channel notifications (listener 2).
pub fn notify_router(state: AppState) -> Router {
    Router::new()
        .route("/notify/{channel}", post(notify))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
