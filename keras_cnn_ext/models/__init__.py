"""Architecture builders from configuration tables."""
