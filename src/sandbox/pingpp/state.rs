//! The charges and refunds the Ping++ simulator keeps, as the API shows them, and what the
//! sandbox control does to them: the customer pays.

use std::collections::HashMap;
use std::sync::MutexGuard;

use chrono::Utc;
use serde_json::{json, Value};

use super::Gateway;
use crate::sandbox::kit::lock;
use crate::sandbox::shared::{conflict, not_found, ControlError};

#[derive(Debug, Clone)]
pub(super) struct Refund {
    pub id: String,
    pub amount: u64,
    pub status: &'static str,
    pub description: String,
    pub metadata: Value,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub(super) struct Charge {
    pub json: Value,
    /// The request fields that define the charge (to detect inconsistent repeats).
    pub content: String,
    pub refunds: Vec<Refund>,
}

impl Charge {
    pub fn amount(&self) -> u64 {
        self.json["amount"].as_u64().unwrap_or(0)
    }

    pub fn refunded(&self) -> u64 {
        self.refunds
            .iter()
            .filter(|r| r.status != "failed")
            .map(|r| r.amount)
            .sum()
    }

    /// Refunds settle between the refund call and the first look at them.
    pub fn settle_refunds(&mut self) {
        for r in &mut self.refunds {
            if r.status == "pending" {
                r.status = "succeeded";
            }
        }
    }

    /// A refund of this charge as the API shows it.
    pub fn refund_json(&self, r: &Refund) -> Value {
        json!({
            "id": r.id, "object": "refund", "order_no": self.json["order_no"], "amount": r.amount,
            "created": r.created, "succeed": r.status == "succeeded", "status": r.status,
            "time_succeed": if r.status == "succeeded" { json!(Utc::now().timestamp()) } else { Value::Null },
            "description": r.description, "failure_code": null, "failure_msg": null, "metadata": r.metadata,
            "charge": self.json["id"], "charge_order_no": self.json["order_no"],
            "transaction_no": self.json["transaction_no"], "extra": {},
        })
    }
}

impl Gateway {
    pub(super) fn charges(&self) -> MutexGuard<'_, HashMap<String, Charge>> {
        lock(&self.charges)
    }

    pub(super) fn charge_id_of(&self, order_no: &str) -> Option<String> {
        lock(&self.by_order).get(order_no).cloned()
    }

    pub(super) fn next_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}{}{:08}",
            &crate::crypto::random_hex(8)[..16],
            self.seq.next()
        )
    }

    /// The simulator's view of the charge for `order_no`.
    pub fn order_view(&self, order_no: &str) -> Option<Value> {
        let id = self.charge_id_of(order_no)?;
        let charges = self.charges();
        let c = charges.get(&id)?;
        Some(json!({
            "order_no": order_no, "charge": id, "paid": c.json["paid"], "amount": c.amount(),
            "refunded": c.refunded(),
            "refunds": c.refunds.iter().map(|r| json!({"id": r.id, "amount": r.amount, "status": r.status})).collect::<Vec<_>>(),
        }))
    }

    /// The customer pays: the charge becomes paid and `charge.succeeded` is sent.
    pub(super) fn pay_charge(&self, order_no: &str) -> Result<Value, ControlError> {
        let id = self
            .charge_id_of(order_no)
            .ok_or_else(|| not_found("resource_missing", "no such charge"))?;
        {
            let mut charges = self.charges();
            let c = charges
                .get_mut(&id)
                .ok_or_else(|| not_found("resource_missing", "no such charge"))?;
            if c.json["paid"] == true {
                return Err(conflict("charge_paid", "the charge is already paid"));
            }
            let now = Utc::now().timestamp();
            if c.json["time_expire"].as_i64().is_some_and(|t| t < now) {
                return Err(conflict("charge_expired", "the charge has expired"));
            }
            c.json["paid"] = json!(true);
            c.json["time_paid"] = json!(now);
            c.json["transaction_no"] = json!(format!(
                "{}",
                2_024_000_000_000_000_000u64 + self.seq.next()
            ));
            c.json["credential"] = json!({});
        }
        Ok(self.order_view(order_no).unwrap_or(Value::Null))
    }
}
