-- The human desk: who holds a conversation after a hand-off, since when it waits in the queue, and the customer's
-- end-of-chat rating.
ALTER TABLE conversations ADD COLUMN assignee_id TEXT;
ALTER TABLE conversations ADD COLUMN queued_at BIGINT;
ALTER TABLE conversations ADD COLUMN rating INTEGER;
ALTER TABLE conversations ADD COLUMN rating_comment TEXT;
CREATE INDEX conversations_desk ON conversations(tenant_id, handler, status);
