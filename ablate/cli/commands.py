"""Imports every command module so that each registers itself on ``main``."""

from __future__ import annotations

import importlib

COMMAND_MODULES = ("plan", "run", "report", "export", "cost", "db", "status", "cancel",
                   "models", "datasets", "watch", "prune")

for _name in COMMAND_MODULES:
    importlib.import_module(f"ablate.cli.{_name}")
