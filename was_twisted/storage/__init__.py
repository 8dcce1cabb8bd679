"""Bytes and records at rest: the storage contract and its backends."""
