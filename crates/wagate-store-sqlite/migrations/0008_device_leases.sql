-- Which node drives each device (wagate_core::lease): an owner (NULL once released), an
-- expiry the owner renews, and an epoch that grows on every acquisition. Device writes
-- check owner and epoch in their transaction (fencing), so a node that lost a device
-- cannot write for it. A device without a row has never been leased.
CREATE TABLE device_leases (
    device_uid TEXT PRIMARY KEY,
    owner      TEXT,
    epoch      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
-- Renewal is one statement per node: by owner.
CREATE INDEX device_leases_by_owner ON device_leases (owner);

-- Nodes sharing this database, alive while their heartbeat is recent; devices are spread
-- over the live ones.
CREATE TABLE nodes (
    node_id      TEXT PRIMARY KEY,
    heartbeat_at INTEGER NOT NULL,
    draining     INTEGER NOT NULL DEFAULT 0
);
