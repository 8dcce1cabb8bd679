"""Registers ``twistd was`` (Twisted finds this file by its location, not by import)."""

from twisted.application.service import ServiceMaker

was = ServiceMaker("was", "was_twisted.tap", "Serve Wallet Attached Storage (WAS).", "was")
