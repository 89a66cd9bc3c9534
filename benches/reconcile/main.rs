//! Reconciliation at scale: a generated WeChat Pay statement of N payments (default 1,000,000)
//! against an embedded ledger holding the same N orders. Prints lines/s and the process's peak
//! resident memory during the reconciliation (VmHWM, reset after the ledger is filled).
//!
//! `cargo bench --bench reconcile [-- --rows N]`

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use payroute::channels::wechatpay::bill::{lines, COLUMNS, SUMMARY_COLUMNS, TIME_FORMAT};
use payroute::domain::{Currency, PayMethod, PaymentStatus, Scene};
use payroute::ledger::{Ledger, Order, OrderRequest, RedbLedger};
use payroute::money::{fen_to_yuan, Fen};
use payroute::reconcile::engine::{compare, Inputs};
use payroute::reconcile::report::Report;

fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn order(no: &str, amount: u64) -> Order {
    let request = OrderRequest {
        out_trade_no: no.into(),
        amount: Fen(amount),
        currency: Currency::Cny,
        method: PayMethod::Wechat,
        scene: Scene::Qr,
        subject: "bench".into(),
        description: None,
        payer_id: None,
        auth_code: None,
        client_ip: None,
        expires_at: None,
        metadata: Default::default(),
        split: false,
    };
    let mut o = Order::pending(request, "fp".into(), None, Utc::now());
    o.status = PaymentStatus::Succeeded;
    o.channel = Some("wechatpay".into());
    o
}

fn amount_of(i: u64) -> u64 {
    100 + i % 100_000
}

fn main() {
    let rows: u64 = std::env::args()
        .skip_while(|a| a != "--rows")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(RedbLedger::open(dir.path()).unwrap());

    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..256u64)
            .map(|t| {
                let l = ledger.clone();
                tokio::spawn(async move {
                    let mut i = t;
                    while i < rows {
                        l.insert_order(order(&format!("BENCH{i:012}"), amount_of(i)))
                            .await
                            .unwrap();
                        i += 256;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!(
        "ledger: {rows} orders written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let path = dir.path().join("statement.csv.gz");
    let started = Instant::now();
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        write!(gz, "\u{feff}{}\r\n", COLUMNS.join(",")).unwrap();
        let time = Utc::now()
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .format(TIME_FORMAT)
            .to_string();
        let (mut paid, mut fees) = (0u64, 0u64);
        for i in 0..rows {
            let amount = amount_of(i);
            let fee = (amount * 6 + 500) / 1000;
            (paid, fees) = (paid + amount, fees + fee);
            let (yuan, fee_yuan) = (fen_to_yuan(amount), fen_to_yuan(fee));
            let no = format!("BENCH{i:012}");
            let tx = format!("42000{i:023}");
            let row: Vec<&str> = COLUMNS
                .iter()
                .map(|c| match *c {
                    "交易时间" => time.as_str(),
                    "微信订单号" => tx.as_str(),
                    "商户订单号" => no.as_str(),
                    "交易类型" => "NATIVE",
                    "交易状态" => "SUCCESS",
                    "货币种类" => "CNY",
                    "应结订单金额" | "订单金额" => yuan.as_str(),
                    "手续费" => fee_yuan.as_str(),
                    "费率" => "0.60%",
                    "代金券金额" | "退款金额" | "充值券退款金额" | "申请退款金额" => {
                        "0.00"
                    }
                    _ => "",
                })
                .collect();
            let row: Vec<String> = row.iter().map(|f| format!("`{f}")).collect();
            write!(gz, "{}\r\n", row.join(",")).unwrap();
        }
        write!(gz, "{}\r\n", SUMMARY_COLUMNS.join(",")).unwrap();
        let summary = [
            rows.to_string(),
            fen_to_yuan(paid),
            "0.00".into(),
            "0.00".into(),
            fen_to_yuan(fees),
            fen_to_yuan(paid),
            "0.00".into(),
        ];
        let summary: Vec<String> = summary.iter().map(|f| format!("`{f}")).collect();
        write!(gz, "{}\r\n", summary.join(",")).unwrap();
        gz.finish().unwrap().flush().unwrap();
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "statement: {rows} rows, {:.1} MiB gzip, written in {:.1} s",
        size as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    // Peak memory from here on: the reconciliation's own.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let date = Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    let handle = rt.handle().clone();
    let l = ledger.clone();
    let report = rt
        .block_on(rt.spawn_blocking(move || {
            let progress = AtomicU64::new(0);
            let fee = payroute::config::FeeSchedule::default();
            let inputs = Inputs {
                channel: "wechatpay",
                ledger: l.as_ref(),
                events: l.as_ref(),
                fee: Some(&fee),
                day: payroute::reconcile::china_day(date),
                progress: &progress,
            };
            let mut report = Report::running("wechatpay", date, Utc::now());
            let lines = lines(std::fs::File::open(&path).unwrap()).unwrap();
            compare(lines, &inputs, &mut report, &handle).map(|()| report)
        }))
        .unwrap()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    println!(
        "reconcile: {} lines in {secs:.1} s = {:.0} lines/s; matched {}, discrepancies {}; RSS before {:.1} MiB, peak {:.1} MiB",
        report.lines_read,
        report.lines_read as f64 / secs,
        report.payments.matched,
        report.payments.discrepancies() + report.refunds.discrepancies(),
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
