-- The engine: who answers a conversation (the bot, or people after a hand-off) and, per reply, the turn's record
-- (path and why, intent, emotion, retrieval, model, tokens, latency per stage) as JSON text.
ALTER TABLE conversations ADD COLUMN handler TEXT NOT NULL DEFAULT 'bot';
ALTER TABLE messages ADD COLUMN trace TEXT;
