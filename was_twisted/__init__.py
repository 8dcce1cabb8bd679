"""was-twisted: a Twisted server for Wallet Attached Storage (WAS)."""

__version__ = "0.1.0"
