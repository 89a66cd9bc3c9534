//! WeChat Pay trade bills (`GET /v3/bill/tradebill`, `bill_type=ALL`, `tar_type=GZIP`): the
//! query's path and answer, and the statement file read as a stream of [`BillLine`]s.
//!
//! The file (reference §7): UTF-8 with a BOM, a header line, data rows whose every field is
//! prefixed with a back-tick and separated by `,`, then a summary header (`总交易单数,…`) and a
//! summary row. The column set is the trade bill's ALL set ([`COLUMNS`]); columns are found by
//! their header name, so a file with columns added or reordered still reads.
//!
//! Rows: `交易状态` SUCCESS is a payment, REFUND a refund (`退款状态` SUCCESS; a refund still
//! processing, closed or gone wrong is skipped: no money settled by it), REVOKED and the other
//! known trade states are skipped (nothing was taken); an unfamiliar state is an error, never
//! silently dropped money.

use std::io::{BufRead, BufReader, Read};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use flate2::read::GzDecoder;
use serde::Deserialize;

use super::transformers::TradeState;
use crate::bills::{
    BillError, BillLine, BillLocation, LineKind, Lines, StatementFile, StatementFormat,
};
use crate::channels::wire::Known;
use crate::channels::Outcome;
use crate::money::Fen;

/// Where trade bills are asked for.
pub const TRADEBILL_PATH: &str = "/v3/bill/tradebill";
/// Where bill files are downloaded from (the path of `download_url`).
pub const DOWNLOAD_PATH: &str = "/v3/billdownload/file";

/// The trade bill's columns (`bill_type=ALL`), in the order WeChat Pay writes them.
pub const COLUMNS: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];

/// The summary's columns; the first names the summary header line.
pub const SUMMARY_COLUMNS: [&str; 7] = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];

/// The longest line read: a file without line ends is not read into memory whole.
pub const MAX_LINE_BYTES: u64 = 64 * 1024;

/// The format of `交易时间` (China time).
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// `bill_date=…&bill_type=ALL&tar_type=GZIP`: the path with query a trade bill is asked at.
pub fn query_path(date: NaiveDate) -> String {
    format!(
        "{TRADEBILL_PATH}?bill_date={}&bill_type=ALL&tar_type=GZIP",
        date.format("%Y-%m-%d")
    )
}

/// `hash_type` of a bill answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum HashType {
    #[serde(rename = "SHA1")]
    Sha1,
}

/// Answer to a trade-bill query.
#[derive(Debug, Default, Deserialize)]
pub struct BillResponse {
    pub hash_type: Option<Known<HashType>>,
    pub hash_value: Option<String>,
    pub download_url: Option<String>,
}

/// A verified 2xx answer to a trade-bill query: where the file is and its SHA-1.
pub fn location(body: &[u8]) -> Outcome {
    let unknown = |reason: &str| Outcome::Unknown {
        reason: reason.into(),
    };
    let Ok(r) = serde_json::from_slice::<BillResponse>(body) else {
        return unknown("2xx answer is not a trade-bill location");
    };
    match r.hash_type.as_ref().and_then(Known::known) {
        Some(HashType::Sha1) => {}
        None => return unknown("trade-bill answer without a known hash_type"),
    }
    let sha1 = r
        .hash_value
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|h| h.to_ascii_lowercase());
    let url = r
        .download_url
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    match (url, sha1) {
        (Some(url), Some(sha1)) => Outcome::Bill(BillLocation {
            url,
            sha1: Some(sha1),
            format: StatementFormat::Gzip,
        }),
        _ => unknown("trade-bill answer without a download_url and SHA-1 hash_value"),
    }
}

/// Reads a stored trade bill (gzip) as a stream of lines; the header is read at once, so a
/// file that is not a gzip of a trade bill fails here.
pub fn lines(file: StatementFile) -> Result<Lines, BillError> {
    read(file)
}

/// Reads a gzip trade bill from `input` as a stream of lines, one row in memory at a time.
pub fn read<R: Read + Send + 'static>(input: R) -> Result<Lines, BillError> {
    let mut reader = Reader {
        text: Text {
            input: BufReader::with_capacity(64 * 1024, GzDecoder::new(input)),
            buf: Vec::with_capacity(1024),
            line: 0,
        },
        columns: Columns::default(),
        width: 0,
        done: false,
    };
    reader.read_header()?;
    Ok(Box::new(reader))
}

/// Where the columns the lines need are in a row.
#[derive(Debug, Default)]
struct Columns {
    time: usize,
    trade_no: usize,
    out_trade_no: usize,
    state: usize,
    settled: usize,
    refund_no: usize,
    out_refund_no: usize,
    refund: usize,
    refund_state: usize,
    fee: usize,
    /// `订单金额` and `申请退款金额`: newer columns, preferred when present.
    total: Option<usize>,
    requested_refund: Option<usize>,
}

impl Columns {
    fn from_header(names: &[&str]) -> Result<Columns, String> {
        let at = |name: &str| names.iter().position(|n| *n == name);
        let need = |name: &str| at(name).ok_or_else(|| format!("the header has no {name}"));
        Ok(Columns {
            time: need("交易时间")?,
            trade_no: need("微信订单号")?,
            out_trade_no: need("商户订单号")?,
            state: need("交易状态")?,
            settled: need("应结订单金额")?,
            refund_no: need("微信退款单号")?,
            out_refund_no: need("商户退款单号")?,
            refund: need("退款金额")?,
            refund_state: need("退款状态")?,
            fee: need("手续费")?,
            total: at("订单金额"),
            requested_refund: at("申请退款金额"),
        })
    }
}

/// The file's lines, one in memory at a time.
struct Text<R> {
    input: R,
    buf: Vec<u8>,
    /// The number of the line last read (the header is line 1).
    line: u64,
}

/// The streaming reader behind [`lines`].
struct Reader<R> {
    text: Text<R>,
    columns: Columns,
    /// The number of columns every row has.
    width: usize,
    /// The summary was reached, or an error was given: nothing more.
    done: bool,
}

fn io_error(e: std::io::Error) -> BillError {
    use std::io::ErrorKind as K;
    match e.kind() {
        // What the gzip decoder says of bytes that do not unpack.
        K::InvalidInput | K::InvalidData | K::UnexpectedEof => {
            BillError::Damaged(format!("the gzip does not unpack: {e}"))
        }
        _ => BillError::Io(e.to_string()),
    }
}

/// A row's fields: every data field starts with a back-tick, so rows split at `` ,` `` (a
/// comma inside a product name stays in its field); a field without one splits at `,`.
fn fields(text: &str) -> Vec<&str> {
    match text.strip_prefix('`') {
        Some(rest) => rest.split(",`").collect(),
        None => text
            .split(',')
            .map(|f| f.strip_prefix('`').unwrap_or(f))
            .collect(),
    }
}

impl<R: BufRead> Text<R> {
    /// The next line's number and text without its line ending; `None` at the end.
    fn next_text(&mut self) -> Result<Option<(u64, &str)>, BillError> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(io_error)?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let line = self.line;
        if n as u64 > MAX_LINE_BYTES {
            return Err(BillError::Line {
                line,
                why: format!("longer than {MAX_LINE_BYTES} bytes"),
            });
        }
        let text = std::str::from_utf8(&self.buf).map_err(|_| BillError::Line {
            line,
            why: "not UTF-8".into(),
        })?;
        let text = text.trim_end_matches(['\n', '\r']);
        let text = if line == 1 {
            text.trim_start_matches('\u{feff}')
        } else {
            text
        };
        Ok(Some((line, text)))
    }
}

impl<R: BufRead> Reader<R> {
    fn read_header(&mut self) -> Result<(), BillError> {
        let (_, header) = self.text.next_text()?.ok_or_else(|| BillError::Line {
            line: 1,
            why: "the statement is empty".into(),
        })?;
        let names = fields(header);
        let width = names.len();
        self.columns =
            Columns::from_header(&names).map_err(|why| BillError::Line { line: 1, why })?;
        self.width = width;
        Ok(())
    }

    /// The next statement line; `None` after the summary header.
    fn next_line(&mut self) -> Result<Option<BillLine>, BillError> {
        loop {
            let width = self.width;
            let after = self.text.line + 1;
            let Some((line, text)) = self.text.next_text()? else {
                return Err(BillError::Line {
                    line: after,
                    why: "the statement ends without its summary".into(),
                });
            };
            if text.is_empty() {
                continue;
            }
            let row = fields(text);
            if row.first() == Some(&SUMMARY_COLUMNS[0]) {
                // The summary row is not a line; reading on to the end lets the gzip check
                // its CRC, so a file cut short or spoiled there is still found damaged.
                while self.text.next_text()?.is_some() {}
                return Ok(None);
            }
            if row.len() != width {
                return Err(BillError::Line {
                    line,
                    why: format!("{} fields where the header has {width}", row.len()),
                });
            }
            match row_line(&self.columns, &row) {
                Ok(Some(l)) => return Ok(Some(l)),
                Ok(None) => continue,
                Err(why) => return Err(BillError::Line { line, why }),
            }
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<BillLine, BillError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_line();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next.transpose()
    }
}

/// A yuan amount of a row (`0.01`); `negative`: WeChat Pay writes it with a minus sign
/// (the fee a refund gives back), which is dropped.
fn amount(row: &[&str], at: usize, name: &str, negative: bool) -> Result<Fen, String> {
    let text = row[at].trim();
    let digits = match text.strip_prefix('-') {
        Some(d) if negative => d,
        _ => text,
    };
    Fen::from_yuan(digits).ok_or_else(|| format!("{name} {text:?} is not an amount"))
}

/// The first of the columns that is present and not empty in `row`.
fn first_present(row: &[&str], columns: &[Option<usize>]) -> Option<usize> {
    columns
        .iter()
        .flatten()
        .copied()
        .find(|&i| !row[i].trim().is_empty())
}

/// `交易时间` (China time) in UTC.
pub fn china_time(text: &str) -> Option<DateTime<Utc>> {
    let china = chrono::FixedOffset::east_opt(8 * 3600)?;
    let naive = NaiveDateTime::parse_from_str(text.trim(), TIME_FORMAT).ok()?;
    china
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

fn non_empty(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && t != "0").then(|| t.to_string())
}

/// One data row as a statement line; `None` for a row that moved no money.
fn row_line(c: &Columns, row: &[&str]) -> Result<Option<BillLine>, String> {
    let state_text = row[c.state].trim();
    let kind = match TradeState::parse(state_text) {
        Some(TradeState::Success) => LineKind::Payment,
        Some(TradeState::Refund) => match row[c.refund_state].trim() {
            "SUCCESS" | "" => LineKind::Refund,
            // Not settled (yet), closed, or gone wrong at the bank: no money moved by this row.
            "PROCESSING" | "REFUNDCLOSE" | "CHANGE" => return Ok(None),
            other => return Err(format!("unfamiliar 退款状态 {other:?}")),
        },
        Some(
            TradeState::Revoked
            | TradeState::NotPay
            | TradeState::Closed
            | TradeState::UserPaying
            | TradeState::PayError,
        ) => return Ok(None),
        None => return Err(format!("unfamiliar 交易状态 {state_text:?}")),
    };
    let out_trade_no = row[c.out_trade_no].trim();
    if out_trade_no.is_empty() {
        return Err("no 商户订单号".into());
    }
    let at = china_time(row[c.time])
        .ok_or_else(|| format!("交易时间 {:?} is not a time", row[c.time]))?;
    let line = match kind {
        LineKind::Payment => {
            let i = first_present(row, &[c.total, Some(c.settled)])
                .ok_or("a payment without 订单金额")?;
            BillLine {
                kind,
                out_trade_no: out_trade_no.to_string(),
                channel_trade_no: non_empty(row[c.trade_no]),
                out_refund_no: None,
                channel_refund_no: None,
                amount: amount(row, i, "订单金额", false)?,
                fee: amount(row, c.fee, "手续费", false)?,
                at: Some(at),
            }
        }
        LineKind::Refund => {
            let i = first_present(row, &[c.requested_refund, Some(c.refund)])
                .ok_or("a refund without 退款金额")?;
            let out_refund_no =
                non_empty(row[c.out_refund_no]).ok_or("a refund without 商户退款单号")?;
            BillLine {
                kind,
                out_trade_no: out_trade_no.to_string(),
                channel_trade_no: non_empty(row[c.trade_no]),
                out_refund_no: Some(out_refund_no),
                channel_refund_no: non_empty(row[c.refund_no]),
                amount: amount(row, i, "退款金额", false)?,
                fee: amount(row, c.fee, "手续费", true)?,
                at: Some(at),
            }
        }
    };
    Ok(Some(line))
}

#[cfg(test)]
mod tests;
