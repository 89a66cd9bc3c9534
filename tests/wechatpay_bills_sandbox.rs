//! WeChat Pay trade bills over the wire: payroute's configured adapter and client ask the
//! sandbox's simulator for the day's bill, download it from the address it gives (its own,
//! from the request's Host), check the SHA-1 and read the lines; the control's edits show.

mod common;

use std::io::{Seek, Write};

use common::{order_no, Harness};
use payroute::bills::{BillLine, LineKind};
use payroute::channels::{Op, Outcome, Prepared};
use serde_json::json;
use sha1::Digest;

#[tokio::test]
async fn the_days_bill_is_asked_for_downloaded_checked_and_read() {
    let h = Harness::start().await;
    let no = order_no("WB");
    let r = h
        .api(
            "POST",
            "/v1/payments",
            Some(
                json!({"out_trade_no": no, "amount": 1234, "currency": "CNY",
                        "method": "wechat", "scene": "qr", "subject": "bill"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["channel"], "wechatpay", "{}", r.text);
    assert_eq!(h.pay("wechatpay", &no).await.status, 200);
    let edits = json!({ "extra": [{ "out_trade_no": "GHOST-WB", "amount": 500 }] });
    let r = h
        .admin("PUT", "/sandbox/wechatpay/statements", Some(edits))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);

    let snapshot = h.run.payments.snapshot();
    let entry = snapshot.channel("wechatpay").expect("sample has wechatpay");
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let date = chrono::Utc::now().with_timezone(&china).date_naive();
    let op = Op::BillQuery { date };
    let Prepared::Send(req) = entry.adapter.build(op, chrono::Utc::now()).unwrap() else {
        panic!("a bill query is sent");
    };
    let resp = entry.client.send(req).await.expect("simulator answers");
    let Outcome::Bill(location) = entry.adapter.parse(op, &resp) else {
        panic!("{:?}", entry.adapter.parse(op, &resp));
    };
    let req = entry
        .adapter
        .download_request(&location, chrono::Utc::now())
        .unwrap();
    let file = entry.client.send(req).await.expect("simulator answers");
    assert_eq!(file.status, 200);
    assert_eq!(
        Some(hex::encode(sha1::Sha1::digest(&file.body))),
        location.sha1
    );

    let mut stored = tempfile::tempfile().unwrap();
    stored.write_all(&file.body).unwrap();
    stored.rewind().unwrap();
    let lines: Vec<BillLine> = entry
        .adapter
        .statement_lines(stored)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mine = lines
        .iter()
        .find(|l| l.out_trade_no == no)
        .expect("paid today");
    assert_eq!(
        (mine.kind, mine.amount.get(), mine.fee.get()),
        (LineKind::Payment, 1234, 7)
    );
    assert!(lines.iter().any(|l| l.out_trade_no == "GHOST-WB"));

    let calls = h.admin("GET", "/sandbox/wechatpay/calls", None).await;
    assert_eq!(calls.json["GET /v3/bill/tradebill"], 1, "{}", calls.text);
    assert_eq!(calls.json["GET /v3/billdownload/file"], 1, "{}", calls.text);
}
