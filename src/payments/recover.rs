//! Recovery after a crash: resolving what the ledger shows in flight.

use super::*;

impl Payments {
    /// Resolves what a crash left in flight (orders and refunds created before `booted`, when
    /// this process started serving; newer ones are this process's own, still being worked
    /// on): attempts in doubt are queried (barcode payments queried, then reversed),
    /// abandoned attempts closed, late payments refunded, pending refunds, splits and split
    /// returns confirmed (re-sent with the same number when the channel has none), all
    /// concurrently (at most 16 channel conversations at a time).
    ///
    /// On a ledger shared by several processes, what is left in flight is what processes no
    /// longer alive left: each live process takes over its share (see [`Payments::adopt`]).
    pub async fn recover(&self, booted: DateTime<Utc>) -> Result<usize, ServiceError> {
        if let Some(orphans) = self.ledger.adopt_orphans().await? {
            return Ok(self.resume(orphans).await);
        }
        let mut orders = self.ledger.unresolved_orders().await?;
        orders.retain(|o| o.created_at < booted);
        let mut refunds = self.ledger.pending_refunds().await?;
        refunds.retain(|r| r.created_at < booted);
        let (mut splits, mut returns) = self.ledger.pending_splits().await?;
        splits.retain(|s| s.created_at < booted);
        returns.retain(|r| r.created_at < booted);
        let left = Orphans {
            orders,
            refunds,
            splits,
            returns,
        };
        Ok(self.resume(left).await)
    }

    /// On a ledger shared by several processes: takes over the work in flight of those no
    /// longer alive, and resolves it. `None`: the ledger is not shared (nothing to adopt).
    pub async fn adopt(&self) -> Result<Option<usize>, ServiceError> {
        match self.ledger.adopt_orphans().await? {
            Some(orphans) => Ok(Some(self.resume(orphans).await)),
            None => Ok(None),
        }
    }

    /// Resolves work left in flight (see [`Payments::recover`]); answers how much there was.
    async fn resume(&self, left: Orphans) -> usize {
        let Orphans {
            orders: open,
            refunds,
            splits,
            mut returns,
        } = left;
        // Returns sent with a refund settle with it (recovered with the refunds above).
        returns.retain(|r| !r.with_refund);
        let n = open.len() + refunds.len() + splits.len() + returns.len();
        let Some(me) = self.me.upgrade() else {
            return n;
        };
        let permits = Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = tokio::task::JoinSet::new();
        for o in open {
            let no = o.request.out_trade_no.clone();
            for a in o.unclosed_abandoned() {
                self.spawn_close_abandoned(no.clone(), a.channel.clone());
            }
            for l in o
                .late_payments
                .iter()
                .filter(|l| l.refund_status == LateRefund::Pending)
            {
                self.spawn_late_refund(no.clone(), l.channel.clone());
            }
            if o.status != PaymentStatus::Pending || !o.in_doubt() {
                continue;
            }
            let (me, permits) = (me.clone(), permits.clone());
            let channel = o.channel.clone().unwrap_or_default();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = if o.request.scene == Scene::Barcode {
                    // Query until known, reverse when it cannot be confirmed.
                    me.resolve_barcode(o).await.map(|_| ())
                } else {
                    me.refresh(&no, Traffic::Settle).await.map(|_| ())
                };
                if let Err(e) = result {
                    warn!(out_trade_no = no.as_str(), channel = channel.as_str(), %e, "recovery failed; the order stays in doubt");
                }
            });
        }
        for r in refunds {
            let (me, permits) = (me.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if let Err(e) = me.refresh_refund(&r.out_refund_no, Traffic::Settle).await {
                    warn!(out_refund_no = r.out_refund_no.as_str(), out_trade_no = r.out_trade_no.as_str(), channel = r.channel.as_str(), %e, "recovery refund query failed");
                }
            });
        }
        for s in splits {
            let (me, permits) = (me.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if let Err(e) = me.refresh_split(&s.out_split_no, Traffic::Settle).await {
                    warn!(out_split_no = s.out_split_no.as_str(), out_trade_no = s.out_trade_no.as_str(), channel = s.channel.as_str(), %e, "recovery split query failed");
                }
            });
        }
        for r in returns {
            let (me, permits) = (me.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if let Err(e) = me.refresh_split_return(&r.out_return_no, Traffic::Settle).await {
                    warn!(out_return_no = r.out_return_no.as_str(), out_trade_no = r.out_trade_no.as_str(), channel = r.channel.as_str(), %e, "recovery split return query failed");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        n
    }
}
