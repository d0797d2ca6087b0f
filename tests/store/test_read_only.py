"""``Store(read_only=True)`` (``ablate watch``): reads what writers record, can write
nothing, creates nothing; on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import re

import pytest

from ablate.errors import StoreError
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult

RECIPE = """
name = "s"
seeds = [0]
[grid]
"model.keep_last_expansion" = [true, false]
"""


def test_reads_what_is_recorded_and_writes_nothing(db_url):
    trials = expand(parse_recipe(RECIPE, "s.toml"))
    writer = Store(db_url)
    writer.upsert_study("s", "two trials")
    writer.register_trials("s", trials)
    reader = Store(db_url, read_only=True)
    assert [s.name for s in reader.studies()] == ["s"]
    assert reader.statuses("s") == {t.trial_id: "pending" for t in trials}
    with pytest.raises(StoreError, match="(?i)read.?only"):
        reader.record(TrialResult.failure("s", trials[0].trial_id, "written by a reader"))
    with pytest.raises(StoreError, match="(?i)read.?only"):
        reader.upsert_study("another")
    # a writer's later record is seen by the open reader (a fresh snapshot per call)
    writer.record(TrialResult.failure("s", trials[1].trial_id, "boom"))
    assert reader.statuses("s") == {trials[0].trial_id: "pending", trials[1].trial_id: "failed"}
    assert [s.name for s in writer.studies()] == ["s"]
    reader.close()
    writer.close()


def test_a_watcher_creates_no_file_and_follows_a_writer_that_starts_later(tmp_path):
    """A file nobody has open is read as immutable, one connection per transaction, so the
    reader leaves nothing beside it; once a writer has it open (its -wal/-shm), the reader
    reads live through them and sees what the writer records."""
    db = tmp_path / "w.db"
    trials = expand(parse_recipe(RECIPE, "s.toml"))
    writer = Store(str(db))
    writer.upsert_study("s")
    writer.register_trials("s", trials)
    writer.close()
    reader = Store(str(db), read_only=True)
    assert reader.statuses("s") == {t.trial_id: "pending" for t in trials}
    assert reader.statuses("s") == {t.trial_id: "pending" for t in trials}
    assert [p.name for p in tmp_path.iterdir()] == ["w.db"]  # no -wal, no -shm
    writer = Store(str(db))  # a runner starts while the watcher polls
    writer.record(TrialResult.failure("s", trials[0].trial_id, "boom"))
    assert reader.statuses("s")[trials[0].trial_id] == "failed"
    writer.record(TrialResult.failure("s", trials[1].trial_id, "boom"))
    assert reader.statuses("s")[trials[1].trial_id] == "failed"
    reader.close()
    writer.close()  # the last connection: SQLite removes its -wal and -shm
    assert [p.name for p in tmp_path.iterdir()] == ["w.db"]


def test_a_missing_sqlite_file_is_not_created(tmp_path):
    from ablate.errors import NoDatabaseError

    path = tmp_path / "none" / "absent.db"
    with pytest.raises(NoDatabaseError, match="no database at"):
        Store(str(path), read_only=True)
    assert not path.parent.exists()


@pytest.mark.parametrize("revision,needle", [
    ("0000", "has schema 0000, this ablate needs"),
    ("0099", "was written by a newer ablate (schema 0099; this ablate knows up to"),
])
def test_a_reader_checks_the_schema_version(db_url, revision, needle):
    """``ablate watch`` reads only, yet never shows a database of another schema."""
    from sqlalchemy import create_engine, text

    from ablate.errors import SchemaVersionError

    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE alembic_version SET version_num = '{revision}'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match=re.escape(needle)):
        Store(db_url, read_only=True)
