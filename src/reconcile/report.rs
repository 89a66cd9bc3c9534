//! A reconciliation report: a channel's statement of one day checked against the ledger.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Fen;

/// Where a reconciliation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    /// The statement could not be had or read: nothing was concluded (see `error`).
    Failed,
}

/// What is wrong with one line or one ledger entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// The channel has it; payroute does not (money without an order, a refund payroute never made).
    MissingInLedger,
    /// payroute has it settled at this channel; the statement does not show it.
    MissingAtChannel,
    /// Both have it, for different amounts.
    AmountMismatch,
    /// Both have it, in different states (e.g. payroute pending, the channel paid).
    StatusMismatch,
}

/// Whether a count or discrepancy is about a payment or a refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Payment,
    Refund,
}

/// One discrepancy, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discrepancy {
    pub kind: DiscrepancyKind,
    pub subject: Subject,
    pub out_trade_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_refund_no: Option<String>,
    /// The amount on the statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_amount: Option<Fen>,
    /// The amount and state in the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_amount: Option<Fen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_status: Option<String>,
    /// What to do.
    pub action: String,
}

/// How many lines and ledger entries fell in each class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub matched: u64,
    pub missing_in_ledger: u64,
    pub missing_at_channel: u64,
    pub amount_mismatch: u64,
    pub status_mismatch: u64,
}

impl Counts {
    pub(super) fn add(&mut self, kind: Option<DiscrepancyKind>) {
        let n = match kind {
            None => &mut self.matched,
            Some(DiscrepancyKind::MissingInLedger) => &mut self.missing_in_ledger,
            Some(DiscrepancyKind::MissingAtChannel) => &mut self.missing_at_channel,
            Some(DiscrepancyKind::AmountMismatch) => &mut self.amount_mismatch,
            Some(DiscrepancyKind::StatusMismatch) => &mut self.status_mismatch,
        };
        *n += 1;
    }

    /// Every discrepancy counted.
    pub fn discrepancies(&self) -> u64 {
        self.missing_in_ledger
            + self.missing_at_channel
            + self.amount_mismatch
            + self.status_mismatch
    }
}

/// What the channel really charged, beside what payroute estimated from routes.yaml.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fees {
    /// Payments on the statement (fen).
    pub paid_amount: Fen,
    /// Fees the statement charged for them, less fees it gave back with refunds (fen).
    pub actual_fee: Fen,
    /// The fees routes.yaml's fee schedule gives for the same payments (fen).
    pub estimated_fee: Fen,
    /// `actual_fee / paid_amount` in parts per million (6000 = 0.6%), when anything was paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_rate_ppm: Option<u64>,
    /// The same for the estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rate_ppm: Option<u64>,
    /// The routes.yaml fee schedule the estimate came from (e.g. `0.6% + 0 fen, min 0, max none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// The statement a report was made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementInfo {
    /// The stored original, relative to the data directory.
    pub file: String,
    pub bytes: u64,
    pub sha1: String,
    pub lines: u64,
}

/// A reconciliation and its findings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// `rec_<channel>_<yyyymmdd>`: one report a channel and day; a re-run replaces it.
    pub id: String,
    pub channel: String,
    pub date: NaiveDate,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Statement lines read so far (while running) or in all.
    pub lines_read: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<StatementInfo>,
    pub payments: Counts,
    pub refunds: Counts,
    pub fees: Fees,
    /// The first [`MAX_LISTED`] discrepancies (the counts are complete).
    pub discrepancies: Vec<Discrepancy>,
    pub discrepancies_truncated: bool,
}

/// A completed report as the `reconciliation.completed` event tells it: everything but the
/// list of discrepancies (read it with `GET /v1/reconciliations/{id}`).
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub id: &'a str,
    pub channel: &'a str,
    pub date: NaiveDate,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    pub lines_read: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<&'a StatementInfo>,
    pub payments: &'a Counts,
    pub refunds: &'a Counts,
    pub fees: &'a Fees,
    /// Payment and refund discrepancies together.
    pub discrepancies_total: u64,
}

impl<'a> Summary<'a> {
    pub fn of(r: &'a Report) -> Summary<'a> {
        Summary {
            id: &r.id,
            channel: &r.channel,
            date: r.date,
            status: r.status,
            finished_at: r.finished_at,
            lines_read: r.lines_read,
            statement: r.statement.as_ref(),
            payments: &r.payments,
            refunds: &r.refunds,
            fees: &r.fees,
            discrepancies_total: r.payments.discrepancies() + r.refunds.discrepancies(),
        }
    }
}

/// Most discrepancies a report lists.
pub const MAX_LISTED: usize = 10_000;

impl Report {
    /// The id of the report of `channel` on `date`.
    pub fn id_for(channel: &str, date: NaiveDate) -> String {
        format!("rec_{channel}_{}", date.format("%Y%m%d"))
    }

    /// A report just started.
    pub fn running(channel: &str, date: NaiveDate, now: DateTime<Utc>) -> Report {
        Report {
            id: Report::id_for(channel, date),
            channel: channel.to_string(),
            date,
            status: RunStatus::Running,
            error: None,
            started_at: now,
            finished_at: None,
            lines_read: 0,
            statement: None,
            payments: Counts::default(),
            refunds: Counts::default(),
            fees: Fees::default(),
            discrepancies: vec![],
            discrepancies_truncated: false,
        }
    }

    pub(super) fn note(&mut self, d: Discrepancy) {
        match d.subject {
            Subject::Payment => self.payments.add(Some(d.kind)),
            Subject::Refund => self.refunds.add(Some(d.kind)),
        }
        if self.discrepancies.len() < MAX_LISTED {
            self.discrepancies.push(d);
        } else {
            self.discrepancies_truncated = true;
        }
    }
}
