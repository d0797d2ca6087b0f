#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md that a CPU cannot give, in one command sized for one
# call on a lent GPU machine (under 10 minutes; a machine's start comes on top):
#
#     bash bench/gpu_wheels.sh                 # first, where pip reaches PyPI: .whl/
#     bash bench/gpu_figures.sh                # on the GPU machine: sparse, then throughput
#     bash bench/gpu_figures.sh compile        # or any parts, in the order given
#
# Parts:
#   sparse      bench_selective.py on CUDA: sparse selective against the dense dilated
#               DeepLabV3-ResNet-50 at 512x1024, densities 0, 0.5, 1, batch 1 and 8
#               ("Sparse selective execution" in docs/benchmarks.md; about 2 minutes)
#   throughput  gpu_check.py's train_throughput, data_pipeline and trials_per_gpu
#               ("Training at the GPU's speed"; the rest of the budget, at most 7 minutes)
#   compile     gpu_check.py's train_compile (train.compile against eager; up to 5 minutes)
#   acceptance  gpu_check.py's default checks (the GPU acceptance run; up to 8 minutes)
#
# Tables go to stdout and, with JSON where the bench writes it, to $OUT (the device tool's
# folder that comes back), else results/gpu/. BUDGET_S (default 570) bounds the whole run:
# each part gets what is left, and a part with under a minute left is skipped.
# Where python3 lacks ablate's dependencies and .whl/ is here, the wheels are installed into
# /tmp/site first (no index needed). .venv/bin/python is used when this checkout has one.
set -uo pipefail
cd "$(dirname "$0")/.."
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(sparse throughput)
for part in "${parts[@]}"; do
    case $part in
      sparse|throughput|compile|acceptance) ;;
      *) echo "gpu_figures: unknown part '$part'; allowed: sparse, throughput, compile," \
              "acceptance" >&2
         exit 2 ;;
    esac
done
DIR=${OUT:-results/gpu}
mkdir -p "$DIR"
START=$(date +%s)
BUDGET=${BUDGET_S:-570}
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEPS="import sqlalchemy, alembic, fvcore, submitit, pydantic, gsdesign, orjson, click, rich"
if ! "$PY" -c "$DEPS" 2>/dev/null; then
    if [ ! -d .whl ]; then
        echo "gpu_figures: $PY lacks ablate's dependencies and there is no .whl/;" \
             "run bash bench/gpu_wheels.sh where pip reaches PyPI, and carry .whl" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
    "$PY" -c "$DEPS" || exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 \
    | tee "$DIR/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
'cuDNN', torch.backends.cudnn.version())" 2>&1 | tee -a "$DIR/gpu.txt"

left() { echo $((BUDGET - ($(date +%s) - START))); }
status=0
for part in "${parts[@]}"; do
  budget=$(left)
  if [ "$budget" -lt 60 ]; then
      echo "gpu_figures: $part skipped: ${budget} s of the ${BUDGET} s budget left"
      continue
  fi
  echo "== $part ($budget s left)"
  case $part in
    sparse)
      timeout $((budget < 180 ? budget : 180)) "$PY" bench/bench_selective.py --cuda-only \
          --densities 0,0.5,1 --rounds 3 2>&1 | tee "$DIR/selective_cuda.txt" ;;
    throughput)
      "$PY" bench/gpu_check.py --only train_throughput data_pipeline trials_per_gpu \
          --total-budget $((budget - 20)) --out "$DIR/gpu_throughput.json" ;;
    compile)
      "$PY" bench/gpu_check.py --only train_compile --total-budget $((budget - 20)) \
          --out "$DIR/gpu_compile.json" ;;
    acceptance)
      "$PY" bench/gpu_check.py --total-budget $((budget - 20)) --out "$DIR/gpu_acceptance.json" ;;
  esac
  rc=$?
  [ $rc -ne 0 ] && status=$rc
done
echo "gpu_figures: done in $(( $(date +%s) - START )) s; files in $DIR"
exit $status
