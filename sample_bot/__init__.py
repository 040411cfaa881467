"""A runnable demo bot for chatwoot-mirror."""
