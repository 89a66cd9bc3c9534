//! The channels as the sample routes.yaml reaches them: one row per channel for the scenarios
//! that run the same over every channel (tests/e2e_channels.rs, tests/e2e_notifications.rs).

use serde_json::{json, Value};

/// One channel, and what its simulator says where the protocols differ.
pub struct Case {
    pub channel: &'static str,
    /// The payment method; with `amount`, a QR payment the sample's rules send here.
    pub method: &'static str,
    pub amount: u64,
    /// The channel's fee for `amount`, fen.
    pub fee: u64,
    /// How the QR code's URL starts.
    pub code_url: &'static str,
    /// How the channel's trade number starts ("": no fixed prefix), and whether the create's
    /// answer has it already.
    pub trade_no: &'static str,
    pub trade_no_at_create: bool,
    /// How the channel's refund number starts ("": no fixed prefix).
    pub refund_no: &'static str,
    /// With a close the channel confirms: the code its simulator refuses a payment with
    /// afterwards. `None`: the channel cannot close an order (a payment that still arrives is
    /// refunded, see tests/money_safety.rs).
    pub closed_code: Option<&'static str>,
    /// The simulator's call labels of a create, a payment query and a refund.
    pub create: &'static str,
    pub query: &'static str,
    pub refund: &'static str,
}

impl Case {
    /// A QR payment of `amount` the sample's rules send to this channel.
    pub fn qr(&self, no: &str) -> Value {
        json!({"out_trade_no": no, "amount": self.amount, "currency": "CNY",
               "method": self.method, "scene": "qr", "subject": "e2e"})
    }
}

pub const ALIPAY: Case = Case {
    channel: "alipay",
    method: "alipay",
    amount: 1500,
    fee: 9,
    code_url: "https://qr.alipay.com/",
    trade_no: "",
    trade_no_at_create: false,
    refund_no: "",
    closed_code: Some("ACQ.TRADE_HAS_CLOSE"),
    create: "alipay.trade.precreate",
    query: "alipay.trade.query",
    refund: "alipay.trade.refund",
};

pub const WECHATPAY: Case = Case {
    channel: "wechatpay",
    method: "wechat",
    amount: 1300,
    fee: 8,
    code_url: "weixin://wxpay/bizpayurl?pr=",
    trade_no: "4200",
    trade_no_at_create: false,
    refund_no: "",
    closed_code: Some("ORDER_CLOSED"),
    create: "POST /v3/pay/transactions/native",
    query: "GET /v3/pay/transactions/out-trade-no/{}",
    refund: "POST /v3/refund/domestic/refunds",
};

/// Small QR payments go through the aggregator (the cheapest for the amount).
pub const PINGPP: Case = Case {
    channel: "pingpp",
    method: "alipay",
    amount: 800,
    fee: 3,
    code_url: "https://qr.alipay.com/",
    trade_no: "ch_",
    trade_no_at_create: true,
    refund_no: "re_",
    closed_code: None,
    create: "POST /v1/charges",
    query: "GET /v1/charges/{}",
    refund: "POST /v1/charges/{}/refunds",
};

/// The aggregator's other wallet.
pub const PINGPP_WECHAT: Case = Case {
    method: "wechat",
    code_url: "weixin://",
    ..PINGPP
};

/// Every channel once.
pub fn cases() -> [Case; 3] {
    [ALIPAY, WECHATPAY, PINGPP]
}
