"""The generic job trigger."""
