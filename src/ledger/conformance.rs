//! One contract, two backends: the ledger tests are written once against a [`Backend`] and
//! [`on_both_backends!`] runs each of them on the embedded ledger and on PostgreSQL, with the
//! same assertions.

use std::sync::Arc;

use super::events::EventStore;
use super::postgres::testdb::TestDb;
use super::{Ledger, RedbLedger};

/// A ledger as the tests use it: orders and refunds, and the events feed.
pub(crate) trait Store: Ledger + EventStore {}
impl<T: Ledger + EventStore> Store for T {}

/// A ledger under test.
pub(crate) type Shared = Arc<dyn Store>;

/// Where a test's ledger lives; it outlives every ledger opened on it.
pub(crate) enum Backend {
    Redb(tempfile::TempDir),
    Postgres(TestDb),
}

impl Backend {
    /// A fresh embedded ledger directory.
    pub(crate) fn redb() -> Backend {
        Backend::Redb(tempfile::tempdir().unwrap())
    }

    /// A fresh PostgreSQL schema, if a server answers (see `postgres::testdb`).
    pub(crate) async fn postgres() -> Option<Backend> {
        TestDb::create().await.map(Backend::Postgres)
    }

    /// Opens the ledger, queueing events for delivery or not (`--events-url`).
    pub(crate) async fn open(&self, deliver: bool) -> Shared {
        match self {
            Backend::Redb(dir) => Arc::new(
                RedbLedger::open(dir.path())
                    .unwrap()
                    .delivering_events(deliver),
            ),
            Backend::Postgres(db) => Arc::new(db.ledger().await.delivering_events(deliver)),
        }
    }

    /// Lets go of `ledger` and opens what it stored again (a restart).
    pub(crate) async fn reopen(&self, ledger: Shared, deliver: bool) -> Shared {
        drop(ledger);
        match self {
            Backend::Redb(dir) => {
                // The writer thread lets go of the file a moment after the last handle.
                for _ in 0..100 {
                    if let Ok(l) = RedbLedger::open(dir.path()) {
                        return Arc::new(l.delivering_events(deliver));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                panic!("the ledger does not reopen");
            }
            Backend::Postgres(_) => self.open(deliver).await,
        }
    }
}

/// Instantiates each named test `async fn name(backend: Backend)` twice, as
/// `redb::name` and `postgres::name` (skipped, with a notice, without a server outside CI).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::ledger::conformance::Backend::redb()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(b) = $crate::ledger::conformance::Backend::postgres().await {
                        super::$name(b).await
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
