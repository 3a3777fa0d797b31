-- The way to a group chat's unread messages (POST /v1/developer/chats/read with a groupId).
CREATE INDEX inbound_messages_group_unread ON inbound_messages (device_uid, group_id, received_at)
    WHERE read_at IS NULL AND is_group;

-- WhatsApp's id of the message a reaction, edit, delete or poll vote acts on, so a poll's
-- votes are found without reading every row's details.
ALTER TABLE inbound_messages ADD COLUMN target_id TEXT;
CREATE INDEX inbound_messages_target ON inbound_messages (device_uid, target_id)
    WHERE target_id IS NOT NULL;
