//! In-process tests of the flows on paused time: the sample routes.yaml with scripted channel
//! adapters, a fake transport (crate::call::fake) and an in-memory ledger.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::call::fake::{FakeTransports, ScriptedChannel, Step};
use crate::call::Caller;
use crate::domain::{Currency, PayMethod};
use crate::health::Health;

/// Orders and refunds in memory, with the same rules as the embedded ledger.
#[derive(Debug, Default)]
struct MemLedger {
    orders: Mutex<HashMap<String, Order>>,
    refunds: Mutex<HashMap<String, Refund>>,
}

#[async_trait::async_trait]
impl Ledger for MemLedger {
    async fn insert_order(&self, order: Order) -> Result<Inserted<Order>, LedgerError> {
        let mut orders = self.orders.lock().unwrap();
        let no = order.request.out_trade_no.clone();
        if let Some(o) = orders.get(&no) {
            return Ok(Inserted::Existing(o.clone()));
        }
        let order = Order {
            version: 1,
            ..order
        };
        orders.insert(no, order.clone());
        Ok(Inserted::Created(order))
    }
    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, LedgerError> {
        Ok(self.orders.lock().unwrap().get(out_trade_no).cloned())
    }
    async fn put_order(&self, order: &mut Order) -> Result<(), LedgerError> {
        let no = order.request.out_trade_no.clone();
        let mut orders = self.orders.lock().unwrap();
        crate::ledger::rules::check_version(orders.get(&no), &no, order.version)?;
        order.version += 1;
        orders.insert(no, order.clone());
        Ok(())
    }
    async fn insert_refund(&self, refund: Refund) -> Result<Inserted<Refund>, LedgerError> {
        let mut refunds = self.refunds.lock().unwrap();
        if let Some(r) = refunds.get(&refund.out_refund_no) {
            return Ok(Inserted::Existing(r.clone()));
        }
        let mut orders = self.orders.lock().unwrap();
        let order = orders
            .get_mut(&refund.out_trade_no)
            .ok_or_else(|| LedgerError::OrderNotFound(refund.out_trade_no.clone()))?;
        if !order.status.is_paid() {
            return Err(LedgerError::NotRefundable(order.status));
        }
        let available = order.request.amount.saturating_sub(order.refund_reserved);
        if refund.amount > available {
            return Err(LedgerError::ExceedsRefundable { available });
        }
        order.refund_reserved += refund.amount;
        order.version += 1;
        refunds.insert(refund.out_refund_no.clone(), refund.clone());
        Ok(Inserted::Created(refund))
    }
    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, LedgerError> {
        Ok(self.refunds.lock().unwrap().get(out_refund_no).cloned())
    }
    async fn update_refund(&self, refund: &Refund) -> Result<(), LedgerError> {
        let mut refunds = self.refunds.lock().unwrap();
        refunds.insert(refund.out_refund_no.clone(), refund.clone());
        Ok(())
    }
    async fn settle_refund(&self, refund: &Refund) -> Result<Order, LedgerError> {
        let mut refunds = self.refunds.lock().unwrap();
        let before = refunds
            .get(&refund.out_refund_no)
            .cloned()
            .ok_or_else(|| LedgerError::RefundNotFound(refund.out_refund_no.clone()))?;
        let mut orders = self.orders.lock().unwrap();
        let order = orders
            .get_mut(&refund.out_trade_no)
            .ok_or_else(|| LedgerError::OrderNotFound(refund.out_trade_no.clone()))?;
        if before.status == RefundStatus::Pending {
            crate::ledger::apply_refund_transition(order, before.status, refund);
            order.version += 1;
            refunds.insert(refund.out_refund_no.clone(), refund.clone());
        }
        Ok(order.clone())
    }
    async fn pending_refunds(&self) -> Result<Vec<Refund>, LedgerError> {
        let refunds = self.refunds.lock().unwrap();
        Ok(refunds
            .values()
            .filter(|r| r.status == RefundStatus::Pending)
            .cloned()
            .collect())
    }
    async fn unresolved_orders(&self) -> Result<Vec<Order>, LedgerError> {
        let orders = self.orders.lock().unwrap();
        Ok(orders
            .values()
            .filter(|o| o.needs_recovery())
            .cloned()
            .collect())
    }
    async fn refunds_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Refund>, LedgerError> {
        let refunds = self.refunds.lock().unwrap();
        Ok(refunds
            .values()
            .filter(|r| r.created_at >= from && r.created_at < to)
            .cloned()
            .collect())
    }
    // Profit sharing is tested over the embedded ledger (ledger::split_tests, tests/splits.rs).
    async fn insert_funded_refund(
        &self,
        refund: Refund,
        returns: Vec<crate::ledger::SplitReturn>,
    ) -> Result<Inserted<Refund>, LedgerError> {
        match returns.is_empty() {
            true => self.insert_refund(refund).await,
            false => Err(no_splits()),
        }
    }
    async fn insert_split(
        &self,
        _: crate::ledger::Split,
    ) -> Result<Inserted<crate::ledger::Split>, LedgerError> {
        Err(no_splits())
    }
    async fn get_split(&self, _: &str) -> Result<Option<crate::ledger::Split>, LedgerError> {
        Ok(None)
    }
    async fn update_split(
        &self,
        _: &crate::ledger::Split,
    ) -> Result<crate::ledger::Split, LedgerError> {
        Err(no_splits())
    }
    async fn splits_of(&self, _: &str) -> Result<Vec<crate::ledger::Split>, LedgerError> {
        Ok(vec![])
    }
    async fn insert_split_return(
        &self,
        _: crate::ledger::SplitReturn,
    ) -> Result<Inserted<crate::ledger::SplitReturn>, LedgerError> {
        Err(no_splits())
    }
    async fn get_split_return(
        &self,
        _: &str,
    ) -> Result<Option<crate::ledger::SplitReturn>, LedgerError> {
        Ok(None)
    }
    async fn update_split_return(
        &self,
        _: &crate::ledger::SplitReturn,
    ) -> Result<crate::ledger::SplitReturn, LedgerError> {
        Err(no_splits())
    }
    async fn pending_splits(
        &self,
    ) -> Result<(Vec<crate::ledger::Split>, Vec<crate::ledger::SplitReturn>), LedgerError> {
        Ok((vec![], vec![]))
    }
    async fn receiver_bound(&self, _: &crate::ledger::ReceiverKey) -> Result<bool, LedgerError> {
        Ok(false)
    }
    async fn record_receiver(&self, _: &crate::ledger::ReceiverKey) -> Result<(), LedgerError> {
        Err(no_splits())
    }
}

fn no_splits() -> LedgerError {
    LedgerError::Storage("the in-memory test ledger keeps no splits".into())
}

/// The flows over the sample's channels, each answering through a scripted transport.
struct Rig {
    payments: Arc<Payments>,
    fakes: Arc<FakeTransports>,
    ledger: Arc<MemLedger>,
}

fn rig() -> Rig {
    let sample = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml"));
    let mut snapshot = crate::config::load(sample, &Default::default()).expect("sample loads");
    for entry in &mut snapshot.channels {
        entry.adapter = Arc::new(ScriptedChannel {
            name: entry.name.clone(),
        });
    }
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let fakes = Arc::new(FakeTransports::default());
    let caller =
        Caller::with_transports(Arc::new(Health::default()), metrics.clone(), fakes.clone());
    let ledger = Arc::new(MemLedger::default());
    let settings = ServiceSettings {
        barcode_poll_interval: Duration::from_secs(3),
        barcode_poll_attempts: 10,
        abandon_retry: Duration::from_secs(2),
        ..ServiceSettings::default()
    };
    let payments = Payments::with_caller(
        ledger.clone(),
        Arc::new(ArcSwap::from_pointee(snapshot)),
        settings,
        metrics,
        caller,
    );
    Rig {
        payments,
        fakes,
        ledger,
    }
}

fn request(no: &str, amount: u64, scene: Scene) -> OrderRequest {
    OrderRequest {
        out_trade_no: no.into(),
        amount: Fen(amount),
        currency: Currency::Cny,
        method: PayMethod::Alipay,
        scene,
        subject: "in-process".into(),
        description: None,
        payer_id: None,
        auth_code: (scene == Scene::Barcode).then(|| "2800000000000001".into()),
        client_ip: None,
        expires_at: None,
        metadata: Default::default(),
        split: false,
    }
}

fn outcomes(order: &Order) -> Vec<(String, AttemptOutcome)> {
    order
        .attempts
        .iter()
        .map(|a| (a.channel.clone(), a.outcome))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_unknown_prepay_outcome_abandons_then_closes_there_in_the_background() {
    let rig = rig();
    // Small alipay QR payments go to Ping++ first, then Alipay (the sample's cheapest rule).
    rig.fakes.channel("pingpp").push(Step::answer("garbled"));
    rig.fakes.channel("alipay").push(Step::answer("waiting"));
    let order = rig
        .payments
        .create(request("INPROC0001", 800, Scene::Qr))
        .await
        .unwrap();
    assert_eq!(order.channel.as_deref(), Some("alipay"));
    assert_eq!(
        outcomes(&order),
        [
            ("pingpp".to_string(), AttemptOutcome::Abandoned),
            ("alipay".to_string(), AttemptOutcome::Accepted)
        ]
    );
    // The background close: refused twice (unknown), then the channel confirms it.
    let pingpp = rig.fakes.channel("pingpp");
    pingpp.push(Step::answer("garbled")); // close
    pingpp.push(Step::answer("garbled")); // the query after it
    pingpp.push(Step::answer("closed")); // close, after the doubled delay
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let stored = rig.ledger.get_order("INPROC0001").await.unwrap().unwrap();
    assert_eq!(
        stored.attempts[0].closing,
        Some(Closing::Closed),
        "{stored:?}"
    );
    assert_eq!(
        pingpp.uris(),
        [
            "http://127.0.0.1/create",
            "http://127.0.0.1/close",
            "http://127.0.0.1/query",
            "http://127.0.0.1/close"
        ]
    );
    assert!(!stored.needs_recovery());
}

#[tokio::test(start_paused = true)]
async fn nothing_sent_anywhere_fails_the_order_and_a_repeat_routes_it_again() {
    let rig = rig();
    rig.fakes.channel("pingpp").push(Step::refused());
    rig.fakes.channel("alipay").push(Step::refused());
    let err = rig
        .payments
        .create(request("INPROC0002", 800, Scene::Qr))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::ChannelUnavailable { .. }),
        "{err:?}"
    );
    let stored = rig.ledger.get_order("INPROC0002").await.unwrap().unwrap();
    assert_eq!(stored.status, PaymentStatus::Failed);
    assert_eq!(
        stored.failure.as_ref().map(|f| f.code.clone()),
        Some(FailureCode::NothingCreated)
    );
    rig.fakes.channel("pingpp").push(Step::answer("waiting"));
    let again = rig
        .payments
        .create(request("INPROC0002", 800, Scene::Qr))
        .await
        .unwrap();
    assert_eq!(again.status, PaymentStatus::Pending);
    assert_eq!(again.channel.as_deref(), Some("pingpp"));
}

#[tokio::test(start_paused = true)]
async fn a_barcode_payment_never_confirmed_is_reversed_after_the_polls() {
    let rig = rig();
    let alipay = rig.fakes.channel("alipay");
    alipay.push(Step::answer("waiting")); // the customer is entering a password
    for _ in 0..10 {
        alipay.push(Step::answer("waiting"));
    }
    alipay.push(Step::answer("closed")); // the reversal
    let started = tokio::time::Instant::now();
    let order = rig
        .payments
        .create(request("INPROC0003", 1500, Scene::Barcode))
        .await
        .unwrap();
    assert_eq!(order.status, PaymentStatus::Failed);
    assert_eq!(
        order.failure.map(|f| f.code),
        Some(FailureCode::PaymentReversed)
    );
    assert_eq!(alipay.calls(), 12, "create, 10 queries, cancel");
    assert_eq!(alipay.uris().last().unwrap(), "http://127.0.0.1/cancel");
    // Ten polls three seconds apart, on the paused clock.
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_barcode_payment_is_never_sent_to_another_channel() {
    let rig = rig();
    // The sample sends barcode payments only to Alipay: an unknown answer stays there.
    let alipay = rig.fakes.channel("alipay");
    alipay.push(Step::answer("garbled"));
    for _ in 0..10 {
        alipay.push(Step::answer("paid"));
    }
    let order = rig
        .payments
        .create(request("INPROC0004", 1500, Scene::Barcode))
        .await
        .unwrap();
    assert_eq!(order.status, PaymentStatus::Succeeded);
    assert_eq!(rig.fakes.channel("pingpp").calls(), 0);
    assert_eq!(
        alipay.calls(),
        2,
        "the create, then one query found it paid"
    );
}
