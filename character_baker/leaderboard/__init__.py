"""The leaderboard: the SQLite store, board config and gate, paired regression tests, publishing, history."""
