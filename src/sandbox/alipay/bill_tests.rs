//! Statements: the simulator builds them from its trades and edits, and the adapter's reader
//! reads what it serves (and refuses what is not a statement).

use std::io::{Cursor, Seek, SeekFrom, Write};

use chrono::{Days, NaiveDate};
use serde_json::{json, Map, Value};
use zip::write::SimpleFileOptions;
use zip::ZipWriter;

use super::bills::{base_url, write_statement, Row, DOWNLOAD_PATH};
use super::handlers::GwError;
use super::Gateway;
use crate::bills::{BillError, BillLine, LineKind};
use crate::channels::alipay::bill::{read_statement, DETAIL_COLUMNS};
use crate::channels::alipay::signing::Params;
use crate::channels::alipay::transformers::parse_china_timestamp;
use crate::money::Fen;
use crate::sandbox::kit::{test_channel, test_request};
use crate::sandbox::shared::{ExtraPayment, StatementEdits};
use crate::sandbox::Simulator;

fn gateway() -> Gateway {
    Gateway::new(&test_channel("alipay").0)
}

fn call(g: &Gateway, method: &str, biz: Value) -> Map<String, Value> {
    let Value::Object(biz) = biz else {
        panic!("biz content is an object")
    };
    g.business(method, &Params::default(), &biz).expect("done")
}

/// A paid trade of `yuan`.
fn paid(g: &Gateway, no: &str, yuan: &str) {
    let order = json!({ "out_trade_no": no, "total_amount": yuan, "subject": "茶, 绿" });
    call(g, "alipay.trade.precreate", order);
    g.pay(no, false).expect("paid");
}

fn refunded(g: &Gateway, no: &str, request_no: &str, yuan: &str) {
    let biz = json!({ "out_trade_no": no, "refund_amount": yuan, "out_request_no": request_no });
    assert_eq!(call(g, "alipay.trade.refund", biz)["fund_change"], "Y");
}

/// The China date the trade was paid on (what the statement of "today" is).
fn paid_on(g: &Gateway, no: &str) -> NaiveDate {
    let at = g.trades()[no].paid_at.clone().expect("paid");
    NaiveDate::parse_from_str(&at[..10], "%Y-%m-%d").unwrap()
}

fn query(g: &Gateway, date: NaiveDate) -> Result<Map<String, Value>, GwError> {
    let biz = json!({ "bill_type": "trade", "bill_date": date.format("%Y-%m-%d").to_string() });
    let Value::Object(biz) = biz else {
        unreachable!()
    };
    g.bill_query(&biz, "http://127.0.0.1:9")
}

/// Asks for the statement of `date` and downloads it: the served bytes.
fn download(g: &Gateway, date: NaiveDate) -> (http::StatusCode, Vec<u8>, String) {
    let url = query(g, date).expect("a statement")["bill_download_url"]
        .as_str()
        .unwrap()
        .to_string();
    let path = url
        .strip_prefix("http://127.0.0.1:9")
        .expect("on the simulator");
    let resp = g.download(&test_request(http::Method::GET, path));
    let status = resp.status();
    let body =
        futures_util::FutureExt::now_or_never(axum::body::to_bytes(resp.into_body(), 1 << 24))
            .expect("a ready body")
            .expect("a body");
    (status, body.to_vec(), path.to_string())
}

fn as_file(bytes: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f
}

fn lines(bytes: &[u8]) -> Result<Vec<BillLine>, BillError> {
    read_statement(as_file(bytes))?.collect()
}

fn fee(fen: u64) -> Fen {
    Fen(fen)
}

#[test]
fn the_days_statement_lists_payments_refunds_and_fees() {
    let g = gateway();
    paid(&g, "T1", "100.00");
    paid(&g, "T2", "33.33");
    refunded(&g, "T1", "R1", "40.00");
    call(
        &g,
        "alipay.trade.precreate",
        json!({ "out_trade_no": "T3", "total_amount": "5.00", "subject": "s" }),
    );
    let day = paid_on(&g, "T1");
    let (status, bytes, path) = download(&g, day);
    assert_eq!(status, http::StatusCode::OK);
    let mut got = lines(&bytes).unwrap();
    got.sort_by(|a, b| (&a.out_trade_no, a.kind as u8).cmp(&(&b.out_trade_no, b.kind as u8)));
    let t1 = g.trades()["T1"].clone();
    let summary: Vec<_> = got
        .iter()
        .map(|l| {
            (
                l.kind,
                l.out_trade_no.as_str(),
                l.amount,
                l.fee,
                l.out_refund_no.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (LineKind::Payment, "T1", Fen(10_000), fee(60), None),
            // 40% of the fee comes back with 40% of the money.
            (LineKind::Refund, "T1", Fen(4_000), fee(24), Some("R1")),
            // 0.6% of 33.33 is 19.998 fen: 20.
            (LineKind::Payment, "T2", Fen(3_333), fee(20), None),
        ]
    );
    assert_eq!(
        got[0].channel_trade_no.as_deref(),
        Some(t1.trade_no.as_str())
    );
    let paid_at = parse_china_timestamp(t1.paid_at.as_deref().unwrap());
    assert_eq!(got[0].at, paid_at);
    assert!(got[1].at.is_some());
    // The address is good once.
    let again = g.download(&test_request(http::Method::GET, &path));
    assert_eq!(again.status(), http::StatusCode::NOT_FOUND);
    // Another day has nothing of these.
    let (_, before, _) = download(&g, day - Days::new(1));
    assert_eq!(lines(&before).unwrap(), Vec::new());
}

#[test]
fn refunds_give_back_the_whole_fee_in_the_end() {
    let g = gateway();
    paid(&g, "T1", "33.33");
    for (no, yuan) in [("R1", "11.11"), ("R2", "11.11"), ("R3", "11.11")] {
        refunded(&g, "T1", no, yuan);
    }
    let got = lines(&download(&g, paid_on(&g, "T1")).1).unwrap();
    let back: u64 = got
        .iter()
        .filter(|l| l.kind == LineKind::Refund)
        .map(|l| l.fee.get())
        .sum();
    assert_eq!(back, 20);
    assert_eq!(got.len(), 4);
}

#[test]
fn a_day_not_over_yet_has_no_statement_and_bad_queries_are_refused() {
    let g = gateway();
    let later = chrono::Utc::now().date_naive() + Days::new(2);
    assert_eq!(query(&g, later).unwrap_err().2, "isp.bill_not_exist");
    let Value::Object(biz) = json!({ "bill_type": "signcustomer", "bill_date": "2024-01-01" })
    else {
        unreachable!()
    };
    assert_eq!(
        g.bill_query(&biz, "http://x").unwrap_err().2,
        "isv.invalid-parameter"
    );
}

#[test]
fn edits_add_change_leave_out_and_spoil_statements() {
    let g = gateway();
    paid(&g, "T1", "10.00");
    paid(&g, "T2", "20.00");
    refunded(&g, "T1", "R1", "1.00");
    let day = paid_on(&g, "T1");
    g.set_statement_edits(StatementEdits {
        extra: vec![ExtraPayment {
            out_trade_no: "X1".into(),
            amount: 500,
        }],
        amounts: [("T2".to_string(), 1_999)].into(),
        missing: vec!["T1".into()],
        corrupt: false,
    })
    .unwrap();
    let mut got = lines(&download(&g, day).1).unwrap();
    got.sort_by(|a, b| a.out_trade_no.cmp(&b.out_trade_no));
    let summary: Vec<_> = got
        .iter()
        .map(|l| (l.kind, l.out_trade_no.as_str(), l.amount, l.fee))
        .collect();
    assert_eq!(
        summary,
        vec![
            (LineKind::Payment, "T2", Fen(1_999), fee(12)),
            (LineKind::Payment, "X1", Fen(500), fee(3)),
        ]
    );
    // Each call replaces the edits: now only a spoiled file.
    g.set_statement_edits(StatementEdits {
        corrupt: true,
        ..Default::default()
    })
    .unwrap();
    let (status, spoiled, _) = download(&g, day);
    assert_eq!(status, http::StatusCode::OK);
    assert!(matches!(lines(&spoiled), Err(BillError::Damaged(_))));
    g.set_statement_edits(StatementEdits::default()).unwrap();
    assert_eq!(lines(&download(&g, day).1).unwrap().len(), 3);
}

#[test]
fn downloads_are_counted_and_served_on_their_own_path() {
    let g = gateway();
    let mut req = test_request(http::Method::GET, "/bills/download?token=nope");
    assert_eq!(g.call_label(&req), format!("GET {DOWNLOAD_PATH}"));
    assert_eq!(g.handle(&req, false).status(), http::StatusCode::NOT_FOUND);
    req.headers
        .insert(http::header::HOST, "127.0.0.1:4567".parse().unwrap());
    assert_eq!(base_url(&req), "http://127.0.0.1:4567");
}

/// A ZIP with these entries (name, GBK text).
fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, text) in entries {
        zip.start_file(*name, SimpleFileOptions::default()).unwrap();
        zip.write_all(&encoding_rs::GBK.encode(text).0).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn detail(rows: &[&str]) -> String {
    let mut text = format!("#支付宝交易记录明细查询\n{}\n", DETAIL_COLUMNS.join(","));
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    text.push_str("#-----业务明细列表结束-----\n#交易合计：1笔\n");
    text
}

const PAYMENT: &str = "2024010122001400000000000001\t,T1\t,交易,tea,2024-01-01 10:00:00,2024-01-01 10:00:05,,,,,a,88.88,88.88,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.53,0.00,";

#[test]
fn the_reader_refuses_what_is_not_a_statement() {
    let name = "2088_20240101_业务明细.csv";
    let ok = zip_of(&[(name, &detail(&[PAYMENT]))]);
    let got = lines(&ok).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].amount, got[0].fee), (Fen(8888), Fen(53)));
    assert_eq!(got[0].at, parse_china_timestamp("2024-01-01 10:00:05"));

    let bad_amount = PAYMENT.replace("88.88,88.88", "8x.88,88.88");
    let zip = zip_of(&[(name, &detail(&[PAYMENT, &bad_amount]))]);
    let mut read = read_statement(as_file(&zip)).unwrap();
    assert!(read.next().unwrap().is_ok());
    match read.next() {
        Some(Err(BillError::Line { line: 4, why })) => assert!(why.contains("订单金额"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(read.next().is_none(), "the stream ends at its first error");

    for row in [
        PAYMENT.replace("交易", "冻结"),
        PAYMENT.replace(",,-0.53", ",-0.53"),
        PAYMENT.replace("10:00:05", "soon"),
        PAYMENT.replace("T1\t", ""),
    ] {
        let zip = zip_of(&[(name, &detail(&[&row]))]);
        assert!(
            matches!(lines(&zip), Err(BillError::Line { line: 3, .. })),
            "{row}"
        );
    }
    // Stored (not deflated), an amount changed in place still reads, but not past the CRC.
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file(name, stored).unwrap();
    zip.write_all(&encoding_rs::GBK.encode(&detail(&[PAYMENT])).0)
        .unwrap();
    let mut bytes = zip.finish().unwrap().into_inner();
    let at = bytes.windows(5).position(|w| w == b"88.88").unwrap();
    bytes[at..at + 5].copy_from_slice(b"99.99");
    let mut read = read_statement(as_file(&bytes)).unwrap();
    assert_eq!(read.next().unwrap().unwrap().amount, Fen(9999));
    assert!(matches!(read.next(), Some(Err(BillError::Damaged(_)))));

    let no_header = zip_of(&[(name, "#只有注释\n")]);
    assert!(matches!(lines(&no_header), Err(BillError::Damaged(_))));
    let no_detail = zip_of(&[("2088_20240101_业务明细(汇总).csv", "#汇总\n")]);
    assert!(matches!(
        read_statement(as_file(&no_detail)).err(),
        Some(BillError::Damaged(_))
    ));
    assert!(matches!(
        read_statement(as_file(b"PK not a zip at all")).err(),
        Some(BillError::Damaged(_))
    ));
}

#[test]
fn a_large_statement_is_read_as_a_stream() {
    const ROWS: u64 = 200_000;
    let day = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let rows = (0..ROWS).map(|i| {
        let refund = i % 4 == 3;
        Row {
            kind: if refund {
                LineKind::Refund
            } else {
                LineKind::Payment
            },
            trade_no: format!("2024010122001{i:015}"),
            out_trade_no: format!("ORDER-{}", if refund { i - 1 } else { i }),
            subject: "商品".into(),
            created: "2024-01-01 10:00:00".into(),
            finished: "2024-01-01 10:00:05".into(),
            amount: 100 + i % 1000,
            fee: 1,
            refund_no: if refund {
                format!("R{i}")
            } else {
                String::new()
            },
        }
    });
    let file = tempfile::tempfile().unwrap();
    let mut file = write_statement(file, day, rows).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let (mut payments, mut refunds, mut total) = (0u64, 0u64, 0u64);
    for line in read_statement(file).unwrap() {
        let line = line.unwrap();
        match line.kind {
            LineKind::Payment => payments += 1,
            LineKind::Refund => refunds += 1,
        }
        total += line.amount.get();
    }
    assert_eq!((payments, refunds), (ROWS / 4 * 3, ROWS / 4));
    let want: u64 = (0..ROWS).map(|i| 100 + i % 1000).sum();
    assert_eq!(total, want);
}

/// Over the wire: the adapter's signed query reaches the simulator's gateway, its answer
/// verifies, and the address it gives downloads (on the simulator's second path) a file the
/// adapter reads.
#[tokio::test]
async fn the_adapter_finds_downloads_and_reads_the_simulators_statement() {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::channels::alipay::{Alipay, AlipayConfig};
    use crate::channels::client::ChannelClient;
    use crate::channels::{Channel, Op, Outcome, PaymentIntent, Prepared};
    use crate::domain::{PayMethod, Scene};
    use crate::sandbox::Sandbox;

    let (channel, merchant_key) = test_channel("alipay");
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let sandbox = Sandbox::start(vec![channel], ip, shutdown).await.unwrap();
    let sim = sandbox.alipay("alipay").unwrap();
    sim.set_notifications(false);
    let adapter = Alipay::new(AlipayConfig {
        name: "alipay".into(),
        app_id: "2021000000000001".into(),
        gateway: sim.endpoint(),
        app_private_key: Arc::new(merchant_key),
        alipay_public_key: sim.credentials().platform_public_key,
        notify_url: None,
        return_url: None,
        scenes: vec![Scene::Qr],
    });
    let client = ChannelClient::new(Duration::from_secs(2), Duration::from_secs(5));
    let send = |op: Op<'_>| {
        let Prepared::Send(req) = adapter.build(op, chrono::Utc::now()).unwrap() else {
            panic!("sent to the gateway")
        };
        req
    };
    let intent = PaymentIntent {
        out_trade_no: "W1".into(),
        amount: Fen(1_000),
        method: PayMethod::Alipay,
        scene: Scene::Qr,
        subject: "tea".into(),
        description: None,
        auth_code: None,
        payer_id: None,
        client_ip: None,
        expires_at: None,
        split: false,
    };
    let created = client.send(send(Op::Create(&intent))).await.unwrap();
    assert!(matches!(
        adapter.parse(Op::Create(&intent), &created),
        Outcome::Payment(_)
    ));
    sim.pay("W1").unwrap();
    let date = paid_on(sim.as_ref(), "W1");
    let op = Op::BillQuery { date };
    let answer = client.send(send(op)).await.unwrap();
    let Outcome::Bill(location) = adapter.parse(op, &answer) else {
        panic!("a location")
    };
    assert!(location
        .url
        .starts_with(&format!("http://{}/bills/download?", sim.addr())));
    let req = adapter
        .download_request(&location, chrono::Utc::now())
        .unwrap();
    let file = client.send(req).await.unwrap();
    assert_eq!(file.status, 200);
    let got: Vec<BillLine> = adapter
        .statement_lines(as_file(&file.body))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].out_trade_no.as_str(), got[0].amount, got[0].fee),
        ("W1", Fen(1_000), Fen(6))
    );
    // A day not over yet: not ready.
    let later = Op::BillQuery {
        date: date + Days::new(2),
    };
    let answer = client.send(send(later)).await.unwrap();
    assert_eq!(adapter.parse(later, &answer), Outcome::BillNotReady);
    let calls = sim.calls();
    assert_eq!(calls.get(crate::channels::alipay::bill::METHOD), Some(&2));
    assert_eq!(calls.get("GET /bills/download"), Some(&1));
}
