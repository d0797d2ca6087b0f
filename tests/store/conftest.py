"""Store fixtures: the same tests against SQLite and the real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from tests.services.env import service_setting, unavailable


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The PostgreSQL that tests/services/start-all.sh started (its ``ablate_test`` db)."""
    url = service_setting("ABLATE_TEST_PG_URL", "ABLATE_PG_ERROR", "PostgreSQL")
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:  # whatever the failure, it is the reason to report
        unavailable("PostgreSQL", f"cannot connect to {url}: {str(err).splitlines()[0]}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def pg_url(pg_server_url: str):
    """A fresh, empty database on the test server, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ablate_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
