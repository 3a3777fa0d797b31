-- What each clientMessageId stood for (wagate_core::message::RequestIdentity::hash), so a
-- key reused for a different request is refused instead of answered with the original.
-- Messages accepted before this have none and are treated as replays.
ALTER TABLE messages ADD COLUMN request_hash TEXT;
