"""A study's creation time is its runs folder's owner key (``dispatch.results.StudyOwner``):
the time the insert returns must be the time every later read returns, on every
database, or a database would take its own study folder for another's."""

from __future__ import annotations

from ablate.dispatch.results import study_owner
from ablate.store import Store


def test_the_created_time_reads_back_as_it_was_written(db_url):
    store = Store(db_url)
    first = store.upsert_study("s", "d", "s.toml", "text")  # the insert's own record
    again = store.upsert_study("s", "d", "s.toml", "text")  # read back
    listed = study_owner(Store(db_url), "s")  # another connection, via store.studies()
    assert first.created_at.isoformat() == again.created_at.isoformat() == listed.created_at
