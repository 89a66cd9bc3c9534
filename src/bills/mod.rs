//! Channel statements (bills): where a channel's statement of a day is, and its lines in one
//! normalised shape for reconciliation against the ledger.
//!
//! Statements run to hundreds of MB: they are downloaded to a file and read as a stream of
//! [`BillLine`]s, never held in memory whole.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Fen;

/// What a statement line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// A payment the channel took.
    Payment,
    /// A refund of a payment.
    Refund,
}

/// One line of a statement, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillLine {
    pub kind: LineKind,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The channel's id of the payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_trade_no: Option<String>,
    /// For a refund: the merchant's refund number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_refund_no: Option<String>,
    /// For a refund: the channel's id of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_refund_no: Option<String>,
    /// A payment: the amount paid; a refund: the amount refunded (fen).
    pub amount: Fen,
    /// A payment: the fee the channel charged; a refund: the fee it gave back (fen).
    pub fee: Fen,
    /// When the channel says it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// How a statement's file is packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementFormat {
    /// gzip of one CSV (WeChat Pay `tar_type=GZIP`).
    Gzip,
    /// A ZIP of CSV files (Alipay).
    Zip,
}

impl StatementFormat {
    /// The file name ending the original is stored under.
    pub fn extension(self) -> &'static str {
        match self {
            StatementFormat::Gzip => "csv.gz",
            StatementFormat::Zip => "zip",
        }
    }
}

/// Where a channel's statement of a day is (the answer to `Op::BillQuery`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillLocation {
    /// The short-lived download address.
    pub url: String,
    /// SHA-1 of the file (lower-case hex) when the channel gives one (WeChat Pay `hash_value`).
    pub sha1: Option<String>,
    pub format: StatementFormat,
}

/// Why a statement cannot be had or read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BillError {
    /// The channel has no statement for that day (yet): try again later.
    #[error("no statement for {0} yet")]
    NotReady(NaiveDate),
    /// The file does not match the channel's hash, or cannot be unpacked.
    #[error("statement file is damaged: {0}")]
    Damaged(String),
    /// A line cannot be read (the file is not the format expected): line number and why.
    #[error("statement line {line}: {why}")]
    Line { line: u64, why: String },
    /// The channel offers no statements payroute can read.
    #[error("{0}")]
    Unsupported(String),
    /// Reading the stored file failed.
    #[error("statement file: {0}")]
    Io(String),
    /// The channel could not be asked, or its answer was not understood: try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// The statement's lines, read from its file as a stream.
pub type Lines = Box<dyn Iterator<Item = Result<BillLine, BillError>> + Send>;

/// A stored statement file (the original as downloaded; ZIP needs to seek).
pub type StatementFile = std::fs::File;
