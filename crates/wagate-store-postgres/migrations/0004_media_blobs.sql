-- Media bytes on PostgreSQL: every node of a cluster must read what any node stored (a
-- file uploaded through one node is sent by the device's node; a received file is served
-- by whichever node a client asks). At most 16 MB each, written once, read whole.
CREATE TABLE media_blobs (
    media_id TEXT COLLATE "C" PRIMARY KEY,
    bytes    BYTEA NOT NULL
);
