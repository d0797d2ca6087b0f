"""The quick-start's trial ids and figures are pinned: refactors must not change them.

The ids come from ``ablate plan`` (no training) and are the same everywhere. The figures
of one trial come from a real run of it (``make demo``'s two workers), compared bit for
bit with the figures pinned for this machine kind (``tests/trials/pins.py`` says what the
kind is and why): another CPU trains to other figures, so a machine kind without a pin
skips the comparison, saying how to record one (``make pin``).
"""

from __future__ import annotations

import pytest

from ablate.recipes.loader import load_recipe
from ablate.trials.expand import expand
from tests.trials import pins

IDS = {
    "all_expansions[keep_last_expansion=true]/seed=0": "21b9c9a69cd8",
    "all_expansions[keep_last_expansion=true]/seed=1": "ae2340099f81",
    "all_expansions[keep_last_expansion=true]/seed=2": "9160bf89d0eb",
    "all_expansions[keep_last_expansion=false]/seed=0": "7c3c861af525",
    "all_expansions[keep_last_expansion=false]/seed=1": "fbf6eb38e1ae",
    "all_expansions[keep_last_expansion=false]/seed=2": "1d164521a7e9",
    "lean_last_stage[keep_last_expansion=true]/seed=0": "2288baa5cb04",
    "lean_last_stage[keep_last_expansion=true]/seed=1": "6e8d864d6c70",
    "lean_last_stage[keep_last_expansion=true]/seed=2": "0c59b26f5978",
    "lean_last_stage[keep_last_expansion=false]/seed=0": "f8ee40279247",
    "lean_last_stage[keep_last_expansion=false]/seed=1": "c0d946b3d5f4",
    "lean_last_stage[keep_last_expansion=false]/seed=2": "7c97e1a446f0",
}


def test_quickstart_trial_ids_are_pinned():
    trials = expand(load_recipe(str(pins.QUICKSTART)))
    assert {t.name: t.trial_id for t in trials} == IDS
    assert IDS["all_expansions[keep_last_expansion=true]/seed=1"] == pins.TRIAL


def test_a_machine_kind_is_matched_on_every_field_it_was_recorded_with(monkeypatch):
    amd = {"vendor": "AuthenticAMD", "family": "25", "model": "17",
           "onednn_isa": "avx512_core_bf16", "aten_capability": "AVX512", "threads": 1,
           "torch": "2.14.1+cu130"}
    figures, why = pins.lookup(amd)
    assert figures == {"miou": 0.29291215040840296, "pixel_acc": 0.7544301350911459,
                       "train_loss": 0.5475107909490665} and why == ""
    other_epyc = {**amd, "model": "1", "onednn_isa": "avx2", "aten_capability": "AVX2"}
    figures, why = pins.lookup(other_epyc)
    assert figures is None and why.startswith("no figures pinned for this machine kind (vendor "
                                              "AuthenticAMD, family 25, model 1,")
    assert why.endswith("; record them with 'make pin'")
    xeon = {**amd, "vendor": "GenuineIntel", "family": "6", "model": "85"}
    figures, why = pins.lookup(xeon)  # the Intel pin predates the fingerprint: not applied
    assert figures is None and "recorded without aten_capability, family, model, onednn_isa" in why
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert pins.onednn_isa({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma"}) == "avx2"


@pytest.mark.slow
def test_a_quickstart_trial_records_the_pinned_figures(tmp_path):
    machine = pins.fingerprint()
    pinned, why = pins.lookup(machine)
    if pinned is None:
        pytest.skip(why)
    assert pins.train_pinned_trial(tmp_path) == pinned
