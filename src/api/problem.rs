//! RFC 9457 `application/problem+json` errors with a stable `code` member.

use crate::domain::ErrorCode;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::payments::ServiceError;

/// An API error, rendered as problem+json.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// Stable, machine-readable identifier (`invalid_field`, `idempotency_conflict`, …).
    pub code: ErrorCode,
    pub detail: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
    /// Extension members (e.g. the order's `payment_status`).
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl Problem {
    /// A problem with a status, code and detail.
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            detail: detail.into(),
            field: None,
            extra: None,
        }
    }

    /// A 4xx about one request field.
    pub fn field(code: ErrorCode, field: &str, detail: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::UnsupportedCurrency
            | ErrorCode::UnsupportedMethod
            | ErrorCode::UnsupportedScene => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        Problem {
            field: Some(field.to_string()),
            ..Problem::new(status, code, detail)
        }
    }

    /// 404 for an unknown resource.
    pub fn not_found(what: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{} not found", what.into()),
        )
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("urn:payroute:problem:{}", self.code),
            "title": title(self.status),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code.as_str(),
        });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        if let Some(extra) = self.extra {
            for (k, v) in *extra {
                body[k] = v;
            }
        }
        let retry_after = body.get("retry_after").and_then(|v| v.as_u64());
        let mut resp = (self.status, body.to_string()).into_response();
        if let Some(secs) = retry_after {
            if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}

impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => Problem::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("{what} not found"),
            ),
            ServiceError::Conflict { code, detail } => {
                Problem::new(StatusCode::CONFLICT, code, detail)
            }
            ServiceError::Unprocessable { code, detail } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
            }
            ServiceError::OutcomeUnknown { detail, status } => Problem {
                extra: Some(Box::new(serde_json::Map::from_iter([(
                    "payment_status".to_string(),
                    json!(status),
                )]))),
                ..Problem::new(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::ChannelOutcomeUnknown,
                    detail,
                )
            },
            ServiceError::RateLimited {
                retry_after,
                detail,
            } => Problem {
                extra: Some(Box::new(serde_json::Map::from_iter([(
                    "retry_after".to_string(),
                    json!(retry_after.as_secs().max(1)),
                )]))),
                ..Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    detail,
                )
            },
            ServiceError::ChannelUnavailable {
                detail,
                retry_after,
            } => Problem {
                extra: retry_after.map(|wait| {
                    Box::new(serde_json::Map::from_iter([(
                        "retry_after".to_string(),
                        json!(wait.as_secs().max(1)),
                    )]))
                }),
                ..Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::ChannelUnavailable,
                    detail,
                )
            },
            ServiceError::Ledger(e) => {
                tracing::error!(error = %e, "ledger failure");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::LedgerUnavailable,
                    "the ledger could not be read or written; nothing was sent to a channel after the failure",
                )
            }
        }
    }
}
