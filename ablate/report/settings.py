"""Configurations that hold trials of different settings: told apart, never pooled.

A configuration's name comes from the recipe's variant and axes, and its trial ids
hash the whole resolved spec (and the user's code). So after ``ablate run --set
train.epochs=2``, an edit of the recipe's base or of a variant, or an edit of the
user's code, the same name holds new trials while the old ones stay done under their
old ids. Pooling them would average two experiments and count both in ``n``.

A configuration's *setting* is its trial's stored spec without the seed, plus the
user code it ran (``environment.code``, recorded by every finished trial). Where one
name holds several settings, each becomes its own configuration, named
``NAME {key=value, ...}`` after the dotted spec keys that differ (``code=<hash>``
for a code edit), and every trial of that study gets those keys as columns
(``axis:<key>``): the table shows them, ``--where KEY=VALUE`` keeps one, and the
effects see them as the factors they are. A trial without recorded code (not
finished, or finished by an older ablate) joins the latest finished trial of its spec.

Cost: one query reads a 64-bit hash of every trial's spec without its seed (SQLite: a
function registered on the connection, fed the stored text; PostgreSQL: md5 of the
jsonb without ``seed``) and its recorded code; pandas groups them. Only a study with a
split configuration has specs read, one per setting. 100,000 trials: about 0.3-0.6 s
on top of the 1-2 s load (2-core machine, shared).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from ablate.store import read

CODE_KEY = "code"  # the pseudo-key of a code edit
ABSENT = "(absent)"  # a key one setting's spec does not have (an older ablate's)


def split_settings(store, frame: pd.DataFrame, pks: pd.Series,
                   names: list[str] | None) -> pd.DataFrame:
    """``frame`` (a trials frame, rows aligned with ``pks``) with every configuration
    that holds several settings split into one per setting; unchanged (the same
    object) when none does.

    Split studies get ``recipe_config`` (the name the recipe gives), ``setting``
    (``train.epochs=2``; empty for a configuration with one setting) and one
    ``axis:<key>`` column per differing key.
    """
    if frame.empty:
        return frame
    prints = read.setting_fingerprints(store, names)
    if prints.empty:
        return frame
    table = _settings(frame, pks, prints)
    if table is None:
        return frame
    return _split(store, frame, table)


def _settings(frame: pd.DataFrame, pks: pd.Series,
              prints: pd.DataFrame) -> pd.DataFrame | None:
    """Per row of ``frame``: ``pk``, ``config`` (a number per study and configuration
    name), ``spec_hash``, ``code``, ``setting`` (a number per configuration and setting)
    and ``split`` (its configuration has more than one); None when none has."""
    row = pd.Index(prints["pk"]).get_indexer(pks)
    if (row < 0).any():  # written since the trials were read: read next time
        return None
    spec_hash = prints["spec_hash"].to_numpy()[row]
    codes, texts = pd.factorize(prints["code"].to_numpy()[row], use_na_sentinel=True)
    from ablate.trials.ids import canonical_json  # lazy: loads pydantic

    canonical = [canonical_json(json.loads(t)) if isinstance(t, str) else t for t in texts]
    # equal code, one number (-1: not recorded)
    code, code_texts = pd.factorize(np.array(canonical + [None], dtype=object)[codes],
                                    use_na_sentinel=True)
    study = pd.factorize(frame["study"])[0]
    name = pd.factorize(frame["config_name"])[0]
    config = pd.factorize(study.astype(np.int64) * (name.max() + 1) + name)[0]
    spec = pd.factorize(spec_hash)[0]
    table = pd.DataFrame({"pk": pks.to_numpy(), "config": config, "spec": spec, "code": code})
    # a trial without recorded code (not finished, an older ablate) joins the latest
    # finished trial of its spec
    missing = code < 0
    if missing.any() and not missing.all():
        latest = (table[~missing].sort_values("pk", kind="stable")
                  .groupby(["config", "spec"])["code"].last())
        filled = latest.reindex(pd.MultiIndex.from_arrays(
            [config[missing], spec[missing]])).to_numpy()
        table.loc[missing, "code"] = np.where(np.isnan(filled), -1, filled).astype(int)
    key = (table["config"].to_numpy(np.int64) * (spec.max() + 1) + spec) * (code.max() + 2) \
        + table["code"].to_numpy(np.int64) + 1
    table["setting"] = pd.factorize(key)[0]
    settings = table["setting"].groupby(config).nunique().to_numpy()
    if not (settings > 1).any():
        return None
    table["split"] = settings[config] > 1
    texts = np.array([*code_texts, None], dtype=object)
    table["code_text"] = texts[np.where(table["code"].to_numpy() < 0, len(code_texts),
                                        table["code"].to_numpy())]
    table["study"] = frame["study"].to_numpy()
    return table


# -- splitting ----------------------------------------------------------------------------

def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec -> ``{"train.epochs": 2, ...}``; lists are leaves."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}{key}." if isinstance(item, dict) else f"{prefix}{key}"))
    return out




def _split(store, frame: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    from ablate.trials.ids import canonical_json  # lazy: loads pydantic

    # one trial per setting stands for it: only those specs are read and compared
    firsts = table.sort_values("pk", kind="stable").drop_duplicates("setting")
    studies = set(firsts.loc[firsts["split"], "study"])
    firsts = firsts[firsts["study"].isin(studies)]
    specs = {pk: _flat(spec) for pk, spec in
             read.seedless_specs(store, [int(pk) for pk in firsts["pk"]]).items()}
    flat = {setting: specs.get(int(pk), {}) for setting, pk in zip(firsts["setting"],
                                                                 firsts["pk"])}
    code = dict(zip(firsts["setting"], firsts["code_text"]))
    own: dict[int, list[str]] = {}  # per split configuration: the keys that differ
    for config, group in firsts[firsts["split"]].groupby("config", sort=False):
        mine = [flat[k] for k in group["setting"]]
        keys = [key for key in sorted(set().union(*mine))
                if len({canonical_json(spec.get(key, ABSENT)) for spec in mine}) > 1]
        if group["code"].nunique() > 1:
            keys.append(CODE_KEY)
        own[config] = keys
    differing = sorted({key for keys in own.values() for key in keys})

    def value(setting: int, key: str, cell: bool) -> Any:
        if key == CODE_KEY:
            return _code_hash(code[setting])
        raw = flat[setting].get(key, ABSENT)
        return _cell(raw) if cell else _display(raw)

    labels = {setting: ", ".join(f"{key}={value(setting, key, False)}" for key in own[config])
              for setting, config in zip(firsts["setting"], firsts["config"]) if config in own}
    setting = table["setting"].to_numpy()
    label = np.array([labels.get(k, "") for k in setting], dtype=object)
    out = frame.copy()
    in_study = np.isin(setting, firsts["setting"].to_numpy())
    recipe = out["config_name"].astype(object).to_numpy()
    out["recipe_config"] = np.where(in_study, recipe, None)
    out["setting"] = np.where(in_study, label, None)
    named = label != ""
    out.loc[named, "config_name"] = [f"{n} {{{s}}}" for n, s in zip(recipe[named], label[named])]
    for key in differing:
        column = f"axis:{key}"
        if column in out.columns:  # already an axis: its recorded values stand
            continue
        cells = {k: value(k, key, True) for k in flat}
        out[column] = axis_column([cells.get(k) for k in setting], out.index)
    return out


def axis_column(values: list, index) -> pd.Series:
    """An ``axis:`` column: integers stay integers beside missing values (pandas makes such
    a column float, and every format then read an epoch count of 2 as ``2.0``)."""
    present = [v for v in values if v is not None and v == v]
    if present and len(present) < len(values) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.Series([v if v is not None and v == v else None for v in values],
                         index=index, dtype=object)
    return pd.Series(values, index=index)


def holds_integers(series: pd.Series) -> bool:
    """An ``axis_column`` of integers beside missing values (object dtype, numbers still)."""
    if series.dtype != object:
        return False
    present = [v for v in series if v is not None and v == v]
    return bool(present) and all(isinstance(v, int | np.integer) and not isinstance(v, bool)
                                 for v in present)


def _display(value: Any) -> str:
    """A value as the name shows it: strings bare, the rest as JSON (true, null, [1,2])."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _cell(value: Any) -> Any:
    """A value as the ``axis:`` column holds it (lists as text, like recorded axes)."""
    return str(value) if isinstance(value, list | dict) else value


def _code_hash(code: str | None) -> str:
    """A short name of the user code a trial ran (``unrecorded`` where it is not known)."""
    if not code:
        return "unrecorded"
    return hashlib.sha256(code.encode()).hexdigest()[:8]
