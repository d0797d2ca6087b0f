"""Loaded at start-up by every Python process of a test that puts this folder first on
PYTHONPATH (the runner and its spawned workers alike): with ABLATE_TEST_CLAIM_FAILS set,
every claim fails as a database error would."""

import os

if os.environ.get("ABLATE_TEST_CLAIM_FAILS"):
    from ablate.errors import StoreError
    from ablate.store import claims

    def _claim(self, study, trial_id, *args, **kwargs):
        raise StoreError("database sqlite:///x.db: OperationalError: disk I/O error")

    claims.ClaimsMixin.claim = _claim
