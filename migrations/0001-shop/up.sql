-- Shop data: settings, catalog, orders, payments.
-- Money is integer minor units (cents). Timestamps are RFC 3339 UTC text.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE products (
    sku            TEXT PRIMARY KEY,
    handle         TEXT NOT NULL,
    title          TEXT NOT NULL,
    price_cents    INTEGER NOT NULL CHECK (price_cents >= 0),
    stock          INTEGER NOT NULL,
    allow_oversell INTEGER NOT NULL DEFAULT 0 CHECK (allow_oversell IN (0, 1)),
    barcode        TEXT,
    updated_at     TEXT NOT NULL
) STRICT;

CREATE INDEX products_barcode ON products (barcode) WHERE barcode IS NOT NULL;

CREATE TABLE orders (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_json    TEXT NOT NULL, -- the validated request, to tell a retry from a reused key
    receipt_seq     INTEGER NOT NULL UNIQUE CHECK (receipt_seq > 0),
    receipt_number  TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    customer_name   TEXT,
    customer_email  TEXT,
    total_cents     INTEGER NOT NULL CHECK (total_cents >= 0),
    currency        TEXT NOT NULL
) STRICT;

CREATE TABLE order_lines (
    order_id         TEXT NOT NULL REFERENCES orders (id),
    line_no          INTEGER NOT NULL,
    sku              TEXT NOT NULL REFERENCES products (sku),
    title            TEXT NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    line_total_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
) STRICT;

CREATE TABLE payments (
    order_id       TEXT PRIMARY KEY REFERENCES orders (id),
    method         TEXT NOT NULL CHECK (method IN ('cash', 'card')),
    amount_cents   INTEGER NOT NULL,
    tendered_cents INTEGER,
    change_cents   INTEGER,
    reference      TEXT
) STRICT;
