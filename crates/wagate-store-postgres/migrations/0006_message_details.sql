-- A message's structured content (a location, contact cards, a poll) and context (the
-- message it quotes, the people it mentions), as one JSON document (wagate_core::content::
-- Details); NULL when it has none. TEXT rather than JSONB: it is read whole with its
-- message and never queried into, so JSONB's parse on every write would buy nothing.
ALTER TABLE messages ADD COLUMN details TEXT;
ALTER TABLE inbound_messages ADD COLUMN details TEXT;
