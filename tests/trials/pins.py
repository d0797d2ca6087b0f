"""Trained figures pinned per machine kind: one quick-start trial's mIoU, pixel accuracy and
training loss, bit for bit, for each machine kind they were recorded on.

A correct build trains to other figures on another CPU: torch's CPU kernels (oneDNN's
convolutions, ATen's vectorised loops, the BLAS) sum in another order. On the developers'
2-core AMD EPYC (KVM), the same trial gave, at one thread per worker:

- default (ATen AVX512, oneDNN as the CPU allows): 0.29291215040840296, twice;
- ``ATEN_CPU_CAPABILITY=avx2``: the same figure;
- ``ATEN_CPU_CAPABILITY=default``: 0.3406474142880122;
- ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: 0.3211694087272323;
- the default, with two threads in the worker: 0.3691196562465926;

and another AMD EPYC gave 0.3095, the Intel Xeon VM 0.26547. So the key is what those
kernels dispatch on: the CPU (vendor, family, model), oneDNN's instruction set as the
CPU's flags (or ``ONEDNN_MAX_CPU_ISA``) allow, ATen's capability, the threads a worker
trains with, and the torch version. A machine without a pin of its own skips the check,
saying how to record one:

    make pin        (python -m tests.trials.pins record)

Run to run on one machine the figures are bit-identical everywhere: that promise is
``test_determinism.py``'s, on every CPU.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ablate.cpus import worker_threads

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"
PINS = Path(__file__).with_name("pins.json")
TRIAL = "ae2340099f81"  # all_expansions[keep_last_expansion=true]/seed=1
JOBS = 2  # as make demo runs it
FIGURES = ("miou", "pixel_acc", "train_loss")
# oneDNN's x86 instruction sets, best first, by the /proc/cpuinfo flags each needs
ONEDNN_ISAS = (
    ("avx512_core_amx", {"amx_tile", "amx_bf16", "amx_int8", "avx512_bf16"}),
    ("avx512_core_bf16", {"avx512_bf16", "avx512_vnni", "avx512f", "avx512bw"}),
    ("avx512_core_vnni", {"avx512_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq"}),
    ("avx512_core", {"avx512f", "avx512bw", "avx512vl", "avx512dq"}),
    ("avx2", {"avx2", "fma"}),
    ("sse41", {"sse4_1"}),
)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def onednn_isa(flags: set[str]) -> str:
    """The best instruction set oneDNN uses on a CPU with ``flags``, or the cap an
    ``ONEDNN_MAX_CPU_ISA`` (or older ``DNNL_MAX_CPU_ISA``) puts on it."""
    best = next((name for name, needs in ONEDNN_ISAS if needs <= flags), "default")
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").lower()
    names = [name for name, _ in ONEDNN_ISAS]
    if cap in names and best in names and names.index(cap) > names.index(best):
        return cap
    return best


def fingerprint() -> dict[str, Any]:
    """What the pinned figures depend on, for this machine."""
    import torch

    info = _cpuinfo()
    return {
        "vendor": info.get("vendor_id", "unknown"),
        "family": info.get("cpu family", "unknown"),
        "model": info.get("model", "unknown"),
        "onednn_isa": onednn_isa(set(info.get("flags", "").split())),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": worker_threads(JOBS),  # what each --jobs 2 worker gets
        "torch": torch.__version__,
    }


def describe(machine: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in machine.items())


def load() -> dict[str, Any]:
    return json.loads(PINS.read_text())


def lookup(machine: dict[str, Any]) -> tuple[dict[str, float] | None, str]:
    """This machine's pinned figures, or None and why there are none."""
    partial = []
    for pin in load()["pins"]:
        recorded = pin["machine"]
        if recorded == machine:
            return pin["figures"], ""
        if all(machine.get(k) == v for k, v in recorded.items()):
            partial.append(pin)
    why = f"no figures pinned for this machine kind ({describe(machine)})"
    if partial:
        missing = sorted(set(machine) - set(partial[0]["machine"]))
        why += (f"; those of {partial[0]['recorded']} were recorded without "
                f"{', '.join(missing)}, so they cannot be told to apply")
    return None, why + "; record them with 'make pin'"


def train_pinned_trial(folder: Path) -> dict[str, float]:
    """The pinned trial, as make demo trains it; its figures from the database."""
    from click.testing import CliRunner

    from ablate.cli import main
    from ablate.store import Store

    db = folder / "q.db"
    out = CliRunner().invoke(main, ["run", str(QUICKSTART), "--db", str(db), "--jobs", str(JOBS),
                                    "--runs-dir", str(folder / "runs"), "--trial", TRIAL])
    if out.exit_code != 0:
        raise RuntimeError(out.output)
    (record,) = Store(str(db)).trials("quickstart")
    return {key: record.metrics[key] for key in FIGURES}


def record(note: str) -> dict[str, Any]:
    """Train the pinned trial and pin its figures for this machine kind (replacing any)."""
    machine = fingerprint()
    with tempfile.TemporaryDirectory() as folder:
        figures = train_pinned_trial(Path(folder))
    data = load()
    data["pins"] = [p for p in data["pins"] if p["machine"] != machine]
    data["pins"].append({"machine": machine, "figures": figures, "recorded": note})
    PINS.write_text(json.dumps(data, indent=1) + "\n")
    return figures


if __name__ == "__main__":  # make pin
    if sys.argv[1:2] != ["record"]:
        sys.exit("usage: python -m tests.trials.pins record [NOTE]")
    import platform

    note = " ".join(sys.argv[2:]) or f"{_cpuinfo().get('model name', platform.processor())}"
    print(json.dumps({"machine": fingerprint(), "figures": record(note)}, indent=1))
