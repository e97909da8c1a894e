"""imagequeue common: settings, task contracts and the Redis queue engine."""
