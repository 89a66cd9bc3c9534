//! Trade statements: `alipay.data.dataservice.bill.downloadurl.query` answers a one-time
//! download address on this simulator, and `GET /bills/download?token=…` serves the ZIP.
//!
//! The statement of a day is built from the simulator's trades when it is asked for: payments
//! paid that day (China time) and refunds that succeeded that day, with a 0.6% fee (rounded
//! half up to the fen; refunds give back the proportional part). The sandbox control's
//! statement edits (`PUT /sandbox/{channel}/statements`) add payments (to every statement served
//! while they hold, paid at noon of its day), change payments' amounts, leave orders (and their
//! refunds) out, or spoil the file (cut in half: no ZIP directory). The file's layout is modelled (see `channels/alipay/bill.rs`).

use std::collections::VecDeque;
use std::io::{Cursor, Seek, Write};

use axum::response::{IntoResponse, Response};
use chrono::{FixedOffset, NaiveDate, Utc};
use http::StatusCode;
use serde_json::{json, Map, Value};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::handlers::{biz_err, success, Answer, GwError};
use super::state::Trade;
use super::Gateway;
use crate::bills::LineKind;
use crate::channels::alipay::bill::{DETAIL_COLUMNS, TYPE_PAYMENT, TYPE_REFUND};
use crate::channels::alipay::transformers::parse_china_timestamp;
use crate::money::fen_to_yuan;
use crate::sandbox::kit::{lock, text};
use crate::sandbox::shared::StatementEdits;
use crate::sandbox::GatewayRequest;

/// Where statements are downloaded from.
pub(super) const DOWNLOAD_PATH: &str = "/bills/download";

/// The merchant's Alipay account the statements are of (a sample partner id).
const ACCOUNT: &str = "2088102177846000";

/// Statements kept for download at once (older ones are dropped).
const KEPT: usize = 8;

/// The statements side of the simulator.
#[derive(Debug, Default)]
pub(super) struct Statements {
    edits: StatementEdits,
    /// Files waiting to be downloaded, by one-time token, oldest first.
    files: VecDeque<(String, Vec<u8>)>,
}

/// One detail row of a statement.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub kind: LineKind,
    pub trade_no: String,
    pub out_trade_no: String,
    pub subject: String,
    /// China time, `yyyy-MM-dd HH:mm:ss`.
    pub created: String,
    pub finished: String,
    /// A payment: paid; a refund: refunded (fen).
    pub amount: u64,
    /// A payment: charged; a refund: given back (fen).
    pub fee: u64,
    /// A refund's `out_request_no`.
    pub refund_no: String,
}

/// Alipay's fee on a payment: 0.6%, half up to the fen.
pub(crate) fn fee_of(amount: u64) -> u64 {
    // Saturating: the control's extra payments may name any amount.
    amount.saturating_mul(6).saturating_add(500) / 1000
}

/// The part of `fee` that `refunded` of `amount` stands for, half up to the fen.
fn share_of(fee: u64, refunded: u64, amount: u64) -> u64 {
    if amount == 0 {
        return 0;
    }
    let exact = u128::from(fee) * u128::from(refunded);
    let rounded = (exact * 2 + u128::from(amount)) / (2 * u128::from(amount));
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

fn china_date(timestamp: &str) -> Option<NaiveDate> {
    let china = FixedOffset::east_opt(8 * 3600)?;
    parse_china_timestamp(timestamp).map(|t| t.with_timezone(&china).date_naive())
}

/// The trade's rows on `date`: its payment if paid that day, and its refunds of that day. Each
/// refund gives back the fee of what was refunded up to it minus what earlier refunds gave,
/// so that a full refund gives back exactly the fee.
fn trade_rows(t: &Trade, date: NaiveDate, shown_amount: Option<u64>) -> Vec<Row> {
    let Some(paid_at) = &t.paid_at else {
        return Vec::new();
    };
    let row = |kind, finished: &str, amount, fee, refund_no: &str| Row {
        kind,
        trade_no: t.trade_no.clone(),
        out_trade_no: t.out_trade_no.clone(),
        subject: t.subject.clone(),
        created: t.created.clone(),
        finished: finished.to_string(),
        amount,
        fee,
        refund_no: refund_no.to_string(),
    };
    let mut rows = Vec::new();
    if china_date(paid_at) == Some(date) {
        let amount = shown_amount.unwrap_or(t.amount);
        rows.push(row(LineKind::Payment, paid_at, amount, fee_of(amount), ""));
    }
    let fee = fee_of(t.amount);
    let mut refunds: Vec<(&str, &str, u64)> = t
        .refunds
        .iter()
        .map(|(no, amount)| {
            let at = t.refunded_at.get(no).map(String::as_str).unwrap_or(paid_at);
            (at, no.as_str(), *amount)
        })
        .collect();
    refunds.sort();
    let mut before = 0;
    for (at, no, amount) in refunds {
        let back = share_of(fee, before + amount, t.amount)
            .saturating_sub(share_of(fee, before, t.amount));
        before += amount;
        if china_date(at) == Some(date) {
            rows.push(row(LineKind::Refund, at, amount, back, no));
        }
    }
    rows
}

impl Gateway {
    pub(super) fn statements(&self) -> std::sync::MutexGuard<'_, Statements> {
        lock(&self.statements)
    }

    /// The control's statement edits replace the earlier ones.
    pub(super) fn set_edits(&self, edits: StatementEdits) {
        self.statements().edits = edits;
    }

    /// `alipay.data.dataservice.bill.downloadurl.query`: a day not over yet in China has no
    /// statement; otherwise the statement is built now and kept under a one-time token.
    pub(super) fn bill_query(
        &self,
        biz: &Map<String, Value>,
        base: &str,
    ) -> Result<Answer, GwError> {
        let invalid = |m: &str| {
            (
                "40002",
                "Invalid Arguments",
                "isv.invalid-parameter".to_string(),
                m.to_string(),
            )
        };
        if text(biz.get("bill_type")) != "trade" {
            return Err(invalid("the simulator serves bill_type trade only"));
        }
        let date = NaiveDate::parse_from_str(&text(biz.get("bill_date")), "%Y-%m-%d")
            .map_err(|_| invalid("bill_date must be yyyy-MM-dd"))?;
        let china = FixedOffset::east_opt(8 * 3600).expect("valid offset");
        if date > Utc::now().with_timezone(&china).date_naive() {
            return Err(biz_err("isp.bill_not_exist", "账单不存在"));
        }
        let bytes = self
            .statement_file(date)
            .map_err(|e| biz_err("isp.unknow-error", &format!("statement not written: {e}")))?;
        let token = crate::crypto::random_hex(16);
        {
            let mut s = self.statements();
            if s.files.len() >= KEPT {
                s.files.pop_front();
            }
            s.files.push_back((token.clone(), bytes));
        }
        let mut ok = success();
        ok.insert(
            "bill_download_url".into(),
            json!(format!("{base}{DOWNLOAD_PATH}?token={token}")),
        );
        Ok(ok)
    }

    /// The statement of `date` as served: ZIP bytes (or, with `corrupt`, bytes that are not
    /// a ZIP).
    pub(super) fn statement_file(&self, date: NaiveDate) -> std::io::Result<Vec<u8>> {
        let edits = self.statements().edits.clone();
        let mut rows: Vec<Row> = self
            .trades()
            .values()
            .filter(|t| !edits.missing.contains(&t.out_trade_no))
            .flat_map(|t| trade_rows(t, date, edits.amounts.get(&t.out_trade_no).copied()))
            .collect();
        let noon = format!("{} 12:00:00", date.format("%Y-%m-%d"));
        for (i, extra) in edits.extra.iter().enumerate() {
            rows.push(Row {
                kind: LineKind::Payment,
                trade_no: format!("{}22009{:011}", date.format("%Y%m%d"), i + 1),
                out_trade_no: extra.out_trade_no.clone(),
                subject: "sandbox extra payment".into(),
                created: noon.clone(),
                finished: noon.clone(),
                amount: extra.amount,
                fee: fee_of(extra.amount),
                refund_no: String::new(),
            });
        }
        rows.sort_by(|a, b| (&a.finished, &a.out_trade_no).cmp(&(&b.finished, &b.out_trade_no)));
        let mut bytes = write_statement(Cursor::new(Vec::new()), date, rows)?.into_inner();
        if edits.corrupt {
            // Without its end (the central directory) a ZIP does not open.
            bytes.truncate(bytes.len() / 2);
        }
        Ok(bytes)
    }

    /// `GET /bills/download?token=…`: the file, once.
    pub(super) fn download(&self, req: &GatewayRequest) -> Response {
        if req.method != http::Method::GET {
            return (StatusCode::METHOD_NOT_ALLOWED, "GET only").into_response();
        }
        let token = form_urlencoded::parse(req.uri.query().unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let file = {
            let mut s = self.statements();
            let at = s.files.iter().position(|(t, _)| *t == token);
            at.and_then(|i| s.files.remove(i))
        };
        match file {
            Some((_, bytes)) => (
                [
                    (http::header::CONTENT_TYPE, "application/zip"),
                    (
                        http::header::CONTENT_DISPOSITION,
                        "attachment; filename=\"statement.csv.zip\"",
                    ),
                ],
                bytes,
            )
                .into_response(),
            None => (
                StatusCode::NOT_FOUND,
                "the download address is unknown, used or expired",
            )
                .into_response(),
        }
    }
}

/// Writes a statement (detail and summary CSVs, GBK, deflated) to `out`, row by row.
pub(crate) fn write_statement<W: Write + Seek>(
    out: W,
    date: NaiveDate,
    rows: impl IntoIterator<Item = Row>,
) -> std::io::Result<W> {
    let mut zip = ZipWriter::new(out);
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    let day = date.format("%Y%m%d");
    let span = format!(
        "#起始日期：[{} 00:00:00]   终止日期：[{} 00:00:00]",
        date.format("%Y年%m月%d日"),
        date.succ_opt().unwrap_or(date).format("%Y年%m月%d日")
    );
    let exported = format!(
        "#导出时间：[{}]",
        Utc::now()
            .with_timezone(&FixedOffset::east_opt(8 * 3600).expect("valid offset"))
            .format("%Y年%m月%d日 %H:%M:%S")
    );
    zip.start_file(format!("{ACCOUNT}0156_{day}_业务明细.csv"), options)?;
    let line = |zip: &mut ZipWriter<W>, text: &str| -> std::io::Result<()> {
        let (bytes, _, _) = encoding_rs::GBK.encode(text);
        zip.write_all(&bytes)?;
        zip.write_all(b"\r\n")
    };
    line(&mut zip, "#支付宝交易记录明细查询")?;
    line(&mut zip, &format!("#账号：[{ACCOUNT}0156]"))?;
    line(&mut zip, &span)?;
    line(&mut zip, &format!("#{:-^40}", "业务明细列表"))?;
    line(&mut zip, &DETAIL_COLUMNS.join(","))?;
    let mut totals = Totals::default();
    for row in rows {
        totals.add(&row);
        line(&mut zip, &detail_line(&row))?;
    }
    line(&mut zip, &format!("#{:-^40}", "业务明细列表结束"))?;
    line(
        &mut zip,
        &format!(
            "#交易合计：{}笔，商家实收共{}元，商家优惠共0.00元，支付宝优惠共0.00元",
            totals.payments,
            fen_to_yuan(totals.paid)
        ),
    )?;
    line(
        &mut zip,
        &format!(
            "#退款合计：{}笔，商家实收退款共{}元，商家优惠退款共0.00元，支付宝优惠退款共0.00元",
            totals.refunds,
            signed(totals.refunded, true)
        ),
    )?;
    line(&mut zip, &exported)?;
    zip.start_file(format!("{ACCOUNT}0156_{day}_业务明细(汇总).csv"), options)?;
    line(&mut zip, "#支付宝业务汇总查询")?;
    line(&mut zip, &format!("#账号：[{ACCOUNT}0156]"))?;
    line(&mut zip, &span)?;
    line(&mut zip, "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,服务费（元）,实收净额（元）")?;
    let received = totals.paid as i128 - totals.refunded as i128;
    let fees = totals.fees_back as i128 - totals.fees as i128;
    let net = received + fees;
    line(
        &mut zip,
        &format!(
            "合计,,{},{},{},{},0.00,0.00,{},{}",
            totals.payments,
            totals.refunds,
            signed_i(received),
            signed_i(received),
            signed_i(fees),
            signed_i(net)
        ),
    )?;
    line(&mut zip, &format!("#{:-^40}", "业务汇总列表结束"))?;
    line(&mut zip, &exported)?;
    Ok(zip.finish()?)
}

/// What the summaries add up.
#[derive(Default)]
struct Totals {
    payments: u64,
    refunds: u64,
    paid: u64,
    refunded: u64,
    fees: u64,
    fees_back: u64,
}

impl Totals {
    fn add(&mut self, row: &Row) {
        match row.kind {
            LineKind::Payment => {
                self.payments += 1;
                self.paid = self.paid.saturating_add(row.amount);
                self.fees = self.fees.saturating_add(row.fee);
            }
            LineKind::Refund => {
                self.refunds += 1;
                self.refunded = self.refunded.saturating_add(row.amount);
                self.fees_back = self.fees_back.saturating_add(row.fee);
            }
        }
    }
}

/// `fen` as signed yuan text.
fn signed(fen: u64, negative: bool) -> String {
    if negative && fen != 0 {
        format!("-{}", fen_to_yuan(fen))
    } else {
        fen_to_yuan(fen)
    }
}

fn signed_i(fen: i128) -> String {
    signed(fen.unsigned_abs() as u64, fen < 0)
}

/// A CSV field: quoted when it holds a comma, quote or line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// One detail row as Alipay writes it: ids padded with a tab (so spreadsheets keep their
/// digits), a payment's fee negative, a refund's amounts negative and its fee given back.
fn detail_line(r: &Row) -> String {
    let refund = r.kind == LineKind::Refund;
    let (kind, refund_no) = match r.kind {
        LineKind::Payment => (TYPE_PAYMENT, String::new()),
        LineKind::Refund => (TYPE_REFUND, format!("{}\t", field(&r.refund_no))),
    };
    let amount = signed(r.amount, refund);
    let zero = "0.00";
    let cells: [String; 25] = [
        format!("{}\t", r.trade_no),
        format!("{}\t", field(&r.out_trade_no)),
        kind.to_string(),
        field(&r.subject),
        r.created.clone(),
        r.finished.clone(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        "tes***@example.com".into(),
        amount.clone(),
        amount,
        zero.into(),
        zero.into(),
        zero.into(),
        zero.into(),
        zero.into(),
        String::new(),
        zero.into(),
        zero.into(),
        refund_no,
        signed(r.fee, !refund),
        zero.into(),
        String::new(),
    ];
    cells.join(",")
}

/// The simulator's base address as the caller reached it (`http://<Host>`; the loopback
/// address when a request names no host, which HTTP/1.1 clients always do).
pub(super) fn base_url(req: &GatewayRequest) -> String {
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}
