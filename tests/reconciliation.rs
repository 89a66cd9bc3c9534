//! Statements and reconciliation end to end, on each channel with statements, against its
//! simulator: a day with every kind of discrepancy is reported exactly; a damaged statement is
//! refused and records nothing; a re-run gives the same report.

mod common;

use std::time::Duration;

use common::{order_no, Harness};
use serde_json::{json, Value};

/// The channels with statements, and how to make a payment that goes to each.
const CHANNELS: [(&str, &str); 2] = [("alipay", "alipay"), ("wechatpay", "wechat")];

fn today() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        .to_string()
}

/// A paid QR payment of `amount` fen at `channel`.
async fn paid(h: &Harness, channel: &str, method: &str, amount: u64) -> String {
    let no = order_no("RC");
    let body = json!({"out_trade_no": no, "amount": amount, "currency": "CNY", "method": method,
                      "scene": "qr", "subject": "reconcile"});
    let r = h.api("POST", "/v1/payments", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["channel"], channel, "{}", r.text);
    assert_eq!(h.pay(channel, &no).await.status, 200);
    h.wait_status(&no, "succeeded").await;
    no
}

/// Runs the reconciliation of today and waits for its end.
async fn reconcile(h: &Harness, channel: &str) -> Value {
    let r = h
        .api(
            "POST",
            "/v1/reconciliations",
            Some(json!({"channel": channel, "date": today()})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let r = h
            .api("GET", &format!("/v1/reconciliations/{id}"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.json["status"] != "running" {
            return r.json;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("reconciliation {id} did not end");
}

/// The `reconciliation.completed` events of report `id` in the events feed.
async fn completed_events(h: &Harness, id: &str) -> Vec<Value> {
    let (mut found, mut after) = (vec![], "0".to_string());
    for _ in 0..100 {
        let page = h
            .api("GET", &format!("/v1/events?limit=500&after={after}"), None)
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        found.extend(
            page.json["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "reconciliation.completed" && e["data"]["id"] == id)
                .cloned(),
        );
        if page.json["has_more"] != true {
            return found;
        }
        after = page.json["next_cursor"].as_str().unwrap().to_string();
    }
    panic!("the events feed did not end")
}

fn kinds(report: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = report["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let no = d["out_refund_no"]
                .as_str()
                .or(d["out_trade_no"].as_str())
                .unwrap();
            (
                d["subject"].as_str().unwrap().into(),
                d["kind"].as_str().unwrap().into(),
                no.into(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.2.cmp(&b.2));
    v
}

#[tokio::test]
async fn a_day_with_every_discrepancy_is_reported_exactly_and_a_rerun_is_the_same() {
    let h = Harness::start().await;
    for (channel, method) in CHANNELS {
        paid(&h, channel, method, 150_000).await;
        let other_amount = paid(&h, channel, method, 150_100).await;
        let dropped = paid(&h, channel, method, 150_200).await;
        let refunded = paid(&h, channel, method, 150_300).await;
        let rf = order_no("RF");
        let r = h
            .api(
                "POST",
                &format!("/v1/payments/{refunded}/refunds"),
                Some(json!({"out_refund_no": rf, "amount": 300})),
            )
            .await;
        assert_eq!(
            (r.status, &r.json["status"]),
            (201, &json!("succeeded")),
            "{}",
            r.text
        );
        // Paid at the channel, but payroute never heard: pending in the ledger.
        h.notifications(channel, false).await;
        let quiet = order_no("RQ");
        let body = json!({"out_trade_no": quiet, "amount": 150_400, "currency": "CNY",
                          "method": method, "scene": "qr", "subject": "quiet"});
        assert_eq!(h.api("POST", "/v1/payments", Some(body)).await.status, 201);
        assert_eq!(h.pay(channel, &quiet).await.status, 200);
        h.notifications(channel, true).await;
        let stranger = order_no("ZZ");
        let r = h
            .admin(
                "PUT",
                &format!("/sandbox/{channel}/statements"),
                Some(json!({
                    "extra": [{"out_trade_no": stranger, "amount": 777}],
                    "amounts": {other_amount.clone(): 150_099},
                    "missing": [dropped.clone()],
                })),
            )
            .await;
        assert_eq!(r.status, 204, "{channel}: {}", r.text);

        let report = reconcile(&h, channel).await;
        assert_eq!(report["status"], "completed", "{channel}: {report}");
        assert_eq!(
            kinds(&report),
            {
                let mut want = vec![
                    (
                        "payment".to_string(),
                        "amount_mismatch".to_string(),
                        other_amount.clone(),
                    ),
                    (
                        "payment".into(),
                        "missing_at_channel".into(),
                        dropped.clone(),
                    ),
                    ("payment".into(), "status_mismatch".into(), quiet.clone()),
                    (
                        "payment".into(),
                        "missing_in_ledger".into(),
                        stranger.clone(),
                    ),
                ];
                want.sort_by(|a, b| a.2.cmp(&b.2));
                want
            },
            "{channel}: {report}"
        );
        assert_eq!(report["payments"]["matched"], 2, "{channel}: {report}");
        assert_eq!(report["refunds"]["matched"], 1, "{channel}: {report}");
        assert!(
            report["fees"]["actual_fee"].as_u64().unwrap() > 0,
            "{channel}: {report}"
        );
        assert!(
            report["fees"]["effective_rate_ppm"].as_u64().is_some(),
            "{report}"
        );
        // The measured rate is shown beside the configured fee.
        let routes = h.admin("GET", "/admin/routes", None).await;
        let entry = routes.json["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == channel)
            .unwrap()
            .clone();
        assert_eq!(
            entry["measured_fee"]["effective_rate_ppm"], report["fees"]["effective_rate_ppm"],
            "{entry}"
        );
        assert_eq!(entry["measured_fee"]["date"], json!(today()));
        assert!(
            entry["measured_fee"]["schedule"]
                .as_str()
                .is_some_and(|s| s.contains('%')),
            "{entry}"
        );
        // And in `explain`, beside the fee each channel's trace shows.
        let explained = h
            .admin(
                "GET",
                &format!("/admin/explain?method={method}&scene=qr&amount=150000"),
                None,
            )
            .await;
        assert_eq!(explained.status, 200, "{}", explained.text);
        assert_eq!(
            explained.json["measured_fees"][channel], entry["measured_fee"],
            "{}",
            explained.text
        );
        // The app is told: one `reconciliation.completed` event with the report's counts.
        let told = completed_events(&h, report["id"].as_str().unwrap()).await;
        assert_eq!(told.len(), 1, "{channel}: {told:?}");
        let data = &told[0]["data"];
        assert_eq!(
            (&data["payments"], &data["refunds"], &data["fees"]),
            (&report["payments"], &report["refunds"], &report["fees"]),
            "{data}"
        );
        assert_eq!(data["discrepancies_total"], 4, "{data}");
        assert!(
            data.get("discrepancies").is_none(),
            "the list stays in the report: {data}"
        );
        // The statement's lines, as payroute read them.
        let bill = h
            .api("GET", &format!("/v1/bills/{channel}/{}", today()), None)
            .await;
        assert_eq!(bill.status, 200, "{}", bill.text);
        let lines: Vec<Value> = bill
            .text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.len() as u64,
            report["lines_read"].as_u64().unwrap(),
            "{channel}"
        );
        assert!(lines
            .iter()
            .any(|l| l["out_trade_no"] == json!(stranger) && l["amount"] == 777));
        let csv = h
            .api(
                "GET",
                &format!("/v1/bills/{channel}/{}?format=csv", today()),
                None,
            )
            .await;
        assert_eq!(csv.status, 200, "{}", csv.text);
        assert_eq!(
            csv.text.lines().count(),
            lines.len() + 1,
            "{channel}: header and one row a line"
        );

        // The same day again: the same findings (the stored statement is read again).
        let again = reconcile(&h, channel).await;
        assert_eq!(kinds(&again), kinds(&report), "{channel}");
        assert_eq!(again["payments"], report["payments"]);
        let told = completed_events(&h, report["id"].as_str().unwrap()).await;
        assert_eq!(told.len(), 2, "each completed run is told: {told:?}");
        // payroute catches up with the quiet payment: a fresh statement shows one fewer.
        h.api("GET", &format!("/v1/payments/{quiet}"), None).await;
        h.wait_status(&quiet, "succeeded").await;
        let r = h
            .admin(
                "PUT",
                &format!("/sandbox/{channel}/statements"),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.status, 204);
    }
}

#[tokio::test]
async fn a_damaged_statement_is_refused_and_nothing_is_recorded() {
    let h = Harness::start().await;
    for (channel, method) in CHANNELS {
        paid(&h, channel, method, 150_000).await;
        let r = h
            .admin(
                "PUT",
                &format!("/sandbox/{channel}/statements"),
                Some(json!({"corrupt": true})),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        let report = reconcile(&h, channel).await;
        assert_eq!(report["status"], "failed", "{channel}: {report}");
        assert!(
            report["error"].as_str().unwrap().contains("damaged"),
            "{channel}: {report}"
        );
        assert_eq!(report["discrepancies"], json!([]), "{channel}");
        let bill = h
            .api("GET", &format!("/v1/bills/{channel}/{}", today()), None)
            .await;
        assert_eq!(
            (bill.status, &bill.json["code"]),
            (502, &json!("statement_damaged")),
            "{channel}: {}",
            bill.text
        );
        // Once the channel serves a good file, the day reconciles.
        h.admin(
            "PUT",
            &format!("/sandbox/{channel}/statements"),
            Some(json!({})),
        )
        .await;
        let report = reconcile(&h, channel).await;
        assert_eq!(report["status"], "completed", "{channel}: {report}");
    }
}

#[tokio::test]
async fn statements_of_days_not_over_and_of_channels_without_them_are_refused() {
    let h = Harness::start().await;
    let tomorrow = (chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        + chrono::Duration::days(1))
    .to_string();
    let r = h
        .api("GET", &format!("/v1/bills/alipay/{tomorrow}"), None)
        .await;
    assert_eq!(
        (r.status, &r.json["code"]),
        (409, &json!("statement_not_ready")),
        "{}",
        r.text
    );
    let r = h
        .api("GET", &format!("/v1/bills/pingpp/{}", today()), None)
        .await;
    assert_eq!(
        (r.status, &r.json["code"]),
        (422, &json!("operation_unsupported")),
        "{}",
        r.text
    );
    let r = h
        .api("GET", &format!("/v1/bills/nosuch/{}", today()), None)
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = h.api("GET", "/v1/bills/alipay/2026-13-01", None).await;
    assert_eq!(
        (r.status, &r.json["code"]),
        (400, &json!("invalid_path")),
        "{}",
        r.text
    );
    let r = h
        .api(
            "POST",
            "/v1/reconciliations",
            Some(json!({"channel": "alipay", "date": "yesterday"})),
        )
        .await;
    assert_eq!(
        (r.status, &r.json["field"]),
        (400, &json!("date")),
        "{}",
        r.text
    );
    let r = h
        .api("GET", "/v1/reconciliations/rec_alipay_19700101", None)
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = h.api("GET", "/v1/reconciliations/..%2Fetc", None).await;
    assert_eq!(r.status, 400, "{}", r.text);
}

#[tokio::test]
async fn the_reconcile_command_asks_a_running_payroute_and_prints_the_summary() {
    let h = Harness::start().await;
    paid(&h, "alipay", "alipay", 150_000).await;
    let api = format!("http://{}", h.run.api);
    let run = |channel: &'static str, api: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_payroute"))
                .args([
                    "reconcile",
                    "--channel",
                    channel,
                    "--date",
                    &today(),
                    "--api",
                    &api,
                ])
                .output()
                .unwrap()
        })
    };
    let out = run("alipay", api.clone()).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(summary["payments"]["matched"], 1, "{summary}");
    assert!(
        summary.get("discrepancies").is_none(),
        "the summary leaves the list out"
    );
    // A channel without statements fails; an unreachable payroute is exit 2.
    let out = run("pingpp", api).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(
        "alipay",
        format!("http://127.0.0.1:{}", common::free_port()),
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach payroute"));
}

/// A stored report of `channel` whose statement showed `rate_ppm` against an estimate of
/// 0.6% under `schedule`.
fn stored_report(dir: &std::path::Path, channel: &str, rate_ppm: u64, schedule: &str) {
    use payroute::reconcile::report::{Report, RunStatus};
    let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    let mut report = Report::running(channel, date, chrono::Utc::now());
    report.status = RunStatus::Completed;
    report.fees.paid_amount = payroute::money::Fen(1_000_000);
    report.fees.actual_fee = payroute::money::Fen(rate_ppm);
    report.fees.effective_rate_ppm = Some(rate_ppm);
    report.fees.estimated_rate_ppm = Some(6000);
    report.fees.schedule = Some(schedule.into());
    let reports = dir.join("reconciliations");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(
        reports.join(format!("{}.json", report.id)),
        serde_json::to_vec(&report).unwrap(),
    )
    .unwrap();
}

#[test]
fn check_and_explain_show_the_fee_rate_statements_measured() {
    let bin = env!("CARGO_BIN_EXE_payroute");
    let routes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("routes.yaml");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .env_remove("PAYROUTE_DATA_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let check = |with_dir: bool| {
        let mut args = vec!["check", "--sandbox", routes.to_str().unwrap()];
        if with_dir {
            args.extend(["--data-dir", dir.path().to_str().unwrap()]);
        }
        run(&args)
    };
    // The sample's alipay fee is 0.6%; its statement showed 0.75%.
    let sample = "0.6% + 0 fen, min 0, max none";
    stored_report(dir.path(), "alipay", 7500, sample);
    // wechatpay's statement agrees with its fee.
    stored_report(dir.path(), "wechatpay", 6000, sample);
    let out = check(true);
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("statement of")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0].contains("warning: channel `alipay`")
            && warnings[0].contains("0.75%")
            && warnings[0].contains("gives 0.6%")
            && warnings[0].contains("correct its `fee`"),
        "{out}"
    );
    assert!(
        !check(false).contains("statement of"),
        "no data directory, no fee notes"
    );
    // routes.yaml's fee changed since that statement: nothing to warn about yet.
    stored_report(dir.path(), "alipay", 7500, "0.5% + 0 fen, min 0, max none");
    assert!(!check(true).contains("warning: channel `alipay`"));
    stored_report(dir.path(), "alipay", 7500, sample);

    let explain = |json: bool| {
        let mut args = vec![
            "explain",
            "--config",
            routes.to_str().unwrap(),
            "--method",
            "alipay",
            "--scene",
            "qr",
            "--amount",
            "150000",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ];
        if json {
            args.push("--json");
        }
        run(&args)
    };
    let text = explain(false);
    assert!(
        text.lines()
            .any(|l| l.starts_with("measured: channel `alipay`") && l.contains("0.75%")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("measured: channel `wechatpay`") && l.contains("gives 0.6%")),
        "{text}"
    );
    let json: Value = serde_json::from_str(&explain(true)).unwrap();
    assert_eq!(
        json["measured_fees"]["alipay"]["effective_rate_ppm"], 7500,
        "{json}"
    );
    assert!(
        json["candidates"].is_array(),
        "the decision is still there: {json}"
    );
}
