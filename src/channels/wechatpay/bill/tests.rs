//! The trade-bill query, its answers, the download request and the statement reader.

use std::io::Write;

use chrono::{NaiveDate, TimeZone, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;

use super::super::tests::{adapter, answer};
use super::super::transformers as tf;
use super::*;
use crate::channels::{BuildError, Channel, Op, Prepared};
use crate::crypto::PrivateKey;

fn merchant_public_key() -> crate::crypto::PublicKey {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sandbox/keys/wechat_merchant_private.pem");
    PrivateKey::from_file(&path).unwrap().public_key()
}

/// Whether `req`'s Authorization is the merchant's signature over `path` and an empty body.
fn signed_over(req: &http::Request<bytes::Bytes>, path: &str) -> bool {
    let header = req.headers()[http::header::AUTHORIZATION].to_str().unwrap();
    let auth = tf::Authorization::parse(header).unwrap();
    let message = tf::request_message("GET", path, &auth.timestamp, &auth.nonce_str, "");
    auth.mchid == "1900000001"
        && merchant_public_key().verify_sha256_b64(message.as_bytes(), &auth.signature)
}

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
}

#[test]
fn a_bill_query_is_a_signed_get_of_the_days_all_bill() {
    let Ok(Prepared::Send(req)) = adapter().build(Op::BillQuery { date: date() }, Utc::now())
    else {
        panic!("a bill query is sent");
    };
    let path = "/v3/bill/tradebill?bill_date=2026-11-29&bill_type=ALL&tar_type=GZIP";
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(
        req.uri().to_string(),
        format!("https://api.mch.weixin.qq.com{path}")
    );
    assert!(req.body().is_empty());
    assert!(signed_over(&req, path));
}

const HASH: &str = "79BB0F45FC4C42234A918000B2668D689E2BDE04";
const URL: &str = "https://api.mch.weixin.qq.com/v3/billdownload/file?token=6XIv5TUPto7pByrTQKhd6kwvyKLG2uY2wMMR8cNXqaA_Cv_isgaUtBzp4QtiozLO";

#[test]
fn a_bill_answer_is_where_the_file_is() {
    let wp = adapter();
    let op = Op::BillQuery { date: date() };
    let body = format!(r#"{{"hash_type":"SHA1","hash_value":"{HASH}","download_url":"{URL}"}}"#);
    assert_eq!(
        wp.parse(op, &answer(200, &body)),
        Outcome::Bill(BillLocation {
            url: URL.into(),
            sha1: Some(HASH.to_ascii_lowercase()),
            format: StatementFormat::Gzip,
        })
    );
    let unknown = |o: Outcome| matches!(o, Outcome::Unknown { .. });
    for bad in [
        format!(r#"{{"hash_type":"SM3","hash_value":"{HASH}","download_url":"{URL}"}}"#),
        format!(r#"{{"hash_value":"{HASH}","download_url":"{URL}"}}"#),
        format!(r#"{{"hash_type":"SHA1","hash_value":"{HASH}"}}"#),
        format!(r#"{{"hash_type":"SHA1","hash_value":"abc","download_url":"{URL}"}}"#),
        format!(r#"{{"hash_type":"SHA1","hash_value":"{HASH}","download_url":"ftp://x/y"}}"#),
        "not json".to_string(),
        String::new(),
    ] {
        assert!(unknown(wp.parse(op, &answer(200, &bad))), "{bad}");
    }
    // Verified like every answer.
    let mut forged = answer(200, &body);
    forged.body = bytes::Bytes::from(body.replace("SHA1", "SHA1 "));
    assert!(unknown(wp.parse(op, &forged)));
}

#[test]
fn no_statement_yet_is_not_ready_and_other_errors_read_as_the_table_says() {
    let wp = adapter();
    let op = Op::BillQuery { date: date() };
    for code in ["NO_STATEMENT_EXIST", "STATEMENT_CREATING"] {
        let body = format!(r#"{{"code":"{code}","message":"账单文件不存在"}}"#);
        assert_eq!(wp.parse(op, &answer(400, &body)), Outcome::BillNotReady);
    }
    let param = r#"{"code":"PARAM_ERROR","message":"bill_date"}"#;
    assert!(matches!(
        wp.parse(op, &answer(400, param)),
        Outcome::Declined { code, .. } if code == "PARAM_ERROR"
    ));
    let sign = r#"{"code":"SIGN_ERROR","message":"x"}"#;
    assert!(matches!(
        wp.parse(op, &answer(401, sign)),
        Outcome::NotAccepted { .. }
    ));
    for (status, body) in [
        (500, r#"{"code":"SYSTEM_ERROR","message":"x"}"#),
        (400, r#"{"code":"SOMETHING_NEW","message":"x"}"#),
        (502, "Bad Gateway"),
    ] {
        assert!(matches!(
            wp.parse(op, &answer(status, body)),
            Outcome::Unknown { .. }
        ));
    }
}

#[test]
fn a_download_is_a_get_signed_over_the_urls_path_and_query() {
    let wp = adapter();
    let location = BillLocation {
        url: URL.into(),
        sha1: Some(HASH.to_ascii_lowercase()),
        format: StatementFormat::Gzip,
    };
    let req = wp.download_request(&location, Utc::now()).unwrap();
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(req.uri().to_string(), URL);
    assert!(req.body().is_empty());
    let path = &URL["https://api.mch.weixin.qq.com".len()..];
    assert!(signed_over(&req, path));
    assert!(!signed_over(&req, "/v3/billdownload/file"));
    for bad in [
        "/v3/billdownload/file?token=x",
        "not a url",
        "ftp://host/file",
    ] {
        let location = BillLocation {
            url: bad.into(),
            ..location.clone()
        };
        assert!(
            matches!(
                wp.download_request(&location, Utc::now()),
                Err(BuildError::Invalid(_))
            ),
            "{bad}"
        );
    }
}

// The statement reader.

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

fn header() -> String {
    format!("\u{feff}{}\r\n", COLUMNS.join(","))
}

/// A data row: every field back-ticked.
fn row(fields: [&str; 27]) -> String {
    let mut s = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('`');
        s.push_str(f);
    }
    s.push_str("\r\n");
    s
}

fn payment(no: &str, time: &str, total: &str, fee: &str, name: &str) -> String {
    row([
        time,
        "wxd678efh567hg6787",
        "1900000001",
        "",
        "",
        "4200001",
        no,
        "oUser",
        "NATIVE",
        "SUCCESS",
        "OTHERS",
        "CNY",
        total,
        "0.00",
        "0",
        "0",
        "0.00",
        "0.00",
        "",
        "",
        name,
        "",
        fee,
        "0.60%",
        total,
        "0.00",
        "",
    ])
}

fn refund(no: &str, refund_no: &str, state: &str, amount: &str, fee: &str) -> String {
    row([
        "2026-11-29 23:59:59",
        "wxd678efh567hg6787",
        "1900000001",
        "",
        "",
        "4200001",
        no,
        "oUser",
        "NATIVE",
        "REFUND",
        "OTHERS",
        "CNY",
        "0.00",
        "0.00",
        "5030001",
        refund_no,
        amount,
        "0.00",
        "ORIGINAL",
        state,
        "茶",
        "",
        fee,
        "0.60%",
        "0.00",
        amount,
        "",
    ])
}

fn summary(count: usize) -> String {
    format!(
        "{}\r\n`{count},`10.00,`4.00,`0.00,`0.04,`10.00,`4.00\r\n",
        SUMMARY_COLUMNS.join(",")
    )
}

fn read_all(bytes: Vec<u8>) -> Result<Vec<BillLine>, BillError> {
    read(std::io::Cursor::new(bytes))?.collect()
}

#[test]
fn payments_and_settled_refunds_are_read_and_the_summary_ends_them() {
    let text = header()
        + &payment("N1", "2026-11-29 00:00:05", "10.00", "0.06", "茶, 两杯")
        + &refund("N1", "RF1", "SUCCESS", "4.00", "-0.02")
        + &refund("N1", "RF2", "PROCESSING", "1.00", "-0.01")
        + &row([
            "2026-11-29 10:00:00",
            "wx",
            "1900000001",
            "",
            "",
            "4200002",
            "N2",
            "o",
            "MICROPAY",
            "REVOKED",
            "OTHERS",
            "CNY",
            "0.00",
            "0.00",
            "0",
            "0",
            "0.00",
            "0.00",
            "",
            "",
            "x",
            "",
            "0.00",
            "0.60%",
            "3.00",
            "0.00",
            "",
        ])
        + &summary(4);
    let lines = read_all(gzip(&text)).unwrap();
    assert_eq!(
        lines,
        [
            BillLine {
                kind: LineKind::Payment,
                out_trade_no: "N1".into(),
                channel_trade_no: Some("4200001".into()),
                out_refund_no: None,
                channel_refund_no: None,
                amount: Fen(1000),
                fee: Fen(6),
                // 00:00:05 China time is the day before in UTC.
                at: Some(Utc.with_ymd_and_hms(2026, 11, 28, 16, 0, 5).unwrap()),
            },
            BillLine {
                kind: LineKind::Refund,
                out_trade_no: "N1".into(),
                channel_trade_no: Some("4200001".into()),
                out_refund_no: Some("RF1".into()),
                channel_refund_no: Some("5030001".into()),
                amount: Fen(400),
                fee: Fen(2),
                at: Some(Utc.with_ymd_and_hms(2026, 11, 29, 15, 59, 59).unwrap()),
            },
        ]
    );
}

#[test]
fn older_files_without_the_order_amount_columns_read_the_settled_amounts() {
    let names: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| *c != "订单金额" && *c != "申请退款金额" && *c != "费率备注")
        .collect();
    let text = format!("{}\n", names.join(","))
        + "`2026-11-29 12:00:00,`wx,`1900000001,`0,`,`4200001,`N1,`o,`JSAPI,`SUCCESS,`CFT,`CNY,`8.88,`0.00,`0,`0,`0.00,`0.00,`,`,`tea,`,`0.05,`0.60%\n"
        + &summary(1);
    let lines = read_all(gzip(&text)).unwrap();
    assert_eq!((lines[0].amount, lines[0].fee), (Fen(888), Fen(5)));
}

#[test]
fn a_malformed_row_is_an_error_naming_its_line() {
    let cases = [
        (
            payment("N1", "2026-11-29 12:00:00", "1.0.0", "0.00", "x"),
            "订单金额",
        ),
        (payment("N1", "yesterday", "1.00", "0.00", "x"), "交易时间"),
        (
            payment("", "2026-11-29 12:00:00", "1.00", "0.00", "x"),
            "商户订单号",
        ),
        (
            payment("N1", "2026-11-29 12:00:00", "1.00", "-0.01", "x"),
            "手续费",
        ),
        (refund("N1", "RF1", "SUCCESS", "1.00", "0.0.1"), "手续费"),
        (refund("N1", "RF1", "LOST", "1.00", "0.00"), "退款状态"),
        (
            payment("N1", "2026-11-29 12:00:00", "1.00", "0.00", "x").replace("SUCCESS", "PAID"),
            "交易状态",
        ),
        ("`2026-11-29 12:00:00,`N1\n".to_string(), "fields"),
    ];
    for (bad, why_has) in cases {
        let text = header()
            + &payment("N0", "2026-11-29 12:00:00", "1.00", "0.01", "ok")
            + &bad
            + &summary(2);
        let mut lines = read(std::io::Cursor::new(gzip(&text))).unwrap();
        assert!(lines.next().unwrap().is_ok());
        match lines.next() {
            Some(Err(BillError::Line { line: 3, why })) => {
                assert!(why.contains(why_has), "{why} / {why_has}")
            }
            other => panic!("{bad}: {other:?}"),
        }
        assert!(lines.next().is_none(), "nothing after an error");
    }
    // A line without end is refused, not read whole.
    let endless = header() + &"`x".repeat(40_000);
    assert!(matches!(
        read_all(gzip(&endless)),
        Err(BillError::Line { line: 2, why }) if why.contains("longer")
    ));
    // The header must name the columns the lines need; the summary must be there.
    let err = read(std::io::Cursor::new(gzip("交易时间,商户订单号\n"))).err();
    assert!(
        matches!(err, Some(BillError::Line { line: 1, .. })),
        "{err:?}"
    );
    let truncated = header() + &payment("N0", "2026-11-29 12:00:00", "1.00", "0.01", "ok");
    let lines = read_all(gzip(&truncated));
    assert!(
        matches!(&lines, Err(BillError::Line { line: 3, why }) if why.contains("summary")),
        "{lines:?}"
    );
}

#[test]
fn a_file_that_does_not_unpack_is_damaged() {
    let text = header() + &payment("N1", "2026-11-29 12:00:00", "1.00", "0.01", "ok") + &summary(1);
    // Not a gzip at all: refused before any line.
    let err = read(std::io::Cursor::new(text.clone().into_bytes())).err();
    assert!(matches!(err, Some(BillError::Damaged(_))), "{err:?}");
    // Cut short, or spoiled inside: an error in the stream, never a silent end.
    let whole = gzip(&text);
    let cut = whole[..whole.len() - 12].to_vec();
    assert!(matches!(read_all(cut), Err(BillError::Damaged(_))));
    let mut spoiled = whole.clone();
    let n = spoiled.len();
    spoiled[n - 6] ^= 0xff; // the CRC/length trailer
    assert!(matches!(read_all(spoiled), Err(BillError::Damaged(_))));
    // Through the adapter, from a file.
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"PK\x03\x04 not a gzip").unwrap();
    use std::io::Seek;
    file.rewind().unwrap();
    assert!(matches!(
        adapter().statement_lines(file).err(),
        Some(BillError::Damaged(_))
    ));
}

/// A 200,000-row statement, written and read as streams: it completes and counts right.
#[test]
fn a_large_statement_is_read_as_a_stream() {
    const ROWS: u64 = 200_000;
    let mut file = tempfile::tempfile().unwrap();
    {
        let mut gz = GzEncoder::new(std::io::BufWriter::new(&mut file), Compression::fast());
        gz.write_all(header().as_bytes()).unwrap();
        for i in 0..ROWS {
            let no = format!("N{i:08}");
            let line = if i % 10 == 9 {
                refund(&no, &format!("R{i:08}"), "SUCCESS", "1.00", "-0.01")
            } else {
                payment(&no, "2026-11-29 12:00:00", "12.34", "0.07", "茶")
            };
            gz.write_all(line.as_bytes()).unwrap();
        }
        gz.write_all(summary(ROWS as usize).as_bytes()).unwrap();
        gz.finish().unwrap().into_inner().unwrap();
    }
    use std::io::Seek;
    file.rewind().unwrap();
    let (mut payments, mut refunds, mut fees) = (0u64, 0u64, 0u64);
    for line in adapter().statement_lines(file).unwrap() {
        let line = line.unwrap();
        match line.kind {
            LineKind::Payment => payments += 1,
            LineKind::Refund => refunds += 1,
        }
        fees += line.fee.get();
    }
    assert_eq!((payments, refunds), (ROWS * 9 / 10, ROWS / 10));
    assert_eq!(fees, ROWS * 9 / 10 * 7 + ROWS / 10);
}
