-- Who holds a webhook delivery's lease, as for send jobs (0006): several nodes share the
-- database, so a node releases only its own leases and moves on only a delivery it still
-- holds. NULL when the delivery is not leased; a lease left by an older version without
-- an owner simply expires.
ALTER TABLE webhook_deliveries ADD COLUMN lease_owner TEXT;
