#!/usr/bin/env bash
# Wheels of ablate's dependencies that a GPU machine without a package index lacks, for
# bench/gpu_figures.sh. Run where pip reaches PyPI, in the repository root:
#
#     bash bench/gpu_wheels.sh            # -> .whl/ (git-ignored), about 8 MiB
#
# The GPU machines lent to this project run an image whose python3 (3.12) already holds
# torch, torchvision, click, pandas, numpy, scipy, rich, matplotlib, pillow, pyyaml, tqdm,
# tabulate, portalocker and cloudpickle; the rest of ablate's core dependencies travel as
# wheels, at the versions this checkout's .venv holds (the ones the test suite passed on).
# Pure-Python packages published only as source (fvcore, iopath) are built into wheels here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
NEED=(sqlalchemy alembic mako fvcore iopath yacs termcolor submitit pydantic pydantic-core
      annotated-types typing-inspection typing-extensions gsdesign orjson)
PLATFORMS=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    PLATFORMS+=(--platform "${tag}_x86_64")
done
rm -rf .whl && mkdir -p .whl
for name in "${NEED[@]}"; do
    version=$("$PY" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    if [ -z "$version" ]; then
        echo "gpu_wheels: $name is not installed in $PY's environment; run make install first" >&2
        exit 1
    fi
    if ! "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp "${PLATFORMS[@]}" -d .whl "$name==$version" 2>/dev/null; then
        "$PY" -m pip wheel --quiet --no-deps -w .whl "$name==$version"  # source only: pure Python
    fi
done
ls .whl
du -sh .whl
