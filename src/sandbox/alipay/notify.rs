//! The signed `trade_status_sync` notifications the Alipay simulator posts.

use chrono::Utc;

use super::state::Trade;
use super::Gateway;
use crate::channels::alipay::signing::{self, Params};
use crate::channels::alipay::transformers as tf;
use crate::money::fen_to_yuan;

impl Gateway {
    /// The signed notification parameters of the trade's current state.
    pub(super) fn notification_params(&self, t: &Trade) -> Params {
        let now = tf::china_timestamp(Utc::now());
        let amount = fen_to_yuan(t.amount);
        let mut p = Params::default();
        p.push("notify_time", now.clone());
        p.push("notify_type", "trade_status_sync");
        p.push("notify_id", crate::crypto::random_hex(16));
        p.push("app_id", self.app_id.clone());
        p.push("auth_app_id", self.app_id.clone());
        p.push("charset", tf::CHARSET);
        p.push("version", tf::VERSION);
        p.push("trade_no", t.trade_no.clone());
        p.push("out_trade_no", t.out_trade_no.clone());
        p.push("buyer_id", "2088102177846880");
        p.push("seller_id", "2088102177846000");
        p.push("trade_status", t.status.as_str());
        p.push("total_amount", amount.clone());
        p.push("receipt_amount", amount.clone());
        p.push("buyer_pay_amount", amount.clone());
        p.push("invoice_amount", amount.clone());
        p.push("point_amount", "0.00");
        p.push("subject", t.subject.clone());
        p.push("gmt_create", t.created.clone());
        p.push("gmt_payment", t.paid_at.clone().unwrap_or(now));
        p.push(
            "fund_bill_list",
            format!("[{{\"amount\":\"{amount}\",\"fundChannel\":\"ALIPAYACCOUNT\"}}]"),
        );
        signing::sign_notification(&mut p, &self.platform_key);
        p
    }

    /// A signed notification body for the trade's current state, with some fields replaced
    /// before signing (to build well-signed but wrong notifications in tests).
    pub fn notification_body(
        &self,
        out_trade_no: &str,
        replace: &[(&str, &str)],
    ) -> Option<String> {
        let t = self.trades().get(out_trade_no)?.clone();
        let mut p = self.notification_params(&t);
        p.0.retain(|(k, _)| k != "sign" && k != "sign_type");
        for (k, v) in replace {
            match p.0.iter_mut().find(|(key, _)| key == k) {
                Some(pair) => pair.1 = v.to_string(),
                None => p.push(k, *v),
            }
        }
        signing::sign_notification(&mut p, &self.platform_key);
        Some(p.encode(|_| true))
    }
}
