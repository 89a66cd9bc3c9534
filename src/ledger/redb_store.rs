//! Embedded ledger on local disk (redb: ACID, copy-on-write B-trees, fsync on commit).
//! Records are JSON so that the format is readable and migrations stay simple.

use std::path::Path;
use std::sync::{mpsc, Arc};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::{Inserted, Ledger, LedgerError, Order, ReceiverKey, Refund, Split, SplitReturn};
use crate::domain::RefundStatus;
use crate::order::events::{order_events, refund_event, Event, EventType, Subject};

pub(super) const ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("orders");
pub(super) const REFUNDS: TableDefinition<&str, &[u8]> = TableDefinition::new("refunds");
/// `ledger_id`: random, made when the file is created.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Feed position → event.
pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Feed position → delivery not done yet.
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// (created_at in ms, out_trade_no) → (): orders by creation, for lists.
pub(super) const BY_CREATED: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("orders_by_created");

/// The redb-backed ledger.
///
/// Writes are group-committed: one writer thread applies every write waiting at that moment in
/// a single transaction and commits (fsyncs) once, then answers each of them. Nothing is
/// acknowledged before the commit that contains it is durable; a write that fails storage
/// fails its whole batch, which is then not committed.
#[derive(Clone)]
pub struct RedbLedger {
    pub(super) db: Arc<Database>,
    writes: mpsc::Sender<Job>,
    commits: prometheus::IntCounter,
    pub(super) outbox: Outbox,
}

/// How writes record events: the ledger's id, and whether events are queued for delivery.
#[derive(Clone, Debug)]
pub(super) struct Outbox {
    pub(super) ledger_id: Arc<str>,
    pub(super) deliver: bool,
}

impl std::fmt::Debug for RedbLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbLedger")
    }
}

/// The answer to one write, given the result of the commit that contained it.
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One write: applies itself to the batch's transaction and says whether storage failed.
type Job = Box<dyn FnOnce(&WriteTransaction) -> (bool, Completion) + Send>;

/// Most writes applied in one transaction.
const MAX_BATCH: usize = 256;

/// Page cache of the database (read cache and write buffer together). Orders are read back
/// rarely (repeats, queries, notifications), so a small cache keeps the sidecar's memory flat
/// however large the ledger grows: it holds the B-tree's branch pages (about 1 MiB at 50,000
/// orders) and the recently written leaves, which is what a write (that reads the order it
/// replaces) and a query of a recent order touch. A page it does not hold is one `pread` from
/// the operating system's page cache.
const CACHE_BYTES: usize = 2 * 1024 * 1024;

pub(super) fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

pub(super) fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, LedgerError> {
    serde_json::to_vec(v).map_err(storage)
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(b).map_err(storage)
}

/// The writer thread: one transaction and one commit for every write queued at that moment.
fn write_loop(db: Arc<Database>, jobs: mpsc::Receiver<Job>, commits: prometheus::IntCounter) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let tx = match db.begin_write() {
            Ok(tx) => tx,
            Err(e) => {
                // Dropping the batch answers each of its writes with "not committed".
                tracing::error!(error = %e, "ledger: cannot begin a write transaction");
                continue;
            }
        };
        let mut failed = false;
        let mut completions = Vec::with_capacity(batch.len());
        for job in batch {
            let (storage_failed, done) = job(&tx);
            failed |= storage_failed;
            completions.push(done);
        }
        let committed = if failed {
            let _ = tx.abort();
            Err("a write in the same ledger transaction failed; nothing was committed".to_string())
        } else {
            tx.commit()
                .map(|()| commits.inc())
                .map_err(|e| e.to_string())
        };
        for done in completions {
            done(committed.clone());
        }
    }
}

impl RedbLedger {
    /// Opens (or creates) the ledger file `dir/ledger.redb` and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        let commits = prometheus::IntCounter::new("ledger_commits", "commits").map_err(storage)?;
        Self::open_counting(dir, commits)
    }

    /// [`RedbLedger::open`], counting commits in `commits` (`payroute_ledger_commits_total`).
    pub fn open_counting(dir: &Path, commits: prometheus::IntCounter) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(dir).map_err(storage)?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join("ledger.redb"))
            .map_err(storage)?;
        let ledger_id = prepare(&db)?;
        let db = Arc::new(db);
        let (send, jobs) = mpsc::channel();
        let (writer_db, writer_commits) = (db.clone(), commits.clone());
        std::thread::Builder::new()
            .name("payroute-ledger".into())
            .spawn(move || write_loop(writer_db, jobs, writer_commits))
            .map_err(storage)?;
        Ok(RedbLedger {
            db,
            writes: send,
            commits,
            outbox: Outbox {
                ledger_id: ledger_id.into(),
                deliver: false,
            },
        })
    }

    /// Queues every event written from now on for delivery to the app (`--events-url`).
    /// Without it events are still written (the feed), and nothing is queued.
    pub fn delivering_events(mut self, deliver: bool) -> Self {
        self.outbox.deliver = deliver;
        self
    }

    /// Write transactions committed since the ledger was opened (each one fsync).
    pub fn commits(&self) -> u64 {
        self.commits.get()
    }

    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(storage)?
    }

    /// Queues `f` for the next group commit and answers once that commit is durable. An error
    /// `f` returns (other than storage) is answered as is, and `f` must not have written then.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let result = f(tx);
            let storage_failed = matches!(result, Err(LedgerError::Storage(_)));
            let done: Completion = Box::new(move |committed| {
                let _ = answer.send(match (committed, result) {
                    (Ok(()), r) | (Err(_), r @ Err(_)) => r,
                    (Err(e), Ok(_)) => Err(LedgerError::Storage(e)),
                });
            });
            (storage_failed, done)
        });
        self.writes
            .send(job)
            .map_err(|_| LedgerError::Storage("the ledger writer has stopped".into()))?;
        answered
            .await
            .map_err(|_| LedgerError::Storage("the ledger write was not committed".into()))?
    }
}

/// Creates the tables, the ledger id and the order index (built from the orders of a ledger
/// written by a version without it). Returns the ledger id.
fn prepare(db: &Database) -> Result<String, LedgerError> {
    let tx = db.begin_write().map_err(storage)?;
    let id = {
        tx.open_table(REFUNDS).map_err(storage)?;
        super::redb_splits::prepare(&tx)?;
        tx.open_table(EVENTS).map_err(storage)?;
        tx.open_table(OUTBOX).map_err(storage)?;
        tx.open_table(super::redb_events::FAILED).map_err(storage)?;
        tx.open_table(super::redb_events::QUEUE).map_err(storage)?;
        tx.open_table(super::redb_events::DUE).map_err(storage)?;
        tx.open_table(super::redb_events::TICKETS)
            .map_err(storage)?;
        let orders = tx.open_table(ORDERS).map_err(storage)?;
        let mut index = tx.open_table(BY_CREATED).map_err(storage)?;
        if index.len().map_err(storage)? < orders.len().map_err(storage)? {
            for row in orders.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let o: Order = decode(v.value())?;
                index
                    .insert((o.created_at.timestamp_millis(), k.value()), ())
                    .map_err(storage)?;
            }
        }
        let mut meta = tx.open_table(META).map_err(storage)?;
        let existing = meta
            .get("ledger_id")
            .map_err(storage)?
            .map(|g| g.value().to_string());
        match existing {
            Some(id) => id,
            None => {
                let mut b = [0u8; 4];
                getrandom::fill(&mut b).map_err(storage)?;
                let id = hex::encode(b);
                meta.insert("ledger_id", id.as_str()).map_err(storage)?;
                id
            }
        }
    };
    tx.commit().map_err(storage)?;
    Ok(id)
}

/// Writes `after` over `before` (none: a new order) and the events the change raises.
pub(super) fn store_order(
    tx: &WriteTransaction,
    ob: &Outbox,
    before: Option<&Order>,
    after: &mut Order,
    encoded: Option<&[u8]>,
) -> Result<(), LedgerError> {
    after.version = before.map_or(1, |b| b.version + 1);
    let own;
    let encoded = match encoded {
        Some(bytes) => bytes,
        None => {
            own = encode(&*after)?;
            &own
        }
    };
    let key = after.request.out_trade_no.as_str();
    tx.open_table(ORDERS)
        .map_err(storage)?
        .insert(key, encoded)
        .map_err(storage)?;
    if before.is_none() {
        tx.open_table(BY_CREATED)
            .map_err(storage)?
            .insert((after.created_at.timestamp_millis(), key), ())
            .map_err(storage)?;
    }
    for t in order_events(before, after) {
        append_event(tx, ob, t, Subject::Payment(after), after.updated_at)?;
    }
    Ok(())
}

/// Appends one event to the feed (and, when delivering, to the outbox).
pub(super) fn append_event(
    tx: &WriteTransaction,
    ob: &Outbox,
    event_type: EventType,
    subject: Subject<'_>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Event, LedgerError> {
    let mut events = tx.open_table(EVENTS).map_err(storage)?;
    let seq = events
        .last()
        .map_err(storage)?
        .map_or(0, |(k, _)| k.value())
        + 1;
    let nonce = crate::crypto::random_hex(4);
    let event = Event::new(&ob.ledger_id, seq, &nonce, event_type, subject, at).map_err(storage)?;
    events
        .insert(seq, encode(&event)?.as_slice())
        .map_err(storage)?;
    drop(events);
    if ob.deliver {
        let queued = super::rules::queued(seq, event.out_trade_no.clone(), chrono::Utc::now());
        super::redb_events::enqueue(tx, &queued)?;
    }
    Ok(event)
}

pub(super) fn get<T: serde::de::DeserializeOwned>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, LedgerError> {
    let t = tx.open_table(table).map_err(storage)?;
    let v = t.get(key).map_err(storage)?;
    v.map(|g| decode(g.value())).transpose()
}

fn read_order(db: &Database, no: &str) -> Result<Option<Order>, LedgerError> {
    let tx = db.begin_read().map_err(storage)?;
    let t = tx.open_table(ORDERS).map_err(storage)?;
    let v = t.get(no).map_err(storage)?;
    v.map(|g| decode(g.value())).transpose()
}

#[async_trait::async_trait]
impl Ledger for RedbLedger {
    async fn insert_order(&self, mut order: Order) -> Result<Inserted<Order>, LedgerError> {
        // Encoded here, in parallel, so that the single writer only copies bytes.
        order.version = 1;
        let value = encode(&order)?;
        let ob = self.outbox.clone();
        self.write(move |tx| {
            let key = order.request.out_trade_no.as_str();
            if let Some(existing) = get(tx, ORDERS, key)? {
                return Ok(Inserted::Existing(existing));
            }
            store_order(tx, &ob, None, &mut order, Some(&value))?;
            Ok(Inserted::Created(order))
        })
        .await
    }

    async fn get_order(&self, out_trade_no: &str) -> Result<Option<Order>, LedgerError> {
        // Point reads take microseconds (cached pages, else the OS page cache): run inline
        // rather than paying two thread hops.
        read_order(&self.db, out_trade_no)
    }

    async fn put_order(&self, order: &mut Order) -> Result<(), LedgerError> {
        // Encoded here, in parallel, so that the single writer only copies bytes.
        let read = order.version;
        let mut next = Order {
            version: read + 1,
            ..order.clone()
        };
        let value = encode(&next)?;
        let ob = self.outbox.clone();
        let stored = self
            .write(move |tx| {
                let before: Option<Order> = get(tx, ORDERS, &next.request.out_trade_no)?;
                super::rules::check_version(before.as_ref(), &next.request.out_trade_no, read)?;
                let encoded = (before.is_some()).then_some(value.as_slice());
                store_order(tx, &ob, before.as_ref(), &mut next, encoded)?;
                Ok(next.version)
            })
            .await?;
        order.version = stored;
        Ok(())
    }

    async fn insert_refund(&self, refund: Refund) -> Result<Inserted<Refund>, LedgerError> {
        self.insert_funded_refund(refund, vec![]).await
    }

    async fn get_refund(&self, out_refund_no: &str) -> Result<Option<Refund>, LedgerError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let t = tx.open_table(REFUNDS).map_err(storage)?;
        let v = t.get(out_refund_no).map_err(storage)?;
        v.map(|g| decode(g.value())).transpose()
    }

    async fn update_refund(&self, refund: &Refund) -> Result<(), LedgerError> {
        let refund = refund.clone();
        self.write(move |tx| {
            {
                let mut refunds = tx.open_table(REFUNDS).map_err(storage)?;
                let before: Refund = match refunds
                    .get(refund.out_refund_no.as_str())
                    .map_err(storage)?
                {
                    Some(g) => decode(g.value())?,
                    None => return Err(LedgerError::RefundNotFound(refund.out_refund_no.clone())),
                };
                let merged = super::rules::refund_details(&before, &refund);
                refunds
                    .insert(refund.out_refund_no.as_str(), encode(&merged)?.as_slice())
                    .map_err(storage)?;
            }
            Ok(())
        })
        .await
    }

    async fn settle_refund(&self, refund: &Refund) -> Result<Order, LedgerError> {
        let refund = refund.clone();
        let ob = self.outbox.clone();
        self.write(move |tx| {
            let Some(was) = get::<Refund>(tx, REFUNDS, &refund.out_refund_no)? else {
                return Err(LedgerError::RefundNotFound(refund.out_refund_no.clone()));
            };
            let Some(before) = get::<Order>(tx, ORDERS, &refund.out_trade_no)? else {
                return Err(LedgerError::OrderNotFound(refund.out_trade_no.clone()));
            };
            let mut order = before.clone();
            let refund = super::rules::settle_refund(&mut order, &was, &refund);
            tx.open_table(REFUNDS)
                .map_err(storage)?
                .insert(refund.out_refund_no.as_str(), encode(&refund)?.as_slice())
                .map_err(storage)?;
            // The payment's own events (if any) come first: the refund is about that payment.
            if was.status == RefundStatus::Pending {
                super::redb_splits::settle_carried_returns(tx, &ob, &refund, &mut order)?;
            }
            store_order(tx, &ob, Some(&before), &mut order, None)?;
            if let Some(t) = refund_event(Some(was.status), &refund) {
                append_event(tx, &ob, t, Subject::Refund(&refund), refund.updated_at)?;
            }
            Ok(order)
        })
        .await
    }

    async fn refunds_between(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Refund>, LedgerError> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let t = tx.open_table(REFUNDS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                let r: Refund = decode(v.value())?;
                if r.created_at >= from && r.created_at < to {
                    out.push(r);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn pending_refunds(&self) -> Result<Vec<Refund>, LedgerError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(storage)?;
            let t = tx.open_table(REFUNDS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                let r: Refund = decode(v.value())?;
                if r.status == RefundStatus::Pending {
                    out.push(r);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn insert_funded_refund(
        &self,
        refund: Refund,
        returns: Vec<SplitReturn>,
    ) -> Result<Inserted<Refund>, LedgerError> {
        let ob = self.outbox.clone();
        self.write(move |tx| super::redb_splits::insert_refund(tx, &ob, refund, &returns))
            .await
    }
    async fn insert_split(&self, split: Split) -> Result<Inserted<Split>, LedgerError> {
        self.insert_split_impl(split).await
    }
    async fn get_split(&self, out_split_no: &str) -> Result<Option<Split>, LedgerError> {
        self.read(super::redb_splits::SPLITS, out_split_no)
    }
    async fn update_split(&self, split: &Split) -> Result<Split, LedgerError> {
        self.update_split_impl(split).await
    }
    async fn splits_of(&self, out_trade_no: &str) -> Result<Vec<Split>, LedgerError> {
        self.splits_of_impl(out_trade_no).await
    }
    async fn insert_split_return(
        &self,
        ret: SplitReturn,
    ) -> Result<Inserted<SplitReturn>, LedgerError> {
        self.insert_split_return_impl(ret).await
    }
    async fn get_split_return(
        &self,
        out_return_no: &str,
    ) -> Result<Option<SplitReturn>, LedgerError> {
        self.read(super::redb_splits::RETURNS, out_return_no)
    }
    async fn update_split_return(&self, ret: &SplitReturn) -> Result<SplitReturn, LedgerError> {
        self.update_split_return_impl(ret).await
    }
    async fn pending_splits(&self) -> Result<(Vec<Split>, Vec<SplitReturn>), LedgerError> {
        self.pending_splits_impl().await
    }
    async fn receiver_bound(&self, key: &ReceiverKey) -> Result<bool, LedgerError> {
        self.receiver_bound_impl(key).await
    }
    async fn record_receiver(&self, key: &ReceiverKey) -> Result<(), LedgerError> {
        self.record_receiver_impl(key).await
    }

    async fn unresolved_orders(&self) -> Result<Vec<Order>, LedgerError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(storage)?;
            let t = tx.open_table(ORDERS).map_err(storage)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                let o: Order = decode(v.value())?;
                if o.needs_recovery() {
                    out.push(o);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
