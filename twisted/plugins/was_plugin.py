"""Registers ``twistd was`` and the ``reuseport:`` and ``inherited:`` endpoints (Twisted finds this file by its location)."""

from twisted.application.service import ServiceMaker

from was_twisted.inherited import InheritedParser
from was_twisted.reuseport import ReusePortParser

was = ServiceMaker("was", "was_twisted.tap", "Serve Wallet Attached Storage (WAS).", "was")
reuseport = ReusePortParser()
inherited = InheritedParser()
