//! Alipay trade statements (账单): the query for a day's download address, and reading the
//! downloaded file as a stream of [`BillLine`]s.
//!
//! The file is a ZIP of GBK CSVs (protocol reference §8.10, unconfirmed): a detail file
//! (`…_业务明细.csv`) and a summary (`…_业务明细(汇总).csv`). The detail layout below is
//! **modelled** on Alipay's 业务明细 file as merchants know it: `#` comment lines, the header,
//! one row per trade or refund, then `#…结束` and summary comment lines. The simulator writes
//! exactly this layout (`sandbox/alipay/bills.rs`), from [`DETAIL_COLUMNS`].
//!
//! Reading never holds the file: the ZIP's directory is read to find the detail entry, and
//! its bytes are inflated, split into lines and decoded one line at a time.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use chrono::NaiveDate;
use flate2::read::DeflateDecoder;
use flate2::CrcReader;
use serde::{Deserialize, Serialize};
use zip::{CompressionMethod, ZipArchive};

use super::transformers::parse_china_timestamp;
use crate::bills::{BillError, BillLine, LineKind, Lines};
use crate::money::Fen;

/// The gateway method that answers where a day's statement is.
pub const METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// `bill_type` of the query: payroute reads the trade statement (业务明细).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillType {
    Trade,
}

/// `biz_content` of the query.
#[derive(Debug, Serialize)]
pub struct BillQueryBiz {
    pub bill_type: BillType,
    /// `yyyy-MM-dd`: a daily statement (China time).
    pub bill_date: String,
}

impl BillQueryBiz {
    /// The trade statement of `date`.
    pub fn trade(date: NaiveDate) -> Self {
        BillQueryBiz {
            bill_type: BillType::Trade,
            bill_date: date.format("%Y-%m-%d").to_string(),
        }
    }
}

/// Answer to the query.
#[derive(Debug, Default, Deserialize)]
pub struct BillQueryResponse {
    /// The short-lived download address (about 30 s).
    pub bill_download_url: Option<String>,
}

/// The detail file's name contains this, and the summary's also [`SUMMARY_MARK`].
pub const DETAIL_MARK: &str = "业务明细";
/// What tells the summary file from the detail file.
pub const SUMMARY_MARK: &str = "汇总";
/// The line that ends the detail rows (what follows is a summary).
pub const END_MARK: &str = "结束";

/// The detail file's columns, in order (modelled; see the module comment).
pub const DETAIL_COLUMNS: [&str; 25] = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
];

/// `业务类型` of a payment row.
pub const TYPE_PAYMENT: &str = "交易";
/// `业务类型` of a refund row.
pub const TYPE_REFUND: &str = "退款";

/// A line longer than this is not a statement line (bounds what one line may take in memory).
const MAX_LINE: u64 = 64 * 1024;

/// Opens a stored statement and returns its detail rows as a stream. The ZIP directory is
/// read here (a file that is not a ZIP, or has no detail file, is [`BillError::Damaged`]);
/// the rows are read as the iterator is driven. The stream ends after its first error.
pub fn read_statement(file: File) -> Result<Lines, BillError> {
    read(file)
}

/// Reads an Alipay statement ZIP from `input` as [`read_statement`] does a stored one.
pub fn read<R: Read + Seek + Send + 'static>(input: R) -> Result<Lines, BillError> {
    let (file, entry) = detail_entry(input)?;
    let reader = entry.open(file)?;
    Ok(Box::new(DetailLines {
        reader: BufReader::new(CrcReader::new(reader)),
        crc: entry.crc,
        line: 0,
        columns: None,
        ended: false,
        done: false,
        buf: Vec::new(),
    }))
}

/// Where the detail file's bytes are in the ZIP.
struct Entry {
    data_start: u64,
    compressed_size: u64,
    compression: CompressionMethod,
    crc: u32,
}

impl Entry {
    /// The detail file's content, inflated, read straight from the stored file.
    fn open<R: Read + Seek + Send + 'static>(
        &self,
        mut file: R,
    ) -> Result<Box<dyn Read + Send>, BillError> {
        file.seek(SeekFrom::Start(self.data_start))
            .map_err(|e| BillError::Io(e.to_string()))?;
        let raw = file.take(self.compressed_size);
        match self.compression {
            CompressionMethod::Stored => Ok(Box::new(raw)),
            CompressionMethod::Deflated => Ok(Box::new(DeflateDecoder::new(raw))),
            other => Err(BillError::Damaged(format!(
                "the detail file is packed with {other:?}, not deflate"
            ))),
        }
    }
}

/// A ZIP entry's name: UTF-8 when it is (the UTF-8 flag, or plain ASCII), else GBK, which is
/// how Chinese Windows tools and Alipay's own files write names without the flag.
fn entry_name(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::GBK
            .decode_without_bom_handling(raw)
            .0
            .into_owned(),
    }
}

/// Finds the detail file (its name holds 业务明细 but not 汇总).
fn detail_entry<R: Read + Seek>(file: R) -> Result<(R, Entry), BillError> {
    let mut zip = ZipArchive::new(file)
        .map_err(|e| BillError::Damaged(format!("not a readable ZIP: {e}")))?;
    let index = zip
        .file_names_raw()
        .position(|raw| {
            let name = entry_name(raw);
            name.contains(DETAIL_MARK) && !name.contains(SUMMARY_MARK)
        })
        .ok_or_else(|| BillError::Damaged("the ZIP holds no 业务明细 detail file".into()))?;
    let entry = {
        let f = zip
            .by_index_raw(index)
            .map_err(|e| BillError::Damaged(format!("detail file: {e}")))?;
        if f.encrypted() {
            return Err(BillError::Damaged("the detail file is encrypted".into()));
        }
        Entry {
            data_start: f
                .data_start()
                .ok_or_else(|| BillError::Damaged("detail file without data".into()))?,
            compressed_size: f.compressed_size(),
            compression: f.compression(),
            crc: f.crc32(),
        }
    };
    Ok((zip.into_inner(), entry))
}

/// Column positions in the detail file, from its header.
struct Columns {
    trade_no: usize,
    out_trade_no: usize,
    kind: usize,
    finished: usize,
    order_amount: usize,
    received: usize,
    refund_no: usize,
    fee: usize,
    count: usize,
}

impl Columns {
    fn from_header(fields: &[String]) -> Result<Self, String> {
        let at = |name: &str| {
            fields
                .iter()
                .position(|f| f == name)
                .ok_or_else(|| format!("the header has no {name} column"))
        };
        Ok(Columns {
            trade_no: at("支付宝交易号")?,
            out_trade_no: at("商户订单号")?,
            kind: at("业务类型")?,
            finished: at("完成时间")?,
            order_amount: at("订单金额（元）")?,
            received: at("商家实收（元）")?,
            refund_no: at("退款批次号/请求号")?,
            fee: at("服务费（元）")?,
            count: fields.len(),
        })
    }

    /// One row as a normalised line.
    fn line(&self, f: &[String]) -> Result<BillLine, String> {
        if f.len() != self.count {
            return Err(format!(
                "{} fields where the header has {}",
                f.len(),
                self.count
            ));
        }
        let out_trade_no = f[self.out_trade_no].clone();
        if out_trade_no.is_empty() {
            return Err("no 商户订单号".into());
        }
        let fee = signed_yuan(&f[self.fee]).map_err(|e| format!("服务费（元）: {e}"))?;
        let at = match f[self.finished].as_str() {
            "" => None,
            t => Some(
                parse_china_timestamp(t).ok_or_else(|| format!("完成时间 {t} is not a time"))?,
            ),
        };
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        let (kind, amount, out_refund_no) = match f[self.kind].as_str() {
            TYPE_PAYMENT => {
                let (negative, amount) = signed_yuan(&f[self.order_amount])
                    .map_err(|e| format!("订单金额（元）: {e}"))?;
                if negative {
                    return Err("a payment with a negative 订单金额（元）".into());
                }
                (LineKind::Payment, amount, None)
            }
            // The refunded amount is the one the file shows negative (商家实收, or 订单金额).
            TYPE_REFUND => {
                let order = signed_yuan(&f[self.order_amount])
                    .map_err(|e| format!("订单金额（元）: {e}"))?;
                let received =
                    signed_yuan(&f[self.received]).map_err(|e| format!("商家实收（元）: {e}"))?;
                let amount = match (order, received) {
                    ((true, a), _) | (_, (true, a)) => a,
                    _ => return Err("a refund without a negative amount".into()),
                };
                (LineKind::Refund, amount, some(&f[self.refund_no]))
            }
            other => return Err(format!("unknown 业务类型 {other}")),
        };
        Ok(BillLine {
            kind,
            out_trade_no,
            channel_trade_no: some(&f[self.trade_no]),
            out_refund_no,
            channel_refund_no: None,
            amount,
            fee: fee.1,
            at,
        })
    }
}

/// A signed yuan amount (`-50.00`, `0.60`, empty = 0): (negative, magnitude in fen).
fn signed_yuan(text: &str) -> Result<(bool, Fen), String> {
    if text.is_empty() {
        return Ok((false, Fen::ZERO));
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    Fen::from_yuan(digits)
        .map(|fen| (negative && fen != Fen::ZERO, fen))
        .ok_or_else(|| format!("{text} is not an amount"))
}

/// Splits one CSV line: commas, double-quoted fields (`""` inside quotes), every field trimmed
/// of the spaces and tabs Alipay pads numbers with.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::with_capacity(DETAIL_COLUMNS.len());
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(fields
        .into_iter()
        .map(|f| f.trim_matches([' ', '\t']).to_string())
        .collect())
}

/// The detail file's rows, read as they are asked for.
struct DetailLines {
    reader: BufReader<CrcReader<Box<dyn Read + Send>>>,
    /// The CRC-32 the ZIP directory gives for the detail file, checked at its end.
    crc: u32,
    line: u64,
    /// Known once the header is read.
    columns: Option<Columns>,
    /// The `#…结束` line was read: the rest is summary.
    ended: bool,
    done: bool,
    buf: Vec<u8>,
}

impl DetailLines {
    /// The next physical line, decoded; `None` at the end of the file.
    fn next_text(&mut self) -> Result<Option<String>, BillError> {
        self.buf.clear();
        let n = (&mut self.reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(read_error)?;
        if n == 0 {
            let crc = self.reader.get_ref().crc().sum();
            if crc != self.crc {
                return Err(BillError::Damaged(
                    "the detail file does not match its CRC-32".into(),
                ));
            }
            return Ok(None);
        }
        self.line += 1;
        if n as u64 > MAX_LINE {
            return Err(BillError::Line {
                line: self.line,
                why: "the line is too long".into(),
            });
        }
        // GBK trail bytes are 0x40 and above, so a `\n` byte is always a line end: each line
        // decodes on its own.
        let (text, _, malformed) = encoding_rs::GBK.decode(&self.buf);
        if malformed {
            return Err(BillError::Line {
                line: self.line,
                why: "not GBK text".into(),
            });
        }
        Ok(Some(
            text.trim_end_matches(['\r', '\n'])
                .trim_start_matches('\u{feff}')
                .to_string(),
        ))
    }

    fn next_line(&mut self) -> Option<Result<BillLine, BillError>> {
        loop {
            let text = match self.next_text() {
                Ok(Some(t)) => t,
                Ok(None) if self.columns.is_none() => {
                    return Some(Err(BillError::Damaged(
                        "the detail file has no header".into(),
                    )))
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            if text.starts_with('#') {
                self.ended |= self.columns.is_some() && text.contains(END_MARK);
                continue;
            }
            if self.ended || text.trim().is_empty() {
                continue;
            }
            let line = self.line;
            let row = |why: String| BillError::Line { line, why };
            let fields = match split_csv(&text) {
                Ok(f) => f,
                Err(why) => return Some(Err(row(why))),
            };
            match &self.columns {
                None => match Columns::from_header(&fields) {
                    Ok(c) => self.columns = Some(c),
                    Err(why) => return Some(Err(row(why))),
                },
                Some(c) => return Some(c.line(&fields).map_err(row)),
            }
        }
    }
}

fn read_error(e: std::io::Error) -> BillError {
    use std::io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
    match e.kind() {
        InvalidData | InvalidInput | UnexpectedEof => {
            BillError::Damaged(format!("the detail file does not inflate: {e}"))
        }
        _ => BillError::Io(e.to_string()),
    }
}

impl Iterator for DetailLines {
    type Item = Result<BillLine, BillError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_line();
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_split_unquoted_and_trimmed() {
        assert_eq!(
            split_csv("2024\t,\"a,\"\"b\"\"\",,-1.00 ").unwrap(),
            vec!["2024", "a,\"b\"", "", "-1.00"]
        );
        assert!(split_csv("\"open").is_err());
    }

    #[test]
    fn signed_amounts_read_exactly() {
        assert_eq!(signed_yuan("-50.00"), Ok((true, Fen(5000))));
        assert_eq!(signed_yuan("0.60"), Ok((false, Fen(60))));
        assert_eq!(signed_yuan("-0.00"), Ok((false, Fen(0))));
        assert_eq!(signed_yuan(""), Ok((false, Fen(0))));
        assert!(signed_yuan("1.005").is_err());
        assert!(signed_yuan("--1").is_err());
    }

    #[test]
    fn gbk_names_are_read_as_gbk() {
        let (gbk, _, _) = encoding_rs::GBK.encode("2088_20240101_业务明细.csv");
        assert_eq!(entry_name(&gbk), "2088_20240101_业务明细.csv");
        assert_eq!(
            entry_name("x_业务明细(汇总).csv".as_bytes()),
            "x_业务明细(汇总).csv"
        );
    }

    #[test]
    fn the_query_asks_for_the_days_trade_statement() {
        let biz = BillQueryBiz::trade(NaiveDate::from_ymd_opt(2024, 1, 5).unwrap());
        assert_eq!(
            serde_json::to_string(&biz).unwrap(),
            r#"{"bill_type":"trade","bill_date":"2024-01-05"}"#
        );
    }
}
