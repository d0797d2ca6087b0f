#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md that a CPU cannot give, in one command sized for one
# call on a lent GPU machine (under 10 minutes; a machine's start comes on top):
#
#     bash bench/gpu_wheels.sh                 # first, where pip reaches PyPI: .whl/
#     bash bench/gpu_figures.sh                # on the GPU machine: sparse trainer pipeline sharing
#     bash bench/gpu_figures.sh sharing compile   # or any parts, in the order given
#
# Parts (each: what it runs, the seconds it is given at most / needs at least):
#   sparse      bench_selective.py on CUDA: sparse selective against the dense dilated
#               DeepLabV3-ResNet-50 at 512x1024, densities 0, 0.5, 1, batch 1 and 8    180 / 60
#   trainer     gpu_check.py --only train_throughput (trainer against a plain loop)   165 / 90
#   pipeline    gpu_check.py --only data_pipeline (the input pipeline's img/s)        135 / 60
#   sharing     gpu_check.py --only trials_per_gpu (trials per hour at K = 1, 2, 4)   345 / 150
#   compile     gpu_check.py --only train_compile (train.compile against eager)       315 / 120
#   acceptance  gpu_check.py's default checks (the GPU acceptance run)                475 / 200
#   throughput  trainer, pipeline and sharing
#
# Tables go to stdout and, with JSON where the bench writes it, to $OUT (the device tool's
# folder that comes back), else results/gpu/. BUDGET_S (whole seconds; unset or empty: 570)
# bounds the whole run: each part gets at most what is left, and a part that needs more
# than is left is skipped, its name printed for the next call, rather than started and
# killed half-way.
# Where python3 lacks ablate's dependencies and .whl/ is here, the wheels are installed into
# /tmp/site first (no index needed). .venv/bin/python is used when this checkout has one.
set -uo pipefail
cd "$(dirname "$0")/.."
# MOST: gpu_check.py's own budget for the check, and 15 s to start it and write its file
# (tests/bench/test_gpu_check.py holds the two to each other)
declare -A MOST=([sparse]=180 [trainer]=165 [pipeline]=135 [sharing]=345 [compile]=315
                 [acceptance]=475)
declare -A LEAST=([sparse]=60 [trainer]=90 [pipeline]=60 [sharing]=150 [compile]=120
                  [acceptance]=200)
parts=()
for part in "${@:-sparse throughput}"; do
    for part in $part; do
        case $part in
          throughput) parts+=(trainer pipeline sharing) ;;
          sparse|trainer|pipeline|sharing|compile|acceptance) parts+=("$part") ;;
          *) echo "gpu_figures: unknown part '$part'; allowed: sparse, trainer, pipeline," \
                  "sharing, compile, acceptance, throughput" >&2
             exit 2 ;;
        esac
    done
done
BUDGET=${BUDGET_S:-570}
if ! [[ $BUDGET =~ ^[0-9]{1,6}$ ]]; then
    echo "gpu_figures: BUDGET_S must be whole seconds (0 to 999999), got '$BUDGET'" >&2
    exit 2
fi
DIR=${OUT:-results/gpu}
mkdir -p "$DIR"
START=$(date +%s)
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

status=0
skipped=()
declare -A CHECK=([trainer]=train_throughput [pipeline]=data_pipeline [sharing]=trials_per_gpu
                  [compile]=train_compile)
for part in "${parts[@]}"; do
    left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt "${LEAST[$part]}" ]; then
        echo "gpu_figures: $part skipped: it needs ${LEAST[$part]} s, ${left} s of the" \
             "${BUDGET} s budget left"
        skipped+=("$part")
        continue
    fi
    budget=$((left < MOST[$part] ? left : MOST[$part]))
    echo "== $part (up to $budget s; $left s left)"
    case $part in
      sparse)
        timeout "$budget" "$PY" bench/bench_selective.py --cuda-only --densities 0,0.5,1 \
            --rounds 3 2>&1 | tee "$DIR/selective_cuda.txt" ;;
      acceptance)
        "$PY" bench/gpu_check.py --total-budget $((budget - 15)) \
            --out "$DIR/gpu_acceptance.json" ;;
      *)
        "$PY" bench/gpu_check.py --only "${CHECK[$part]}" --total-budget $((budget - 15)) \
            --out "$DIR/gpu_$part.json" ;;
    esac
    rc=$?
    [ $rc -ne 0 ] && status=$rc
done
echo "gpu_figures: done in $(( $(date +%s) - START )) s; files in $DIR"
if [ ${#skipped[@]} -gt 0 ]; then
    echo "gpu_figures: not run for lack of time: bash bench/gpu_figures.sh ${skipped[*]}"
fi
exit $status
