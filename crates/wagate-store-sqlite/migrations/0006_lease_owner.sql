-- Who holds a send job's lease: the claiming process's id (unique per start). Several
-- processes may share the database, so a process releases only its own leases and never
-- assumes the leases it finds at start are a crash's; another owner's lease is taken only
-- once it has expired. NULL when the job is not leased.
ALTER TABLE send_jobs ADD COLUMN lease_owner TEXT;
