-- Desk presence and assignment: when each agent's console was last seen (heartbeats), and when they were last
-- given a conversation (round-robin order).
ALTER TABLE staff_users ADD COLUMN last_seen_at BIGINT;
ALTER TABLE staff_users ADD COLUMN last_assigned_at BIGINT;
CREATE INDEX conversations_assignee ON conversations(assignee_id, status, handler);
