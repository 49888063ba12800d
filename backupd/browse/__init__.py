"""Looking inside snapshots: what borg lists of each, kept in a bounded on-disk index."""
