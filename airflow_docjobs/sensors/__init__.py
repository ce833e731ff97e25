"""Deferrable sensors: wait for a vendor job, return its result."""
