//! WeChat Pay v3 error answers: HTTP status + `code` → what it means for the order.

use crate::channels::OpKind;

/// What an error answer means for the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Definitely failed: nothing was created or moved.
    Failed,
    /// Unknown: retry with the same ids, or query.
    Unknown,
    /// The order (or refund) does not exist at WeChat Pay.
    NotFound,
    /// Refused before any order logic (signature, merchant credentials or permissions):
    /// nothing was created, so another channel may be tried.
    NotAccepted,
}

/// Which operations a row applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ops {
    All,
    Prepay,
    Query,
    Close,
    Refund,
    RefundQuery,
    /// Profit-sharing calls that create or change something: receivers/add, orders,
    /// orders/unfreeze, return-orders.
    SharingWrite,
    /// Profit-sharing lookups: an order or a return by its number.
    SharingQuery,
    /// The trade-bill query.
    BillQuery,
}

/// One row of the error table: HTTP status + code → disposition.
#[derive(Clone, Copy, Debug)]
pub struct ErrorRule {
    pub status: u16,
    pub code: &'static str,
    pub ops: Ops,
    pub disposition: Disposition,
}

const fn rule(status: u16, code: &'static str, ops: Ops, disposition: Disposition) -> ErrorRule {
    ErrorRule {
        status,
        code,
        ops,
        disposition,
    }
}

use Disposition::{Failed, NotAccepted, NotFound, Unknown};

/// WeChat Pay v3 error codes (protocol reference §8), legacy spellings included. A row for a
/// specific operation wins over an `All` row; anything not listed is `Unknown`.
pub static ERROR_TABLE: &[ErrorRule] = &[
    rule(400, "PARAM_ERROR", Ops::All, Failed),
    rule(400, "INVALID_REQUEST", Ops::All, Failed),
    rule(400, "APPID_MCHID_NOT_MATCH", Ops::All, NotAccepted),
    rule(400, "MCH_NOT_EXISTS", Ops::All, NotAccepted),
    rule(400, "ORDER_CLOSED", Ops::All, Failed),
    rule(400, "ORDERCLOSED", Ops::All, Failed),
    rule(401, "SIGN_ERROR", Ops::All, NotAccepted),
    rule(403, "NO_AUTH", Ops::All, NotAccepted),
    rule(403, "NOAUTH", Ops::All, NotAccepted),
    rule(403, "OUT_TRADE_NO_USED", Ops::All, Failed),
    rule(403, "RULE_LIMIT", Ops::All, Failed),
    rule(403, "RULELIMIT", Ops::All, Failed),
    rule(403, "TRADE_ERROR", Ops::All, Failed),
    rule(403, "NOT_ENOUGH", Ops::All, Failed),
    rule(403, "NOTENOUGH", Ops::All, Failed),
    rule(403, "USER_ACCOUNT_ABNORMAL", Ops::All, Failed),
    rule(403, "ACCOUNT_ERROR", Ops::All, Failed),
    rule(403, "ACCOUNTERROR", Ops::All, Failed),
    rule(404, "ORDER_NOT_EXIST", Ops::All, NotFound),
    rule(404, "ORDERNOTEXIST", Ops::All, NotFound),
    rule(404, "RESOURCE_NOT_EXISTS", Ops::RefundQuery, NotFound),
    rule(404, "RESOURCE_NOT_EXISTS", Ops::Refund, Failed),
    rule(404, "MCH_NOT_EXISTS", Ops::All, NotAccepted),
    // Rate limited: for a refund it "may be accepted": only a query can tell.
    rule(429, "FREQUENCY_LIMITED", Ops::All, Unknown),
    rule(500, "SYSTEM_ERROR", Ops::All, Unknown),
    rule(500, "SYSTEMERROR", Ops::All, Unknown),
    rule(500, "BANK_ERROR", Ops::All, Unknown),
    rule(500, "BANKERROR", Ops::All, Unknown),
    rule(500, "OPENID_MISMATCH", Ops::All, Failed),
    rule(500, "INVALID_TRANSACTIONID", Ops::All, Failed),
    // Profit sharing (reference §7-8). PARAM_ERROR, INVALID_REQUEST (over-return, a finished
    // order, a repeat with other content), NOT_ENOUGH (over-split) and the rate-limit and
    // system rows above apply as they are. Splits never fail over, so a missing permission
    // is this split's definite failure rather than a reason to try another channel.
    rule(403, "NO_AUTH", Ops::SharingWrite, Failed),
    rule(403, "NOAUTH", Ops::SharingWrite, Failed),
    rule(404, "RESOURCE_NOT_EXISTS", Ops::SharingQuery, NotFound),
    rule(404, "RESOURCE_NOT_EXISTS", Ops::SharingWrite, Failed),
    rule(404, "ORDER_NOT_EXIST", Ops::SharingWrite, Failed),
    rule(404, "ORDERNOTEXIST", Ops::SharingWrite, Failed),
    // Trade bills: no statement of that day (yet), or it is still being made. Both read as
    // "not ready": the day is asked for again later (the BillQuery answer to `NotFound`).
    rule(400, "NO_STATEMENT_EXIST", Ops::BillQuery, NotFound),
    rule(400, "STATEMENT_CREATING", Ops::BillQuery, NotFound),
];

fn ops_match(ops: Ops, op: OpKind) -> bool {
    use OpKind as K;
    match ops {
        Ops::All => true,
        Ops::Prepay => op == K::Create,
        Ops::Query => op == K::Query,
        Ops::Close => op == K::Close || op == K::Cancel,
        Ops::Refund => op == K::Refund,
        Ops::RefundQuery => op == K::RefundQuery,
        Ops::SharingWrite => matches!(
            op,
            K::BindReceiver | K::Split | K::SplitFinish | K::SplitReturn
        ),
        Ops::SharingQuery => matches!(op, K::SplitQuery | K::SplitReturnQuery),
        Ops::BillQuery => op == K::BillQuery,
    }
}

/// Looks up what an error answer means for `op`.
pub fn disposition(status: u16, code: &str, op: OpKind) -> Disposition {
    ERROR_TABLE
        .iter()
        .filter(|r| r.status == status && r.code == code && ops_match(r.ops, op))
        .max_by_key(|r| r.ops != Ops::All)
        .map(|r| r.disposition)
        .unwrap_or(Disposition::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_table_rows() {
        use Disposition as D;
        let cases = [
            (500, "SYSTEM_ERROR", OpKind::Create, D::Unknown),
            (500, "SYSTEMERROR", OpKind::Refund, D::Unknown),
            (429, "FREQUENCY_LIMITED", OpKind::Refund, D::Unknown),
            (400, "PARAM_ERROR", OpKind::Create, D::Failed),
            (401, "SIGN_ERROR", OpKind::Query, D::NotAccepted),
            (401, "SIGN_ERROR", OpKind::Create, D::NotAccepted),
            (403, "NOT_ENOUGH", OpKind::Refund, D::Failed),
            (400, "ORDER_CLOSED", OpKind::Create, D::Failed),
            (404, "ORDER_NOT_EXIST", OpKind::Query, D::NotFound),
            (404, "RESOURCE_NOT_EXISTS", OpKind::RefundQuery, D::NotFound),
            (404, "RESOURCE_NOT_EXISTS", OpKind::Refund, D::Failed),
            (500, "BANK_ERROR", OpKind::Create, D::Unknown),
            // Unlisted: never taken as a definite failure.
            (418, "TEAPOT", OpKind::Create, D::Unknown),
            (400, "SYSTEM_ERROR", OpKind::Create, D::Unknown),
            // Profit sharing.
            (400, "PARAM_ERROR", OpKind::Split, D::Failed),
            (400, "INVALID_REQUEST", OpKind::Split, D::Failed),
            (400, "INVALID_REQUEST", OpKind::SplitReturn, D::Failed),
            (400, "INVALID_REQUEST", OpKind::SplitFinish, D::Failed),
            (400, "PARAM_ERROR", OpKind::BindReceiver, D::Failed),
            (403, "NOT_ENOUGH", OpKind::Split, D::Failed),
            (403, "NOTENOUGH", OpKind::Split, D::Failed),
            (403, "NO_AUTH", OpKind::Split, D::Failed),
            (403, "NOAUTH", OpKind::BindReceiver, D::Failed),
            (403, "NO_AUTH", OpKind::SplitReturn, D::Failed),
            (403, "NO_AUTH", OpKind::Create, D::NotAccepted),
            (401, "SIGN_ERROR", OpKind::Split, D::NotAccepted),
            (404, "RESOURCE_NOT_EXISTS", OpKind::SplitQuery, D::NotFound),
            (
                404,
                "RESOURCE_NOT_EXISTS",
                OpKind::SplitReturnQuery,
                D::NotFound,
            ),
            (404, "RESOURCE_NOT_EXISTS", OpKind::Split, D::Failed),
            (404, "RESOURCE_NOT_EXISTS", OpKind::SplitReturn, D::Failed),
            (404, "ORDER_NOT_EXIST", OpKind::Split, D::Failed),
            (404, "ORDER_NOT_EXIST", OpKind::SplitQuery, D::NotFound),
            (500, "SYSTEM_ERROR", OpKind::Split, D::Unknown),
            (500, "SYSTEMERROR", OpKind::SplitReturn, D::Unknown),
            (429, "FREQUENCY_LIMITED", OpKind::Split, D::Unknown),
            (429, "FREQUENCY_LIMITED", OpKind::SplitFinish, D::Unknown),
            (429, "FREQUENCY_LIMITED", OpKind::BindReceiver, D::Unknown),
            // Trade bills.
            (400, "NO_STATEMENT_EXIST", OpKind::BillQuery, D::NotFound),
            (400, "STATEMENT_CREATING", OpKind::BillQuery, D::NotFound),
            (400, "PARAM_ERROR", OpKind::BillQuery, D::Failed),
            (500, "SYSTEM_ERROR", OpKind::BillQuery, D::Unknown),
            (429, "FREQUENCY_LIMITED", OpKind::BillQuery, D::Unknown),
            // Only the bill query knows these codes.
            (400, "NO_STATEMENT_EXIST", OpKind::Query, D::Unknown),
            (400, "STATEMENT_CREATING", OpKind::Refund, D::Unknown),
        ];
        for (status, code, op, want) in cases {
            assert_eq!(
                disposition(status, code, op),
                want,
                "{status} {code} {op:?}"
            );
        }
    }

    #[test]
    fn nothing_unlisted_is_definite_for_profit_sharing() {
        let ops = [
            OpKind::BindReceiver,
            OpKind::Split,
            OpKind::SplitQuery,
            OpKind::SplitFinish,
            OpKind::SplitReturn,
            OpKind::SplitReturnQuery,
        ];
        for op in ops {
            for (status, code) in [
                (500, "SYSTEM_ERROR"),
                (502, "BAD_GATEWAY"),
                (503, "SYSTEM_ERROR"),
                (429, "FREQUENCY_LIMITED"),
                (429, "RATELIMIT_EXCEED"),
                (400, "SOMETHING_NEW"),
                (403, "PROCESSING"),
                // A status the row does not name does not take the row's meaning.
                (500, "PARAM_ERROR"),
                (404, "NOT_ENOUGH"),
            ] {
                assert_eq!(
                    disposition(status, code, op),
                    Disposition::Unknown,
                    "{status} {code} {op:?}"
                );
            }
        }
    }

    #[test]
    fn every_row_is_reachable() {
        let all = [
            OpKind::Create,
            OpKind::Query,
            OpKind::Close,
            OpKind::Cancel,
            OpKind::Refund,
            OpKind::RefundQuery,
            OpKind::BindReceiver,
            OpKind::Split,
            OpKind::SplitQuery,
            OpKind::SplitFinish,
            OpKind::SplitReturn,
            OpKind::SplitReturnQuery,
            OpKind::BillQuery,
        ];
        for r in ERROR_TABLE {
            assert!(
                all.iter().any(|op| ops_match(r.ops, *op)
                    && disposition(r.status, r.code, *op) == r.disposition),
                "row {} {} {:?} is shadowed",
                r.status,
                r.code,
                r.ops
            );
        }
    }
}
