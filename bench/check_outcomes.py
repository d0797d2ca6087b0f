"""How a check of bench/gpu_check.py ends other than with its figures (shared by the
modules that define checks)."""

from __future__ import annotations


class Skip(Exception):
    """The check cannot run here; the message says why."""


class Fail(Exception):
    """The check ran and found a problem; the message is the one-line reason."""
