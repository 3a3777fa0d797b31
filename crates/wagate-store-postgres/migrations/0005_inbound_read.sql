-- When the device marked an inbound message read (POST /v1/developer/chats/read), and
-- the way to a chat's unread messages.
ALTER TABLE inbound_messages ADD COLUMN read_at BIGINT;
CREATE INDEX inbound_messages_unread ON inbound_messages (device_uid, from_phone, received_at)
    WHERE read_at IS NULL;
