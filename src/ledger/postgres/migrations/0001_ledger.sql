-- The ledger's tables. Every entity is stored as the same JSON text the embedded ledger
-- writes (`record`, the serde encoding; text rather than jsonb so that it is byte for byte
-- what was written), beside the columns that are queried. Keys use the "C" collation: lists
-- and scans run in byte order, as the embedded ledger's do.

-- `ledger_id`: random, made once (part of every event id).
CREATE TABLE ledger_meta (
    key text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);

-- One row: the last feed position and the last outbox queue ticket handed out. A write that
-- raises events updates it just before it commits, so positions are given in commit order.
CREATE TABLE ledger_counters (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_seq bigint NOT NULL DEFAULT 0,
    last_ticket bigint NOT NULL DEFAULT 0
);
INSERT INTO ledger_counters (id) VALUES (true);

-- `version` grows by one with every write of the order (each write names the version it
-- read). `owner`: the replica that wrote it last (its lease number, see `locks.rs`), which
-- follows up what the order has in flight; once that replica's lease is gone another takes
-- the order over.
CREATE TABLE orders (
    out_trade_no text COLLATE "C" PRIMARY KEY,
    record text NOT NULL,
    status text NOT NULL,
    channel text,
    created_ms bigint NOT NULL,
    needs_recovery boolean NOT NULL,
    version bigint NOT NULL,
    owner integer
);
CREATE INDEX orders_by_created ON orders (created_ms, out_trade_no);
CREATE INDEX orders_needing_recovery ON orders (out_trade_no) WHERE needs_recovery;

CREATE TABLE refunds (
    out_refund_no text COLLATE "C" PRIMARY KEY,
    out_trade_no text COLLATE "C" NOT NULL REFERENCES orders,
    record text NOT NULL,
    pending boolean NOT NULL,
    created_ms bigint NOT NULL
);
CREATE INDEX refunds_pending ON refunds (out_refund_no) WHERE pending;
CREATE INDEX refunds_pending_by_order ON refunds (out_trade_no) WHERE pending;
CREATE INDEX refunds_by_created ON refunds (created_ms);

CREATE TABLE splits (
    out_split_no text COLLATE "C" PRIMARY KEY,
    out_trade_no text COLLATE "C" NOT NULL REFERENCES orders,
    record text NOT NULL,
    pending boolean NOT NULL
);
CREATE INDEX splits_by_order ON splits (out_trade_no, out_split_no);
CREATE INDEX splits_pending ON splits (out_split_no) WHERE pending;
CREATE INDEX splits_pending_by_order ON splits (out_trade_no) WHERE pending;

CREATE TABLE split_returns (
    out_return_no text COLLATE "C" PRIMARY KEY,
    out_split_no text COLLATE "C" NOT NULL REFERENCES splits,
    out_trade_no text COLLATE "C" NOT NULL,
    record text NOT NULL,
    pending boolean NOT NULL
);
CREATE INDEX split_returns_pending ON split_returns (out_return_no) WHERE pending;
CREATE INDEX split_returns_pending_by_order ON split_returns (out_trade_no) WHERE pending;

-- Receivers registered with their channel for splits.
CREATE TABLE receivers (
    channel text COLLATE "C" NOT NULL,
    receiver_type text COLLATE "C" NOT NULL,
    account text COLLATE "C" NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, receiver_type, account)
);

-- The feed: position → event.
CREATE TABLE events (
    seq bigint PRIMARY KEY,
    out_trade_no text COLLATE "C" NOT NULL,
    record text NOT NULL
);

-- Deliveries not done yet. Each order's deliveries queue by `ticket`; only a queue's head is
-- ever due (see `due`).
CREATE TABLE outbox (
    seq bigint PRIMARY KEY REFERENCES events,
    out_trade_no text COLLATE "C" NOT NULL,
    ticket bigint NOT NULL,
    failed boolean NOT NULL,
    next_ms bigint NOT NULL,
    record text NOT NULL
);
CREATE INDEX outbox_queues ON outbox (out_trade_no, ticket);
CREATE INDEX outbox_due ON outbox (next_ms, seq) WHERE NOT failed;
