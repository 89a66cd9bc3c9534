//! Trade bills as WeChat Pay API v3 serves them: `GET /v3/bill/tradebill` builds the day's
//! statement from the simulator's state (payments paid that day, refunds that succeeded that
//! day), applies the sandbox control's edits, gzips it and keeps it under a one-time token;
//! `GET /v3/billdownload/file?token=…` answers the file, unsigned, as WeChat Pay does.
//!
//! Modelled, not confirmed: the fee is 0.6% of the amount rounded half-up to the fen, a refund
//! gives back the same share of the payment's fee (so refunds in parts give back exactly the
//! fee); a refund row's 交易时间 is when it succeeded; a day without trades is an empty
//! statement (header and a zero summary) rather than `NO_STATEMENT_EXIST`; the day (China
//! time) is served as soon as it has begun, only later days are `NO_STATEMENT_EXIST`.

use std::collections::VecDeque;
use std::io::Write;

use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use http::StatusCode;
use serde_json::json;
use sha1::Digest;

use super::handlers::{error, param_error};
use super::state::Transaction;
use super::{query_param, Gateway};
use crate::channels::wechatpay::bill::{COLUMNS, SUMMARY_COLUMNS, TIME_FORMAT};
use crate::channels::wechatpay::transformers::RefundState;
use crate::money::fen_to_yuan;
use crate::sandbox::kit::{lock, Answer};
use crate::sandbox::shared::StatementEdits;
use crate::sandbox::GatewayRequest;

/// The statement files kept for download (older ones are dropped).
const KEPT_FILES: usize = 16;

/// The statement side of the simulator: the control's edits and the files made, by token.
#[derive(Debug, Default)]
pub(super) struct Statements {
    edits: StatementEdits,
    files: VecDeque<(String, Vec<u8>)>,
}

/// Which rows a bill holds (`bill_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BillType {
    All,
    Success,
    Refund,
}

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

fn china_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&china()).date_naive()
}

/// The fee WeChat Pay takes of a payment: 0.6%, rounded half-up to the fen.
pub(super) fn fee_of(amount: u64) -> u64 {
    share_half_up(amount, 6, 1000)
}

/// `value × part / whole`, rounded half-up.
fn share_half_up(value: u64, part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let (v, p, w) = (value as u128, part as u128, whole as u128);
    ((2 * v * p + w) / (2 * w)) as u64
}

/// One statement row: when, and its fields in [`COLUMNS`] order.
struct Row {
    at: DateTime<Utc>,
    refund: bool,
    /// A payment's amount or a refund's, and the fee taken or given back (fen).
    amount: u64,
    fee: u64,
    fields: Vec<String>,
}

/// What a row's fields are made of.
struct RowParts<'a> {
    at: DateTime<Utc>,
    transaction_id: &'a str,
    out_trade_no: &'a str,
    trade_type: &'a str,
    description: &'a str,
    /// The payment's or refund's amount, and the fee taken or given back (fen).
    amount: u64,
    fee: u64,
    /// A refund: refund id and number.
    refund: Option<(&'a str, &'a str)>,
}

/// Running totals for the summary.
#[derive(Default)]
struct Totals {
    rows: u64,
    paid: u64,
    refunded: u64,
    fees: i128,
}

impl Gateway {
    pub(super) fn statements(&self) -> std::sync::MutexGuard<'_, Statements> {
        lock(&self.statements)
    }

    /// The sandbox control's edits, replacing earlier ones.
    pub(super) fn edit_statements(&self, edits: StatementEdits) {
        self.statements().edits = edits;
    }

    fn row(&self, p: RowParts<'_>) -> Row {
        let yuan = fen_to_yuan;
        let (state, settled, total, refund_id, refund_no, refund, refund_type, refund_state, fee) =
            match p.refund {
                None => (
                    "SUCCESS",
                    yuan(p.amount),
                    yuan(p.amount),
                    "0",
                    "0",
                    yuan(0),
                    "",
                    "",
                    yuan(p.fee),
                ),
                // WeChat Pay shows the fee a refund gives back as a negative amount.
                Some((id, no)) => (
                    "REFUND",
                    yuan(0),
                    yuan(0),
                    id,
                    no,
                    yuan(p.amount),
                    "ORIGINAL",
                    "SUCCESS",
                    format!("-{}", yuan(p.fee)),
                ),
            };
        let at = p.at.with_timezone(&china()).format(TIME_FORMAT).to_string();
        let fields = [
            at.as_str(),
            &self.appid,
            &self.mchid,
            "",
            "",
            p.transaction_id,
            p.out_trade_no,
            "oSandboxPayer0000000000000000",
            p.trade_type,
            state,
            "OTHERS",
            "CNY",
            &settled,
            "0.00",
            refund_id,
            refund_no,
            &refund,
            "0.00",
            refund_type,
            refund_state,
            p.description,
            "",
            &fee,
            "0.60%",
            &total,
            &refund,
            "",
        ];
        Row {
            at: p.at,
            refund: p.refund.is_some(),
            amount: p.amount,
            fee: p.fee,
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// The rows of one transaction on `date`, as `edits` change them.
    fn rows_of(
        &self,
        t: &Transaction,
        date: NaiveDate,
        edits: &StatementEdits,
        rows: &mut Vec<Row>,
    ) {
        if edits.missing.contains(&t.out_trade_no) {
            return;
        }
        let Some(paid_at) = t.paid_at else {
            return;
        };
        let parts = |at, amount, fee, refund| RowParts {
            at,
            transaction_id: &t.transaction_id,
            out_trade_no: &t.out_trade_no,
            trade_type: t.trade_type,
            description: &t.description,
            amount,
            fee,
            refund,
        };
        if china_date(paid_at) == date {
            let amount = edits
                .amounts
                .get(&t.out_trade_no)
                .copied()
                .unwrap_or(t.amount);
            rows.push(self.row(parts(paid_at, amount, fee_of(amount), None)));
        }
        // Refunds give back the fee in proportion, counted on what was refunded so far, so
        // that refunds of the whole amount give back exactly the payment's fee.
        let fee = fee_of(t.amount);
        let mut settled: Vec<_> = t
            .refunds
            .iter()
            .filter(|(_, r)| r.status == RefundState::Success)
            .filter_map(|(no, r)| r.succeeded_at.map(|at| (at, no, r)))
            .collect();
        settled.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut refunded = 0;
        for (at, no, r) in settled {
            let before = share_half_up(fee, refunded, t.amount);
            refunded += r.amount;
            let back = share_half_up(fee, refunded, t.amount) - before;
            if china_date(at) == date {
                rows.push(self.row(parts(at, r.amount, back, Some((&r.refund_id, no)))));
            }
        }
    }

    /// The statement of `date`: gzip of the CSV text.
    fn statement(&self, date: NaiveDate, bill_type: BillType, edits: &StatementEdits) -> Vec<u8> {
        let mut rows = Vec::new();
        for t in self.trades().values() {
            self.rows_of(t, date, edits, &mut rows);
        }
        let noon = china()
            .from_local_datetime(&date.and_hms_opt(12, 0, 0).expect("noon"))
            .single()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        for x in &edits.extra {
            // The same on every asking, so that a re-run reads the same statement.
            let digest = sha1::Sha1::digest(x.out_trade_no.as_bytes());
            let id = format!("4200{}", &hex::encode(digest)[..24]);
            rows.push(self.row(RowParts {
                at: noon,
                transaction_id: &id,
                out_trade_no: &x.out_trade_no,
                trade_type: "NATIVE",
                description: "沙箱额外支付",
                amount: x.amount,
                fee: fee_of(x.amount),
                refund: None,
            }));
        }
        rows.retain(|r| match bill_type {
            BillType::All => true,
            BillType::Success => !r.refund,
            BillType::Refund => r.refund,
        });
        rows.sort_by(|a, b| (a.at, &a.fields[6], a.refund).cmp(&(b.at, &b.fields[6], b.refund)));
        gzip(&csv(&rows))
    }

    /// `GET /v3/bill/tradebill`: where the statement of `bill_date` is.
    pub(super) fn trade_bill(&self, req: &GatewayRequest) -> Answer {
        let uri = &req.uri;
        let Some(date) = query_param(uri, "bill_date")
            .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
        else {
            return param_error("bill_date must be a date YYYY-MM-DD");
        };
        let bill_type = match query_param(uri, "bill_type").as_deref() {
            None | Some("ALL") => BillType::All,
            Some("SUCCESS") => BillType::Success,
            Some("REFUND") => BillType::Refund,
            Some(_) => return param_error("bill_type must be ALL, SUCCESS or REFUND"),
        };
        if query_param(uri, "tar_type").as_deref() != Some("GZIP") {
            return param_error("the simulator serves gzip bills only (tar_type=GZIP)");
        }
        if date > china_date(Utc::now()) {
            return error(
                StatusCode::BAD_REQUEST,
                "NO_STATEMENT_EXIST",
                "账单文件不存在",
            );
        }
        let edits = self.statements().edits.clone();
        let file = self.statement(date, bill_type, &edits);
        let hash = hex::encode(sha1::Sha1::digest(&file));
        let file = if edits.corrupt {
            // Neither a gzip nor the bytes the hash is of.
            file.iter().map(|b| b ^ 0x5a).collect()
        } else {
            file
        };
        let token = crate::crypto::random_hex(24);
        {
            let mut statements = self.statements();
            if statements.files.len() >= KEPT_FILES {
                statements.files.pop_front();
            }
            statements.files.push_back((token.clone(), file));
        }
        let url = format!(
            "{}{}?token={token}",
            base_url(req),
            crate::channels::wechatpay::bill::DOWNLOAD_PATH
        );
        (
            StatusCode::OK,
            json!({ "hash_type": "SHA1", "hash_value": hash, "download_url": url }),
        )
    }

    /// `GET /v3/billdownload/file?token=…` (authenticated): the file, once, unsigned.
    pub(super) fn bill_file(&self, req: &GatewayRequest) -> Result<Response, Answer> {
        let token = query_param(&req.uri, "token").unwrap_or_default();
        let mut statements = self.statements();
        let at = statements.files.iter().position(|(t, _)| *t == token);
        let Some((_, file)) = at.and_then(|i| statements.files.remove(i)) else {
            return Err(error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_EXISTS",
                "no such bill file (the token is used or expired)",
            ));
        };
        Ok((
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/octet-stream")],
            file,
        )
            .into_response())
    }
}

/// The simulator's own address as the caller reached it (`Host`), for `download_url`.
fn base_url(req: &GatewayRequest) -> String {
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "127.0.0.1".into());
    format!("http://{host}")
}

/// The statement text: BOM, header, back-ticked rows, summary header and row.
fn csv(rows: &[Row]) -> String {
    let mut out = String::from("\u{feff}");
    out.push_str(&COLUMNS.join(","));
    out.push_str("\r\n");
    let mut totals = Totals::default();
    for r in rows {
        totals.rows += 1;
        if r.refund {
            totals.refunded += r.amount;
            totals.fees -= i128::from(r.fee);
        } else {
            totals.paid += r.amount;
            totals.fees += i128::from(r.fee);
        }
        push_row(&mut out, r.fields.iter().map(String::as_str));
    }
    out.push_str(&SUMMARY_COLUMNS.join(","));
    out.push_str("\r\n");
    let fees = match u64::try_from(totals.fees) {
        Ok(f) => fen_to_yuan(f),
        Err(_) => format!("-{}", fen_to_yuan(totals.fees.unsigned_abs() as u64)),
    };
    let (paid, refunded) = (fen_to_yuan(totals.paid), fen_to_yuan(totals.refunded));
    let count = totals.rows.to_string();
    let summary = [
        count.as_str(),
        &paid,
        &refunded,
        "0.00",
        &fees,
        &paid,
        &refunded,
    ];
    push_row(&mut out, summary.into_iter());
    out
}

fn push_row<'a>(out: &mut String, fields: impl Iterator<Item = &'a str>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('`');
        out.push_str(f);
    }
    out.push_str("\r\n");
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec does not fail.
    let _ = gz.write_all(text.as_bytes());
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests;
