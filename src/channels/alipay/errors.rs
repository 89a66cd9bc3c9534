//! Alipay error answers: `code` + `sub_code` → what it means for the order, per operation.

use crate::channels::OpKind;

/// What an error code means for the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Definitely failed: nothing was created or moved.
    Failed,
    /// The outcome is unknown: query (or retry with the same ids).
    Unknown,
    /// The gateway refused the call before any business processing (credentials, signature,
    /// app id, permissions): nothing was created, so another channel may be tried.
    NotAccepted,
    /// Not an error for the order: a business state the caller must interpret.
    Business(BusinessResult),
}

/// Business states reported as error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusinessResult {
    /// The order is already paid (create).
    AlreadyPaid,
    /// The trade does not exist at Alipay (yet).
    TradeNotExist,
    /// The trade's state does not allow the operation (e.g. close after payment).
    StateConflict,
    /// Barcode payment created, customer still confirming.
    BuyerPaying,
    /// No statement for that day (yet).
    BillNotReady,
}

/// One row of the error table.
#[derive(Clone, Copy, Debug)]
pub struct ErrorRule {
    pub code: &'static str,
    /// `None` matches any sub_code (a code-level fallback).
    pub sub_code: Option<&'static str>,
    /// The operation the row is about; `None` (`ALL`) for every operation.
    pub op: Option<OpKind>,
    pub disposition: Disposition,
}

const fn rule(
    code: &'static str,
    sub_code: Option<&'static str>,
    op: Option<OpKind>,
    disposition: Disposition,
) -> ErrorRule {
    ErrorRule {
        code,
        sub_code,
        op,
        disposition,
    }
}

/// A row for a business failure: code `40004` with this `sub_code`.
const fn biz(sub_code: &'static str, op: Option<OpKind>, disposition: Disposition) -> ErrorRule {
    rule("40004", Some(sub_code), op, disposition)
}

/// A row for every operation.
const ALL: Option<OpKind> = None;

use BusinessResult::*;
use Disposition::{Business, Failed, NotAccepted, Unknown};
use OpKind::{BillQuery, Cancel, Close, Create, Query, Refund, RefundQuery, Split, SplitQuery};

/// Alipay's result codes and what they mean, per operation (protocol reference §5).
/// The most specific row wins: (code, sub_code, op) over (code, sub_code, all) over (code, any).
/// A code that is in no row is `Unknown`: a new code never turns into a silent failure.
#[rustfmt::skip]
pub static ERROR_TABLE: &[ErrorRule] = &[
    // Gateway-level codes.
    rule("10003", None, Some(Create), Business(BuyerPaying)),
    rule("20000", None, ALL, Unknown),
    // Refused at the gateway, before any trade logic (authorization, missing or invalid
    // system parameters, signature, app id, permissions): nothing was created or moved.
    rule("20001", None, ALL, NotAccepted),
    rule("40001", None, ALL, NotAccepted),
    rule("40002", None, ALL, NotAccepted),
    rule("40006", None, ALL, NotAccepted),
    // Business failures: definite only where §5.2 says so; any other sub_code is unknown, so
    // that an unfamiliar answer never turns a payment that may have happened into `failed`.
    rule("40004", None, ALL, Unknown),
    biz("ACQ.SYSTEM_ERROR", ALL, Unknown),
    biz("AQC.SYSTEM_ERROR", ALL, Unknown),
    biz("ACQ.INVALID_PARAMETER", ALL, Failed),
    biz("ACQ.ACCESS_FORBIDDEN", ALL, Failed),
    biz("ACQ.EXIST_FORBIDDEN_WORD", ALL, Failed),
    biz("ACQ.PARTNER_ERROR", ALL, Failed),
    biz("ACQ.TOTAL_FEE_EXCEED", ALL, Failed),
    biz("ACQ.PAYMENT_AUTH_CODE_INVALID", ALL, Failed),
    biz("ACQ.CONTEXT_INCONSISTENT", ALL, Failed),
    biz("ACQ.BUYER_SELLER_EQUAL", ALL, Failed),
    biz("ACQ.TRADE_BUYER_NOT_MATCH", ALL, Failed),
    biz("ACQ.BUYER_ENABLE_STATUS_FORBID", ALL, Failed),
    biz("ACQ.BUYER_BALANCE_NOT_ENOUGH", ALL, Failed),
    biz("ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH", ALL, Failed),
    biz("ACQ.ERROR_BALANCE_PAYMENT_DISABLE", ALL, Failed),
    biz("ACQ.PULL_MOBILE_CASHIER_FAIL", ALL, Failed),
    biz("ACQ.MOBILE_PAYMENT_SWITCH_OFF", ALL, Failed),
    biz("ACQ.PAYMENT_FAIL", ALL, Failed),
    biz("ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR", ALL, Failed),
    biz("ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR", ALL, Failed),
    biz("ACQ.BEYOND_PAY_RESTRICTION", ALL, Failed),
    biz("ACQ.BEYOND_PER_RECEIPT_RESTRICTION", ALL, Failed),
    biz("ACQ.SELLER_BEEN_BLOCKED", ALL, Failed),
    biz("ACQ.ERROR_BUYER_CERTIFY_LEVEL_LIMIT", ALL, Failed),
    biz("ACQ.PAYMENT_REQUEST_HAS_RISK", ALL, Failed),
    biz("ACQ.NO_PAYMENT_INSTRUMENTS_AVAILABLE", ALL, Failed),
    biz("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", Some(Refund), Failed),
    biz("ACQ.REASON_TRADE_BEEN_FREEZEN", Some(Refund), Failed),
    biz("ACQ.TRADE_HAS_SUCCESS", Some(Create), Business(AlreadyPaid)),
    biz("ACQ.TRADE_NOT_EXIST", Some(Query), Business(TradeNotExist)),
    biz("ACQ.TRADE_NOT_EXIST", Some(Close), Business(TradeNotExist)),
    biz("ACQ.TRADE_NOT_EXIST", Some(Cancel), Business(TradeNotExist)),
    biz("ACQ.TRADE_NOT_EXIST", Some(RefundQuery), Business(TradeNotExist)),
    biz("ACQ.TRADE_NOT_EXIST", Some(Refund), Failed),
    biz("ACQ.TRADE_STATUS_ERROR", Some(Close), Business(StateConflict)),
    biz("ACQ.TRADE_STATUS_ERROR", Some(Refund), Business(StateConflict)),
    biz("ACQ.TRADE_HAS_CLOSE", Some(Close), Business(StateConflict)),
    biz("ACQ.TRADE_HAS_CLOSE", Some(Create), Failed),
    biz("ACQ.REASON_TRADE_REFUND_FEE_ERR", Some(Refund), Failed),
    biz("ACQ.DISCORDANT_REPEAT_REQUEST", Some(Refund), Failed),
    biz("ACQ.SELLER_BALANCE_NOT_ENOUGH", Some(Refund), Failed),
    biz("ACQ.TRADE_HAS_FINISHED", Some(Refund), Failed),
    biz("ACQ.TRADE_NOT_ALLOW_REFUND", Some(Refund), Failed),
    biz("ACQ.CANCEL_NOT_ALLOWED", Some(Cancel), Business(StateConflict)),
    biz("ACQ.TRADE_CANCEL_TIME_OUT", Some(Cancel), Business(StateConflict)),
    // Royalty (protocol reference §8.9). The doc names no settle or bind sub_codes besides
    // ACQ.SYSTEM_ERROR (retry with the same out_request_no, or query); the rows below are the
    // codes the simulator answers with (names unconfirmed). A real code that is not here stays
    // unknown, and a settle is only repeated under the same out_request_no, so a wrong guess
    // cannot share twice.
    biz("ACQ.TRADE_NOT_EXIST", Some(Split), Failed),
    biz("ACQ.TRADE_STATUS_ERROR", Some(Split), Failed),
    // Not a royalty (royalty_freeze) trade, or royalty already finished.
    biz("ACQ.TRADE_SETTLE_ERROR", Some(Split), Failed),
    // More than what is left to settle.
    biz("ACQ.ALLOC_AMOUNT_VALIDATE_ERROR", Some(Split), Failed),
    // The number is taken by another settle: something did happen under it, so only a query
    // can tell what.
    biz("ACQ.DISCORDANT_REPEAT_REQUEST", Some(Split), Unknown),
    // "No such settle" (code unconfirmed). Should Alipay answer a missing settle otherwise,
    // the query stays unknown; and should this guess be wrong, the settle payroute then sends
    // again carries the same out_request_no, which Alipay answers idempotently: nothing can be
    // shared twice.
    biz("ACQ.TRADE_NOT_EXIST", Some(SplitQuery), Business(TradeNotExist)),
    // Statements (§8.10): no statement for the day (yet) — the code is unconfirmed; any other
    // answer stays unknown, and a query moves no money, so a wrong guess only delays.
    biz("isp.bill_not_exist", Some(BillQuery), Business(BillNotReady)),
];

/// Looks up what `code`/`sub_code` means for `op`.
pub fn disposition(code: &str, sub_code: Option<&str>, op: OpKind) -> Disposition {
    let rank = |r: &ErrorRule| -> Option<u8> {
        if r.code != code || r.op.is_some_and(|o| o != op) {
            return None;
        }
        match (r.sub_code, sub_code) {
            (Some(want), Some(got)) if want == got => Some(if r.op.is_none() { 2 } else { 3 }),
            (Some(_), _) => None,
            (None, _) => Some(if r.op.is_none() { 0 } else { 1 }),
        }
    };
    ERROR_TABLE
        .iter()
        .filter_map(|r| rank(r).map(|k| (k, r.disposition)))
        .max_by_key(|(k, _)| *k)
        .map(|(_, d)| d)
        .unwrap_or(Disposition::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_table_rows() {
        use BusinessResult as B;
        use Disposition as D;
        use OpKind as K;
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>, OpKind, Disposition)] = &[
            ("10003", None, K::Create, D::Business(B::BuyerPaying)),
            ("20000", Some("isp.unknow-error"), K::Create, D::Unknown),
            ("40002", Some("isv.invalid-signature"), K::Create, D::NotAccepted),
            ("40006", None, K::Refund, D::NotAccepted),
            ("20001", Some("aop.invalid-auth-token"), K::Create, D::NotAccepted),
            ("40004", Some("ACQ.SYSTEM_ERROR"), K::Refund, D::Unknown),
            ("40004", Some("AQC.SYSTEM_ERROR"), K::Cancel, D::Unknown),
            ("40004", Some("ACQ.TOTAL_FEE_EXCEED"), K::Create, D::Failed),
            ("40004", Some("ACQ.PAYMENT_AUTH_CODE_INVALID"), K::Create, D::Failed),
            ("40004", Some("ACQ.TRADE_HAS_SUCCESS"), K::Create, D::Business(B::AlreadyPaid)),
            ("40004", Some("ACQ.TRADE_NOT_EXIST"), K::Query, D::Business(B::TradeNotExist)),
            ("40004", Some("ACQ.TRADE_NOT_EXIST"), K::Close, D::Business(B::TradeNotExist)),
            ("40004", Some("ACQ.TRADE_NOT_EXIST"), K::Refund, D::Failed),
            ("40004", Some("ACQ.TRADE_STATUS_ERROR"), K::Close, D::Business(B::StateConflict)),
            ("40004", Some("ACQ.REASON_TRADE_REFUND_FEE_ERR"), K::Refund, D::Failed),
            // Codes nobody has seen before are never taken as a definite failure.
            ("40004", Some("ACQ.SOMETHING_NEW"), K::Create, D::Unknown),
            ("40004", Some("ACQ.SOMETHING_NEW"), K::Refund, D::Unknown),
            ("40004", None, K::Create, D::Unknown),
            ("50000", None, K::Create, D::Unknown),
            ("10003", None, K::Query, D::Unknown),
            // Royalty: definite rejections decline; system errors and new codes stay unknown.
            ("40004", Some("ACQ.INVALID_PARAMETER"), K::BindReceiver, D::Failed),
            ("40004", Some("ACQ.SYSTEM_ERROR"), K::BindReceiver, D::Unknown),
            ("40004", Some("ACQ.SOMETHING_NEW"), K::BindReceiver, D::Unknown),
            ("40004", Some("ACQ.TRADE_NOT_EXIST"), K::Split, D::Failed),
            ("40004", Some("ACQ.TRADE_SETTLE_ERROR"), K::Split, D::Failed),
            ("40004", Some("ACQ.ALLOC_AMOUNT_VALIDATE_ERROR"), K::Split, D::Failed),
            ("40004", Some("ACQ.DISCORDANT_REPEAT_REQUEST"), K::Split, D::Unknown),
            ("40004", Some("ACQ.SYSTEM_ERROR"), K::Split, D::Unknown),
            ("40004", Some("ACQ.SOMETHING_NEW"), K::Split, D::Unknown),
            ("20000", Some("isp.unknow-error"), K::Split, D::Unknown),
            ("40004", Some("ACQ.TRADE_NOT_EXIST"), K::SplitQuery, D::Business(B::TradeNotExist)),
            ("40004", Some("ACQ.SYSTEM_ERROR"), K::SplitQuery, D::Unknown),
            ("40004", Some("ACQ.SOMETHING_NEW"), K::SplitQuery, D::Unknown),
            ("40004", Some("ACQ.SELLER_BALANCE_NOT_ENOUGH"), K::Refund, D::Failed),
            ("40002", Some("isv.invalid-signature"), K::Split, D::NotAccepted),
            ("40004", Some("isp.bill_not_exist"), K::BillQuery, D::Business(B::BillNotReady)),
            ("40004", Some("isp.bill_not_exist"), K::Query, D::Unknown),
            ("40004", Some("ACQ.SOMETHING_NEW"), K::BillQuery, D::Unknown),
            ("20000", Some("isp.unknow-error"), K::BillQuery, D::Unknown),
        ];
        for (code, sub, op, want) in cases {
            assert_eq!(disposition(code, *sub, *op), *want, "{code} {sub:?} {op:?}");
        }
    }

    #[test]
    fn every_table_row_is_reachable() {
        for r in ERROR_TABLE {
            let op = r.op.unwrap_or(OpKind::Create);
            assert_eq!(disposition(r.code, r.sub_code, op), r.disposition, "{r:?}");
        }
    }
}
