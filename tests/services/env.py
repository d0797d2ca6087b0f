"""What tests/services/start-all.sh left in tests/services/.env, for the fixtures.

A service that is missing makes its tests fail with the reason when ``CI`` is set or
``ABLATE_REQUIRE_SERVICES=1``, and skip with the reason otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV_FILE = Path(__file__).with_name(".env")


def read_env(path: Path = ENV_FILE) -> dict[str, str]:
    """``KEY=value`` lines; comments and blank lines ignored; values taken verbatim."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def services_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("ABLATE_REQUIRE_SERVICES") == "1"


def unavailable(what: str, reason: str) -> None:
    message = f"{what} unavailable: {reason}"
    if services_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def service_setting(key: str, error_key: str, what: str) -> str:
    """The setting ``key`` from the environment or .env; fails or skips with the reason."""
    if os.environ.get(key):
        return os.environ[key]
    env = read_env()
    if env.get(key):
        return env[key]
    if error_key in env:
        unavailable(what, env[error_key])
    if not ENV_FILE.is_file():
        unavailable(what, f"{ENV_FILE} not found; run 'bash tests/services/start-all.sh' "
                    "first (make test does)")
    unavailable(what, f"{ENV_FILE} names no {key}")
    raise AssertionError("unreachable")
