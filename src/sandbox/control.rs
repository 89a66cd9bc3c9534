//! The sandbox control API (`/sandbox/{channel}/…`): pay, scan, show, re-notify, faults,
//! notifications and call counts, the same for every channel's simulator.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use http::StatusCode;

use super::faults::Fault;
use super::shared::AnySim;

type Sims = Arc<BTreeMap<String, Arc<dyn AnySim>>>;

/// The control API over the simulators `sims`.
pub(super) fn router(sims: Sims) -> Router {
    Router::new()
        .route("/sandbox/{channel}/payments/{out_trade_no}/pay", post(pay))
        .route(
            "/sandbox/{channel}/payments/{out_trade_no}/scan",
            post(scan),
        )
        .route("/sandbox/{channel}/payments/{out_trade_no}", get(show))
        .route(
            "/sandbox/{channel}/payments/{out_trade_no}/notify",
            post(renotify),
        )
        .route(
            "/sandbox/{channel}/faults",
            put(set_fault).delete(clear_faults),
        )
        .route("/sandbox/{channel}/notifications", put(set_notifications))
        .route("/sandbox/{channel}/calls", get(calls))
        .route("/sandbox/{channel}/receivers/{account}", put(set_receiver))
        .route("/sandbox/{channel}/splits/{out_split_no}", get(show_split))
        .route("/sandbox/{channel}/statements", put(set_statement_edits))
        .with_state(sims)
}

fn control_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}

fn unknown_channel() -> Response {
    control_error(
        StatusCode::NOT_FOUND,
        "unknown_channel",
        "no simulator for this channel",
    )
}

fn answer(result: Result<serde_json::Value, super::ControlError>) -> Response {
    match result {
        Ok(view) => (StatusCode::OK, axum::Json(view)).into_response(),
        Err((status, code, msg)) => control_error(status, code, &msg),
    }
}

/// Query of the pay control: `?even_if_closed=true`.
#[derive(Debug, Default, serde::Deserialize)]
struct PayOptions {
    #[serde(default)]
    even_if_closed: bool,
}

async fn pay(
    State(sims): State<Sims>,
    UrlPath((channel, no)): UrlPath<(String, String)>,
    Query(options): Query<PayOptions>,
) -> Response {
    match sims.get(&channel) {
        Some(s) => answer(s.clone().customer_pays(&no, options.even_if_closed)),
        None => unknown_channel(),
    }
}

async fn scan(
    State(sims): State<Sims>,
    UrlPath((channel, no)): UrlPath<(String, String)>,
) -> Response {
    match sims.get(&channel) {
        Some(s) => answer(s.scan(&no)),
        None => unknown_channel(),
    }
}

async fn renotify(
    State(sims): State<Sims>,
    UrlPath((channel, no)): UrlPath<(String, String)>,
) -> Response {
    let Some(s) = sims.get(&channel).cloned() else {
        return unknown_channel();
    };
    match s.notify(&no).await {
        Ok((status, body)) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": status, "body": body })),
        )
            .into_response(),
        Err(e) => control_error(StatusCode::CONFLICT, "notify_failed", &e),
    }
}

async fn show(
    State(sims): State<Sims>,
    UrlPath((channel, no)): UrlPath<(String, String)>,
) -> Response {
    match sims.get(&channel).map(|s| s.view(&no)) {
        Some(Some(v)) => (StatusCode::OK, axum::Json(v)).into_response(),
        Some(None) => control_error(
            StatusCode::NOT_FOUND,
            "ACQ.TRADE_NOT_EXIST",
            "no such order at the simulator",
        ),
        None => unknown_channel(),
    }
}

async fn set_fault(
    State(sims): State<Sims>,
    UrlPath(channel): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let fault = serde_json::from_slice::<Fault>(&body)
        .map_err(|e| e.to_string())
        .and_then(|f| f.validate().map(|()| f));
    match (sims.get(&channel), fault) {
        (None, _) => unknown_channel(),
        (Some(s), Ok(f)) => {
            s.faults().set(f).await;
            StatusCode::NO_CONTENT.into_response()
        }
        (Some(_), Err(e)) => control_error(StatusCode::BAD_REQUEST, "invalid_fault", &e),
    }
}

async fn clear_faults(State(sims): State<Sims>, UrlPath(channel): UrlPath<String>) -> Response {
    match sims.get(&channel) {
        Some(s) => {
            s.faults().clear().await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => unknown_channel(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationSettings {
    enabled: bool,
}

async fn set_notifications(
    State(sims): State<Sims>,
    UrlPath(channel): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let settings = serde_json::from_slice::<NotificationSettings>(&body);
    match (sims.get(&channel), settings) {
        (None, _) => unknown_channel(),
        (Some(s), Ok(settings)) => {
            s.set_notifications(settings.enabled);
            StatusCode::NO_CONTENT.into_response()
        }
        (Some(_), Err(e)) => {
            control_error(StatusCode::BAD_REQUEST, "invalid_settings", &e.to_string())
        }
    }
}

async fn calls(State(sims): State<Sims>, UrlPath(channel): UrlPath<String>) -> Response {
    match sims.get(&channel) {
        Some(s) => (StatusCode::OK, axum::Json(s.calls())).into_response(),
        None => unknown_channel(),
    }
}

async fn set_receiver(
    State(sims): State<Sims>,
    UrlPath((channel, account)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let behaviour = serde_json::from_slice::<super::shared::ReceiverBehaviour>(&body);
    match (sims.get(&channel), behaviour) {
        (None, _) => unknown_channel(),
        (Some(s), Ok(b)) => match s.set_receiver(&account, b) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err((status, code, msg)) => control_error(status, code, &msg),
        },
        (Some(_), Err(e)) => {
            control_error(StatusCode::BAD_REQUEST, "invalid_settings", &e.to_string())
        }
    }
}

async fn show_split(
    State(sims): State<Sims>,
    UrlPath((channel, no)): UrlPath<(String, String)>,
) -> Response {
    match sims.get(&channel).map(|s| s.split_view(&no)) {
        Some(Some(v)) => (StatusCode::OK, axum::Json(v)).into_response(),
        Some(None) => control_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such split at the simulator",
        ),
        None => unknown_channel(),
    }
}

async fn set_statement_edits(
    State(sims): State<Sims>,
    UrlPath(channel): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let edits = serde_json::from_slice::<super::shared::StatementEdits>(&body);
    match (sims.get(&channel), edits) {
        (None, _) => unknown_channel(),
        (Some(s), Ok(e)) => match s.set_statement_edits(e) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err((status, code, msg)) => control_error(status, code, &msg),
        },
        (Some(_), Err(e)) => {
            control_error(StatusCode::BAD_REQUEST, "invalid_settings", &e.to_string())
        }
    }
}
