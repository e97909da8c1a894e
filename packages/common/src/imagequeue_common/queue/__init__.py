"""The queue engine: a taskiq broker on Redis with exact job states (BullMQ-style)."""
