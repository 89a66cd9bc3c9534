//! The comparison on a statement made by hand, against a real embedded ledger: every
//! discrepancy kind, for payments and refunds, is reported exactly once.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};

use super::china_day;
use super::engine::{compare, Inputs};
use super::report::{DiscrepancyKind, Report, Subject};
use crate::bills::{BillError, BillLine, LineKind};
use crate::domain::{PaymentStatus, RefundStatus};
use crate::ledger::tests::{order, refund};
use crate::ledger::{Ledger, RedbLedger};
use crate::money::Fen;

fn pay(no: &str, amount: u64, fee: u64) -> BillLine {
    BillLine {
        kind: LineKind::Payment,
        out_trade_no: no.into(),
        channel_trade_no: Some(format!("T{no}")),
        out_refund_no: None,
        channel_refund_no: None,
        amount: Fen(amount),
        fee: Fen(fee),
        at: Some(Utc::now()),
    }
}

fn back(no: &str, refund_no: &str, amount: u64, fee: u64) -> BillLine {
    BillLine {
        kind: LineKind::Refund,
        out_refund_no: Some(refund_no.into()),
        ..pay(no, amount, fee)
    }
}

fn today() -> NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
}

async fn run(
    ledger: Arc<RedbLedger>,
    lines: Vec<Result<BillLine, BillError>>,
) -> Result<Report, BillError> {
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let progress = AtomicU64::new(0);
        let fee = crate::config::FeeSchedule::default();
        let inputs = Inputs {
            channel: "alipay",
            ledger: ledger.as_ref(),
            events: ledger.as_ref(),
            fee: Some(&fee),
            day: china_day(today()),
            progress: &progress,
        };
        let mut report = Report::running("alipay", today(), Utc::now());
        compare(Box::new(lines.into_iter()), &inputs, &mut report, &rt).map(|()| report)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_discrepancy_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(RedbLedger::open(dir.path()).unwrap());
    let put = |o| {
        let l = ledger.clone();
        async move { l.insert_order(o).await.unwrap() }
    };
    put(order("MATCHED01", 1000, PaymentStatus::Succeeded)).await;
    put(order("AMOUNT001", 1000, PaymentStatus::Succeeded)).await;
    put(order("PENDING01", 1000, PaymentStatus::Pending)).await;
    put(order("NOTSEEN01", 1000, PaymentStatus::Succeeded)).await;
    put(order("UNPAID001", 1000, PaymentStatus::Pending)).await;
    let mut other = order("OTHERCH01", 1000, PaymentStatus::Succeeded);
    other.channel = Some("wechatpay".into());
    put(other).await;
    put(order("REFUNDED1", 1000, PaymentStatus::Succeeded)).await;
    for (no, amount) in [
        ("RF_OK", 300),
        ("RF_AMT", 200),
        ("RF_PEND", 100),
        ("RF_GONE", 50),
    ] {
        ledger
            .insert_refund(refund(no, "REFUNDED1", amount))
            .await
            .unwrap();
    }
    for no in ["RF_OK", "RF_AMT", "RF_GONE"] {
        let mut r = ledger.get_refund(no).await.unwrap().unwrap();
        r.status = RefundStatus::Succeeded;
        ledger.settle_refund(&r).await.unwrap();
    }
    let lines = vec![
        Ok(pay("MATCHED01", 1000, 6)),
        Ok(pay("AMOUNT001", 999, 6)),
        Ok(pay("PENDING01", 1000, 6)),
        Ok(pay("STRANGER1", 500, 3)),
        Ok(pay("OTHERCH01", 1000, 6)),
        Ok(pay("REFUNDED1", 1000, 6)),
        Ok(back("REFUNDED1", "RF_OK", 300, 2)),
        Ok(back("REFUNDED1", "RF_AMT", 250, 1)),
        Ok(back("REFUNDED1", "RF_PEND", 100, 1)),
        Ok(back("REFUNDED1", "RF_STRANGE", 10, 0)),
    ];
    let report = run(ledger.clone(), lines).await.unwrap();
    let kinds = |subject: Subject| {
        let mut v: Vec<(DiscrepancyKind, String)> = report
            .discrepancies
            .iter()
            .filter(|d| d.subject == subject)
            .map(|d| {
                (
                    d.kind,
                    d.out_refund_no
                        .clone()
                        .unwrap_or_else(|| d.out_trade_no.clone()),
                )
            })
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    };
    use DiscrepancyKind::*;
    assert_eq!(
        kinds(Subject::Payment),
        vec![
            (AmountMismatch, "AMOUNT001".into()),
            (MissingAtChannel, "NOTSEEN01".into()),
            (StatusMismatch, "OTHERCH01".into()),
            (StatusMismatch, "PENDING01".into()),
            (MissingInLedger, "STRANGER1".into()),
        ]
    );
    assert_eq!(
        kinds(Subject::Refund),
        vec![
            (AmountMismatch, "RF_AMT".into()),
            (MissingAtChannel, "RF_GONE".into()),
            (StatusMismatch, "RF_PEND".into()),
            (MissingInLedger, "RF_STRANGE".into()),
        ]
    );
    assert_eq!((report.payments.matched, report.refunds.matched), (2, 1));
    assert_eq!(report.lines_read, 10);
    assert!(report.discrepancies.iter().all(|d| !d.action.is_empty()));
    // Fees: 33 charged on 5,499 paid, 4 given back.
    assert_eq!(report.fees.paid_amount, Fen(5499));
    assert_eq!(report.fees.actual_fee, Fen(29));
    assert_eq!(report.fees.effective_rate_ppm, Some(29 * 1_000_000 / 5499));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_cannot_be_read_fails_the_whole_reconciliation() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(RedbLedger::open(dir.path()).unwrap());
    let lines = vec![
        Ok(pay("A00000001", 1, 0)),
        Err(BillError::Line {
            line: 2,
            why: "amount is not a number".into(),
        }),
    ];
    let err = run(ledger, lines).await.unwrap_err();
    assert!(matches!(err, BillError::Line { line: 2, .. }), "{err:?}");
}

#[test]
fn the_daily_run_is_at_the_next_hour_in_china() {
    use chrono::TimeZone as _;
    let tz = chrono_tz::Asia::Shanghai;
    let at = |d: u32, h: u32, m: u32| tz.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
    assert_eq!(super::next_run(at(30, 5, 59), 6), Some(at(30, 6, 0)));
    assert_eq!(
        super::next_run(at(30, 6, 0), 6),
        Some(tz.with_ymd_and_hms(2026, 12, 1, 6, 0, 0).unwrap())
    );
    assert_eq!(
        super::next_run(at(30, 23, 30), 0),
        Some(tz.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap())
    );
}
