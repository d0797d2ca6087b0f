"""Stable content hashes: a trial id for a spec, an architecture id for its cost."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import orjson
from pydantic import BaseModel

from ablate.catalog import DATASETS, MODELS
from ablate.data.catalog import user_dataset
from ablate.recipes.schema import TrialSpec
from ablate.registry import combined_hash, is_import_path, is_library
from ablate.trials.resolve import eval_resolution, num_classes

ID_LENGTH = 12
TRAINING_ONLY_MODEL_KEYS = ("weights", "weights_path", "aux_weight", "bn_momentum")
TRAINING_ONLY_SELECTIVE_KEYS = ("loss", "target", "lambda", "tau", "tau_final")


# Where orjson's text can differ from the standard library's: a float below 1e-4 or from
# 1e16 up (orjson writes 0.00001 and 1e-7 where json writes 1e-05 and 1e-07), and text
# beyond printable ASCII (json escapes DEL and non-ASCII). A string that merely contains
# such a pattern costs only the slower encoder. (One regex for all of them took longer
# than json.dumps itself.)
_EXPONENT = re.compile(rb"e[-+0-9]")


def canonical_json(obj: Any) -> str:
    """Key-order independent JSON: the same content always gives the same text.

    The text is ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
    ensure_ascii=True)``, which every trial id has hashed; orjson writes the same text
    about ten times faster, and where it could differ the standard library writes it.
    For finite numbers only (what a spec holds: the schema refuses inf and nan).
    """
    try:
        text = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits, a non-str key
        text = None
    if (text is None or not text.isascii() or b"\x7f" in text or b"0.0000" in text
            or _EXPONENT.search(text)):
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.decode()


def spec_dict(spec: TrialSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True)


def code_files(spec: TrialSpec) -> dict[str, dict[str, str]]:
    """``{"model.builder": {path: hash}, "model.replace": {...}, "data.builder": {...}}``:
    every source file of the user code a spec runs (empty for built-ins; a knock-out
    replacement from an installed library, such as ``torch.nn:Identity``, is versioned
    with its package, not hashed).

    A user builder's whole package counts (``Registry.source_files``): editing any of its
    modules, a helper block or a loss, gives new trial and architecture ids, so results
    of the old code are never reused for the new one.
    """
    files = {}
    if spec.model.builder is not None:
        files["model.builder"] = MODELS.source_files(spec.model.builder)
    replaced: dict[str, str] = {}  # knock-out replacements from the user's own code
    for i, replacement in enumerate(spec.model.replace):
        if is_import_path(replacement.by) and not is_library(replacement.by):
            replaced.update(MODELS.source_files(replacement.by, f"model.replace[{i}].by") or {})
    if replaced:
        files["model.replace"] = replaced
    dataset = user_dataset(spec.data)
    if dataset is not None:
        key = "data.builder" if spec.data.builder is not None else "data.name"
        files["data.builder"] = DATASETS.source_files(dataset, key)
    return {key: value for key, value in files.items() if value is not None}


def code_hashes(spec: TrialSpec) -> dict[str, str]:
    """One hash per key of ``code_files``: what trial and architecture ids hash."""
    return {key: combined_hash(files) for key, files in code_files(spec).items()}


def trial_id(spec: TrialSpec) -> str:
    """Hash of the fully resolved spec: defaults are filled in before hashing.

    With user code, the hashes of its source files are hashed too; a built-in spec has
    none, so its id is the hash of the spec alone.
    """
    digest = hashlib.sha256(canonical_json(_trial_payload(spec)).encode()).hexdigest()
    return digest[:ID_LENGTH]


class SpecDumps:
    """``spec_dict`` for many specs that share section instances (as ``SpecValidator``
    makes them: a sweep's trials share every table but the one an axis sets), each
    shared section dumped once. The same dict as ``spec_dict`` (tests check it); the
    dumps are shared between the results, which are only read."""

    def __init__(self) -> None:
        self._sections = tuple(
            (name, info.alias or name, info.exclude_if)
            for name, info in TrialSpec.model_fields.items()
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
            and info.exclude is not True)
        self._exclude = {name for name, _, _ in self._sections}
        self._dumps: dict[int, tuple[BaseModel, dict[str, Any]]] = {}  # keeps them alive

    def __call__(self, spec: TrialSpec) -> dict[str, Any]:
        out = spec.model_dump(mode="json", by_alias=True, exclude=self._exclude)
        for name, key, skip in self._sections:
            value = getattr(spec, name)
            if skip is not None and skip(value):
                continue
            hit = self._dumps.get(id(value))
            if hit is None or hit[0] is not value:
                hit = self._dumps[id(value)] = (value, value.model_dump(mode="json",
                                                                        by_alias=True))
            out[key] = hit[1]
        return out


def _trial_payload(spec: TrialSpec, dumps: SpecDumps | None = None) -> dict[str, Any]:
    payload = spec_dict(spec) if dumps is None else dumps(spec)
    code = code_hashes(spec)
    if code:
        payload = {**payload, "code": code}
    return payload


def trial_ids_for_seeds(spec: TrialSpec, seeds: list[int],
                        dumps: SpecDumps | None = None) -> list[str]:
    """``trial_id`` of ``spec`` with each seed in turn, the spec encoded once.

    The spec is encoded with a sentinel seed that is then replaced in the text (planning
    20,000 trials spent most of its time re-encoding specs that differ only by seed).
    ``dumps``: a ``SpecDumps`` shared by the specs of one expansion.
    """
    sentinel = '"seed":-987654321'  # seeds are >= 0, so this is never a real value
    text = canonical_json({**_trial_payload(spec, dumps), "seed": -987654321})
    if text.count(sentinel) != 1:  # the sentinel also inside a value: encode each seed
        return [trial_id(spec.model_copy(update={"seed": s})) for s in seeds]
    return [hashlib.sha256(text.replace(sentinel, f'"seed":{s}').encode()).hexdigest()[:ID_LENGTH]
            for s in seeds]


def architecture_key(spec: TrialSpec) -> dict[str, Any]:
    """What determines parameters and FLOPs: the model, class count and resolution."""
    model = spec.model.model_dump(mode="json", by_alias=True)
    for key in TRAINING_ONLY_MODEL_KEYS:  # they change values, not the cost
        model.pop(key, None)
    for key in TRAINING_ONLY_SELECTIVE_KEYS:
        model["selective"].pop(key, None)
    model["num_classes"] = num_classes(spec)
    key = {"model": model, "resolution": list(eval_resolution(spec))}
    code = code_hashes(spec)
    if "model.builder" in code:
        key["code"] = code["model.builder"]
    if "model.replace" in code:  # a replacement's own code makes another network
        key["replace_code"] = code["model.replace"]
    return key


def architecture_id(spec: TrialSpec) -> str:
    digest = hashlib.sha256(canonical_json(architecture_key(spec)).encode()).hexdigest()
    return digest[:ID_LENGTH]
