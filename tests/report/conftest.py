from __future__ import annotations

import pytest

from tests.report.fake_store import fill


@pytest.fixture
def filled(tmp_path):
    """A store with studies ``mnv3_mini`` and ``other`` (see fake_store.py); returns it."""
    return fill(f"sqlite:///{tmp_path / 'r.db'}")
