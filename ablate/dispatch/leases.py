"""Lease settings and the lease-lost signal, shared by the trial entry point and claims.

``ablate.dispatch.entry`` (what a worker runs) and ``ablate.dispatch.claiming`` (how it
claims first) both need these; neither imports the other for them.
"""

from __future__ import annotations

DEFAULT_LEASE_SECONDS = 120.0
HEARTBEATS_PER_LEASE = 4  # a lease survives three missed renewals
CLAIMS_LOG = "claims.log"  # in each run folder: one line per claim, the audit trail


class LeaseLost(Exception):
    """Raised into training when the heartbeat finds that the claim was taken over."""
