"""The one clock ablate stamps records with: UTC, without a time zone (as the database
columns store it)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def utc_now_iso(timespec: str = "auto") -> str:
    return utc_now().isoformat(timespec=timespec)
