//! Statements and reconciliations: `GET /v1/bills/{channel}/{date}`,
//! `POST /v1/reconciliations`, `GET /v1/reconciliations/{id}`.

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::problem::Problem;
use super::types::parse_body;
use super::{json_request, json_response, AppState};
use crate::bills::{BillError, BillLine, LineKind};
use crate::domain::ErrorCode;

/// The problem a statement failure answers.
pub(super) fn bill_problem(e: BillError) -> Problem {
    match e {
        BillError::NotReady(_) => Problem::new(
            StatusCode::CONFLICT,
            ErrorCode::StatementNotReady,
            e.to_string(),
        ),
        BillError::Damaged(_) | BillError::Line { .. } => Problem::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::StatementDamaged,
            format!("{e}; nothing was recorded: try again later"),
        ),
        BillError::Unsupported(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::OperationUnsupported,
            e.to_string(),
        ),
        BillError::Unavailable(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ChannelUnavailable,
            e.to_string(),
        ),
        BillError::Io(_) => {
            tracing::error!(error = %e, "statement storage");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::LedgerUnavailable,
                "the statement or report could not be stored or read",
            )
        }
    }
}

fn date_in_path(text: &str, field: &str) -> Result<NaiveDate, Problem> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        Problem::field(
            ErrorCode::InvalidPath,
            field,
            format!("{field} must be a date YYYY-MM-DD (China time)"),
        )
    })
}

fn known_channel(s: &AppState, channel: &str) -> Result<(), Problem> {
    match s.payments.snapshot().channel(channel) {
        Some(_) => Ok(()),
        None => Err(Problem::not_found(format!("channel {channel}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BillQuery {
    #[serde(default)]
    format: Option<String>,
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn csv_row(l: &BillLine) -> String {
    let kind = match l.kind {
        LineKind::Payment => "payment",
        LineKind::Refund => "refund",
    };
    let opt = |o: &Option<String>| o.as_deref().map(csv_field).unwrap_or_default();
    format!(
        "{kind},{},{},{},{},{},{},{}\n",
        csv_field(&l.out_trade_no),
        opt(&l.channel_trade_no),
        opt(&l.out_refund_no),
        opt(&l.channel_refund_no),
        l.amount,
        l.fee,
        l.at.map(|t| t.to_rfc3339()).unwrap_or_default()
    )
}

/// `GET /v1/bills/{channel}/{date}?format=jsonl|csv`: the statement's lines, normalised,
/// streamed as they are read from the stored original.
pub(super) async fn get_bill(
    State(s): State<AppState>,
    params: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<BillQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Ok(Path((channel, date))) = params else {
        return Err(Problem::field(
            ErrorCode::InvalidPath,
            "date",
            "use /v1/bills/{channel}/{YYYY-MM-DD}",
        ));
    };
    let date = date_in_path(&date, "date")?;
    let csv = match query.map(|q| q.0.format) {
        Ok(None) => false,
        Ok(Some(f)) if f == "jsonl" => false,
        Ok(Some(f)) if f == "csv" => true,
        _ => {
            return Err(Problem::field(
                ErrorCode::InvalidQuery,
                "format",
                "format must be jsonl or csv",
            ))
        }
    };
    known_channel(&s, &channel)?;
    let stored = s
        .reconciler
        .statement(&channel, date)
        .await
        .map_err(bill_problem)?;
    let snap = s.payments.snapshot();
    let entry = snap
        .channel(&channel)
        .ok_or_else(|| Problem::not_found(format!("channel {channel}")))?;
    let lines = s
        .reconciler
        .open(entry.adapter.as_ref(), &stored)
        .map_err(bill_problem)?;
    let (send, mut receive) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let stored_file = stored.clone();
    tokio::task::spawn_blocking(move || {
        if csv {
            let head = "kind,out_trade_no,channel_trade_no,out_refund_no,channel_refund_no,amount,fee,at\n";
            if send
                .blocking_send(Ok(Bytes::from_static(head.as_bytes())))
                .is_err()
            {
                return;
            }
        }
        let mut chunk = String::new();
        for line in lines {
            match line {
                Ok(l) if csv => chunk.push_str(&csv_row(&l)),
                Ok(l) => {
                    chunk.push_str(&serde_json::to_string(&l).unwrap_or_default());
                    chunk.push('\n');
                }
                Err(e) => {
                    crate::reconcile::remove_statement(&stored_file);
                    // The client sees the stream break off: a partial statement is not a statement.
                    let _ = send.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
            if chunk.len() >= 64 * 1024
                && send
                    .blocking_send(Ok(Bytes::from(std::mem::take(&mut chunk))))
                    .is_err()
            {
                return;
            }
        }
        let _ = send.blocking_send(Ok(Bytes::from(chunk)));
    });
    let stream = futures_util::stream::poll_fn(move |cx| receive.poll_recv(cx));
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/jsonl"
    };
    Ok((
        [(http::header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileBody {
    channel: Value,
    date: Value,
}

/// `POST /v1/reconciliations` `{channel, date}`: starts (or finds running) the reconciliation
/// of that channel and day; 202 with the running report.
pub(super) async fn create_reconciliation(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let b: ReconcileBody = json_request(headers, body, parse_body)?;
    let Value::String(channel) = &b.channel else {
        return Err(Problem::field(
            ErrorCode::InvalidField,
            "channel",
            "channel must be a channel name from routes.yaml",
        ));
    };
    let date = match &b.date {
        Value::String(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d").ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Problem::field(
            ErrorCode::InvalidField,
            "date",
            "date must be YYYY-MM-DD (China time)",
        )
    })?;
    known_channel(&s, channel)?;
    let report = s.reconciler.start(channel, date);
    Ok(json_response(StatusCode::ACCEPTED, report))
}

/// `GET /v1/reconciliations/{id}`.
pub(super) async fn get_reconciliation(
    State(s): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let Ok(Path(id)) = id else {
        return Err(Problem::field(
            ErrorCode::InvalidPath,
            "id",
            "id must be rec_<channel>_<yyyymmdd>",
        ));
    };
    // Ids name files: only the characters payroute makes them of.
    if !id.starts_with("rec_")
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Problem::field(
            ErrorCode::InvalidPath,
            "id",
            "id must be rec_<channel>_<yyyymmdd>",
        ));
    }
    match s.reconciler.get(&id).map_err(bill_problem)? {
        Some(report) => Ok(json_response(StatusCode::OK, report)),
        None => Err(Problem::not_found(format!("reconciliation {id}"))),
    }
}
