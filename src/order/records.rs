//! How the entities are written: as plain strings where the API shows strings, and loading
//! every record an older version wrote.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Anomaly, Attempt, AttemptOutcome, Closing, FailureCode, ABANDONED_SETTLED};

/// An attempt as stored by every version: records written before `closing` existed said
/// "settled" only by starting the reason with `abandoned;`.
#[derive(Deserialize)]
pub(super) struct AttemptRecord {
    channel: String,
    started_at: DateTime<Utc>,
    #[serde(default)]
    finished_at: Option<DateTime<Utc>>,
    outcome: AttemptOutcome,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    closing: Option<Closing>,
}

impl From<AttemptRecord> for Attempt {
    fn from(r: AttemptRecord) -> Self {
        let legacy_settled = r.outcome == AttemptOutcome::Abandoned
            && r.closing.is_none()
            && r.reason
                .as_deref()
                .is_some_and(|t| t.starts_with(ABANDONED_SETTLED));
        let closing = match (r.closing, legacy_settled) {
            (Some(c), _) => Some(c),
            (None, false) => None,
            (None, true) => Some(legacy_closing(r.reason.as_deref().unwrap_or_default())),
        };
        Attempt {
            channel: r.channel,
            started_at: r.started_at,
            finished_at: r.finished_at,
            outcome: r.outcome,
            reason: r.reason,
            closing,
        }
    }
}

/// The closing an old record's text described.
fn legacy_closing(reason: &str) -> Closing {
    if reason.contains("expires at the channel") {
        Closing::CannotClose
    } else if reason.contains("no trade") {
        Closing::NoTrade
    } else if reason.contains("duplicate") {
        Closing::PaidThere
    } else if reason.contains("cancelled") {
        Closing::Cancelled
    } else {
        Closing::Closed
    }
}

impl From<String> for FailureCode {
    fn from(code: String) -> Self {
        match code.as_str() {
            "channel_unavailable" => FailureCode::NothingCreated,
            "payment_reversed" => FailureCode::PaymentReversed,
            _ => FailureCode::Channel(code),
        }
    }
}

impl From<&str> for FailureCode {
    fn from(code: &str) -> Self {
        FailureCode::from(code.to_string())
    }
}

impl From<FailureCode> for String {
    fn from(code: FailureCode) -> Self {
        code.as_str().to_string()
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Anomaly {
    fn from(text: String) -> Self {
        if text == "paid_after_close" {
            return Anomaly::PaidAfterClose;
        }
        // `duplicate_refunded:` and `duplicate_refund_pending:` were written before the refund
        // moved to `late_payments`.
        for prefix in [
            "duplicate_payment:",
            "duplicate_refunded:",
            "duplicate_refund_pending:",
        ] {
            if let Some(channel) = text.strip_prefix(prefix) {
                return Anomaly::DuplicatePayment {
                    channel: channel.to_string(),
                };
            }
        }
        Anomaly::Other(text)
    }
}

impl From<&str> for Anomaly {
    fn from(text: &str) -> Self {
        Anomaly::from(text.to_string())
    }
}

impl From<Anomaly> for String {
    fn from(a: Anomaly) -> Self {
        match a {
            Anomaly::PaidAfterClose => "paid_after_close".to_string(),
            Anomaly::DuplicatePayment { channel } => format!("duplicate_payment:{channel}"),
            Anomaly::Other(text) => text,
        }
    }
}
