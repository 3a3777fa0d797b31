-- Several nodes on one database (wagate_core::lease).

-- Who holds a webhook delivery's lease: a node releases only its own, and moves on only a
-- delivery it still holds. NULL when the delivery is not leased.
ALTER TABLE webhook_deliveries ADD COLUMN lease_owner TEXT;

-- Which node drives each device: an owner (NULL once released), an expiry the owner
-- renews, and an epoch that grows on every acquisition. Device writes lock the row
-- FOR SHARE and check owner and epoch first (fencing), so a takeover (an UPDATE of the
-- row) waits for writes under way, and no write of the old holder lands after it.
CREATE TABLE device_leases (
    device_uid TEXT COLLATE "C" PRIMARY KEY,
    owner      TEXT,
    epoch      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
-- Renewal is one statement per node: by owner.
CREATE INDEX device_leases_by_owner ON device_leases (owner);

-- Nodes sharing this database, alive while their heartbeat is recent.
CREATE TABLE nodes (
    node_id      TEXT PRIMARY KEY,
    heartbeat_at BIGINT NOT NULL,
    draining     BOOLEAN NOT NULL DEFAULT FALSE
);
