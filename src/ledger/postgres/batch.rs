//! Group commit: order inserts and order writes at their version that arrive while a batch is
//! being written wait for the next one, and each batch is one transaction — one statement for
//! its inserts, one for its writes, then their events, then one commit — so concurrent payments
//! share statements and commits instead of paying two commits each.
//!
//! A write the batch cannot make (its number taken, its copy stale, its order not stored) is
//! handed back and takes the one-at-a-time path, which tells those cases apart. No two writes
//! of one order are ever in one batch (or in two batches of two replicas at once): each is made
//! under the order's lock.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::tx::Tx;
use super::{big, decode, encode, ms, status_text, PgLedger};
use crate::ledger::{LedgerError, Order};
use crate::order::events::order_events;

/// Writes in one batch at most.
const MOST: usize = 256;

/// What the batch did with a write.
pub(super) enum Done {
    /// Written, at this version.
    Written(u64),
    /// Not written: take the one-at-a-time path.
    Declined,
}

pub(super) enum Job {
    /// A new order (whose insert raises no event).
    Insert(Order),
    /// `after` over the stored order at version `read` (`after.version` is `read`).
    Put(Order),
}

type Reply = oneshot::Sender<Result<Done, LedgerError>>;

/// The handle of a ledger's batch writer, started on first use.
#[derive(Default)]
pub(super) struct Batcher {
    queue: tokio::sync::OnceCell<mpsc::UnboundedSender<(Job, Reply)>>,
}

impl PgLedger {
    /// Sends `job` to the batch writer and waits for its batch's outcome.
    pub(super) async fn batched(&self, job: Job) -> Result<Done, LedgerError> {
        let queue = self
            .batch
            .queue
            .get_or_init(|| async {
                let (tx, rx) = mpsc::unbounded_channel();
                // The writer's own handle has a batcher of its own (never used), so that it
                // ends once every other handle is gone.
                let writer = PgLedger {
                    batch: Default::default(),
                    ..self.clone()
                };
                tokio::spawn(writer.write_batches(rx));
                tx
            })
            .await;
        let (reply, answer) = oneshot::channel();
        queue
            .send((job, reply))
            .map_err(|_| LedgerError::Storage("the ledger's batch writer stopped".into()))?;
        answer
            .await
            .map_err(|_| LedgerError::Storage("the ledger's batch writer stopped".into()))?
    }

    async fn write_batches(self, mut rx: mpsc::UnboundedReceiver<(Job, Reply)>) {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < MOST {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.write_batch(jobs).await;
        }
    }

    /// Writes one batch and answers each of its writes.
    async fn write_batch(&self, jobs: Vec<(Job, Reply)>) {
        let (mut inserts, mut puts) = (Vec::new(), Vec::new());
        for (job, reply) in jobs {
            match job {
                Job::Insert(o) => inserts.push((o, reply)),
                Job::Put(o) => puts.push((o, reply)),
            }
        }
        let outcome = self.write(&mut inserts, &mut puts).await;
        for (order, reply) in inserts.into_iter().chain(puts) {
            let answer = match &outcome {
                Ok(written) if written.contains(&order.request.out_trade_no) => {
                    Ok(Done::Written(order.version))
                }
                Ok(_) => Ok(Done::Declined),
                Err(e) => Err(LedgerError::Storage(e.to_string())),
            };
            let _ = reply.send(answer);
        }
    }

    /// The batch's transaction; answers the numbers written. `inserts` and `puts` come back
    /// with the versions they were written at.
    async fn write(
        &self,
        inserts: &mut [(Order, Reply)],
        puts: &mut [(Order, Reply)],
    ) -> Result<std::collections::HashSet<String>, LedgerError> {
        let mut client = self.client().await?;
        let mut tx = Tx::begin(&mut client, self).await?;
        let mut written = std::collections::HashSet::new();
        let owner = self.replica();
        if !inserts.is_empty() {
            let mut cols = Columns::default();
            for (o, _) in inserts.iter_mut() {
                o.version = 1;
                cols.push(o)?;
            }
            let rows = tx
                .rows(
                    "INSERT INTO orders (out_trade_no, record, status, channel, created_ms, \
                     needs_recovery, version, owner) \
                     SELECT u.no, u.record, u.status, u.channel, u.created, u.recovery, u.next, $8 \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
                     $6::bool[], $7::bigint[]) AS u(no, record, status, channel, created, recovery, next) \
                     ON CONFLICT (out_trade_no) DO NOTHING RETURNING out_trade_no",
                    &[
                        &cols.no,
                        &cols.record,
                        &cols.status,
                        &cols.channel,
                        &cols.created,
                        &cols.recovery,
                        &cols.next,
                        &owner,
                    ],
                )
                .await?;
            written.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        if !puts.is_empty() {
            let mut cols = Columns::default();
            for (o, _) in puts.iter_mut() {
                cols.was.push(big(o.version));
                o.version += 1;
                cols.push(o)?;
            }
            let rows = tx
                .rows(
                    "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
                     $4::text[], $5::bool[], $6::bigint[], $7::bigint[]) \
                     AS u(no, record, status, channel, recovery, was, next)), \
                     before AS (SELECT o.out_trade_no, o.record FROM orders o JOIN u \
                     ON o.out_trade_no = u.no COLLATE \"C\" AND o.version = u.was \
                     ORDER BY o.out_trade_no FOR UPDATE OF o) \
                     UPDATE orders SET record = u.record, status = u.status, channel = u.channel, \
                     needs_recovery = u.recovery, version = u.next, owner = $8 \
                     FROM u, before \
                     WHERE orders.out_trade_no = u.no COLLATE \"C\" \
                     AND before.out_trade_no = orders.out_trade_no AND orders.version = u.was \
                     RETURNING orders.out_trade_no, before.record",
                    &[
                        &cols.no,
                        &cols.record,
                        &cols.status,
                        &cols.channel,
                        &cols.recovery,
                        &cols.was,
                        &cols.next,
                        &owner,
                    ],
                )
                .await?;
            let befores: HashMap<String, String> = rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect();
            for (after, _) in puts.iter() {
                if let Some(before) = befores.get(&after.request.out_trade_no) {
                    let before: Order = decode(before)?;
                    if !order_events(Some(&before), after).is_empty() {
                        tx.raise_order_events(Some(&before), after);
                    }
                }
            }
            written.extend(befores.into_keys());
        }
        tx.commit().await?;
        Ok(written)
    }
}

/// A batch's orders as column arrays (`unnest` makes rows of them again).
#[derive(Default)]
struct Columns {
    no: Vec<String>,
    record: Vec<String>,
    status: Vec<String>,
    channel: Vec<Option<String>>,
    created: Vec<i64>,
    recovery: Vec<bool>,
    was: Vec<i64>,
    next: Vec<i64>,
}

impl Columns {
    /// Adds `o`, to be written at `o.version`.
    fn push(&mut self, o: &Order) -> Result<(), LedgerError> {
        self.no.push(o.request.out_trade_no.clone());
        self.record.push(encode(o)?);
        self.status.push(status_text(o.status)?);
        self.channel.push(o.channel.clone());
        self.created.push(ms(o.created_at));
        self.recovery.push(o.needs_recovery());
        self.next.push(big(o.version));
        Ok(())
    }
}
