"""Imports every command module so that each registers itself on ``main``."""

from __future__ import annotations

import importlib

COMMAND_MODULES = ("plan", "run", "report", "export", "cost", "db", "status", "cancel")

for _name in COMMAND_MODULES:
    try:
        importlib.import_module(f"ablate.cli.{_name}")
    except ModuleNotFoundError as err:  # a command module not written yet
        if err.name != f"ablate.cli.{_name}":
            raise
