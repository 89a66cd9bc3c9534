//! Locks that hold across replicas: an order's lock, and each replica's lease.
//!
//! Both are PostgreSQL session advisory locks, all taken on one connection of this replica's
//! (its *lock session*), which the driver shares between tasks by pipelining:
//! - an order's lock is `pg_try_advisory_lock(key)`, `key` a hash of the schema and the order
//!   number, tried again after a short pause while another replica holds it. Waiting in a loop
//!   rather than in the server keeps the session free for every other lock;
//! - the lease is `pg_try_advisory_lock(LEASE_CLASS, replica)`, held for the life of the
//!   session. Work a replica leaves in flight is marked with its number (the `owner` columns),
//!   and `pg_locks` tells which numbers are held: a replica whose lease is gone is dead (or cut
//!   off from the database), and another replica may take its work over.
//!
//! The server releases every lock of a session when the session ends, so a replica that dies
//! holds nothing. A replica whose lock session breaks has lost its locks too: it opens another
//! session and takes its lease again, and the versions on every order write
//! (`orders.version`) keep a write made meanwhile from overwriting another replica's.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};

use super::{chain, pg_error, LedgerError};

/// The first key of a replica's lease ("payl"); the second is the replica's number.
pub(super) const LEASE_CLASS: i32 = 0x7061_796c;

/// The first key of the outbox's deliverer ("payd"); the second is the schema's hash. The
/// replica holding it is the one that delivers app events.
const DELIVERER_CLASS: i32 = 0x7061_7964;

/// How long a task waits for an order another replica holds before giving up (an operation
/// on one order does not take longer: channel calls are bounded well below it).
const WAIT: Duration = Duration::from_secs(60);

/// Pauses between tries while another replica holds the lock.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// This replica's lock session and lease.
pub(super) struct Locks {
    /// A pool of its own, so that the lock session never waits for a writer's connection.
    pool: Pool,
    session: tokio::sync::Mutex<Option<Arc<Object>>>,
    /// The schema, part of every order's key (tests run ledgers in schemas of one database).
    namespace: String,
    /// This replica's number (its lease), kept across lock sessions.
    replica: std::sync::atomic::AtomicI32,
    /// Lock sessions opened so far: the current one's number.
    sessions: std::sync::atomic::AtomicU64,
    /// The number of the lock session that holds the deliverer's lock (0: none).
    delivering: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Locks(replica {})", self.replica())
    }
}

/// An order's lock, held until dropped.
pub struct OrderLock {
    session: Arc<Object>,
    key: i64,
}

impl Drop for OrderLock {
    fn drop(&mut self) {
        let (session, key) = (self.session.clone(), self.key);
        // A lock that cannot be given back (no runtime, or the session broke) ends with its
        // session: the server releases it then.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Ok(st) = session
                    .prepare_cached("SELECT pg_advisory_unlock($1)")
                    .await
                {
                    let _ = session.execute(&st, &[&key]).await;
                }
            });
        }
    }
}

impl Locks {
    /// Opens the lock session and takes a lease.
    pub(super) async fn start(pool: Pool, namespace: String) -> Result<Locks, LedgerError> {
        let locks = Locks {
            pool,
            session: tokio::sync::Mutex::new(None),
            namespace,
            replica: std::sync::atomic::AtomicI32::new(0),
            sessions: std::sync::atomic::AtomicU64::new(0),
            delivering: std::sync::atomic::AtomicU64::new(0),
        };
        locks.session().await?;
        Ok(locks)
    }

    /// This replica's number, as the `owner` columns store it.
    pub(super) fn replica(&self) -> i32 {
        self.replica.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The lock session, opened again (with the lease taken again) when it broke.
    async fn session(&self) -> Result<Arc<Object>, LedgerError> {
        let mut current = self.session.lock().await;
        if let Some(s) = current.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        if current.take().is_some() {
            tracing::warn!(
                replica = self.replica(),
                "the ledger lock session broke; opening another"
            );
        }
        let s =
            Arc::new(self.pool.get().await.map_err(|e| {
                LedgerError::Storage(format!("ledger lock session: {}", chain(&e)))
            })?);
        self.take_lease(&s).await?;
        self.sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *current = Some(s.clone());
        Ok(s)
    }

    /// Whether this replica delivers the outbox: it holds the deliverer's lock, or takes it now
    /// (it is free once the replica that held it is gone).
    pub(super) async fn deliverer(&self) -> Result<bool, LedgerError> {
        use std::sync::atomic::Ordering::Relaxed;
        let session = self.session().await?;
        let number = self.sessions.load(Relaxed);
        if self.delivering.load(Relaxed) == number {
            return Ok(true);
        }
        let key = (order_key(&self.namespace, "\0deliverer") >> 32) as i32;
        let got: bool = session
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&DELIVERER_CLASS, &key],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if got {
            self.delivering.store(number, Relaxed);
            tracing::info!(replica = self.replica(), "this replica delivers app events");
        }
        Ok(got)
    }

    /// Takes this replica's lease on `session`: the number it had, if it is free, else a new
    /// random one no live replica holds.
    async fn take_lease(&self, session: &Object) -> Result<(), LedgerError> {
        let mut candidate = self.replica();
        for _ in 0..32 {
            if candidate <= 0 {
                candidate = random_replica();
            }
            let row = session
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&LEASE_CLASS, &candidate],
                )
                .await
                .map_err(pg_error)?;
            if row.get::<_, bool>(0) {
                self.replica
                    .store(candidate, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
            candidate = 0;
        }
        Err(LedgerError::Storage(
            "no free replica number for the ledger lease".into(),
        ))
    }

    /// Locks order `no` for this task: waits while another replica holds it.
    pub(super) async fn lock(&self, no: &str) -> Result<OrderLock, LedgerError> {
        let key = order_key(&self.namespace, no);
        let started = tokio::time::Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            let session = self.session().await?;
            let st = session
                .prepare_cached("SELECT pg_try_advisory_lock($1)")
                .await
                .map_err(pg_error)?;
            let got: bool = session
                .query_one(&st, &[&key])
                .await
                .map_err(pg_error)?
                .get(0);
            if got {
                return Ok(OrderLock { session, key });
            }
            if started.elapsed() >= WAIT {
                return Err(LedgerError::Storage(format!(
                    "order {no} stayed locked by another replica for {} s",
                    WAIT.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}

/// A random replica number: positive, so that it reads the same as `pg_locks.objid`.
fn random_replica() -> i32 {
    let n = u32::from_str_radix(&crate::crypto::random_hex(4), 16).unwrap_or(1);
    i32::try_from(n & 0x7fff_ffff).unwrap_or(1).max(1)
}

/// An order's lock key: the first 8 bytes of SHA-256 over the schema and the number. Two
/// orders whose keys collide merely wait for each other.
fn order_key(namespace: &str, no: &str) -> i64 {
    let digest = crate::crypto::sha256_hex(format!("{namespace}\0{no}").as_bytes());
    u64::from_str_radix(&digest[..16], 16).map_or(0, |k| k as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_differ_by_schema_and_number() {
        let a = order_key("public", "o-1");
        assert_eq!(a, order_key("public", "o-1"));
        assert_ne!(a, order_key("public", "o-2"));
        assert_ne!(a, order_key("other", "o-1"));
        // The separator keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(order_key("ab", "c"), order_key("a", "bc"));
    }

    #[test]
    fn replica_numbers_are_positive() {
        for _ in 0..1000 {
            assert!(random_replica() > 0);
        }
    }
}
