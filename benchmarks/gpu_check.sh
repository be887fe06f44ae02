#!/usr/bin/env bash
# The GPU checks of the GPU path, as one script for a machine with one CUDA GPU (written for one
# H100), torch installed and no network. Run from anywhere; results go to $OUT (default
# /tmp/gpu_check), six files:
#   environment.txt      versions, nvidia-smi, which optional modules are there
#   tests.txt            pytest -m cuda: the device loader and the compiled steps on CUDA
#   bench.txt, .jsonl    adautomix bench: vanilla, Mixup, AdAutoMix N=2/3 on CIFAR-100-shaped
#                        tensors, CIFAR ResNet-18, batch 100 and 256, GPU switches off and on,
#                        and the profiler's breakdown of the AdAutoMix step
#   trials_per_hour.txt, .json   benchmarks/trials_per_hour.py at 1, 2, 4, 8 trials per GPU
# It keeps to $GPU_CHECK_BUDGET_S seconds in all (default 540): each part gets a time limit from
# what is left, the most wanted numbers first; a part cut short keeps what it measured.
# pytest, if absent, is installed from .gpu_wheels/ when that folder was carried along
# (benchmarks/gpu_wheels.sh fills it on a machine with network).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
BUDGET=${GPU_CHECK_BUDGET_S:-540}
START=$(date +%s)
PY=${PYTHON:-python3}
STEPS=15
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# phase NAME CAP RESERVE COMMAND...: run COMMAND for at most CAP seconds, leaving RESERVE
# seconds of the budget for the parts after it
phase() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  local limit=$(( $(left) - reserve ))
  (( limit > cap )) && limit=$cap
  if (( limit < 20 )); then
    echo "== $name: skipped ($(left) s of the budget left)"
    return
  fi
  echo "== $name (at most $limit s; $(left) s of the budget left)"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - t0 )) s$( (( rc == 124 || rc == 137 )) && echo ' (time limit: cut short)')"
}

BENCH=("$PY" -m adautomix bench --device cuda --arch resnet18 --width 1.0 --image-size 32
       --steps "$STEPS" --json "$OUT/bench.jsonl")

{
  date -u
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA DEVICE')"
  nvidia-smi 2>&1 | head -20
  nproc
  for m in yaml numpy sklearn matplotlib torchvision pytest ray mlflow optuna; do
    "$PY" -c "import $m" 2>/dev/null && echo "module $m: yes" || echo "module $m: no"
  done
  if ! "$PY" -c "import pytest" 2>/dev/null && [ -d .gpu_wheels ]; then
    "$PY" -m pip install -q --no-index --find-links .gpu_wheels pytest && echo "pytest installed from .gpu_wheels"
  fi
} > "$OUT/environment.txt" 2>&1

: > "$OUT/bench.jsonl"
{
  # 1. the compiled steps at batch 256 (the goal: AdAutoMix N=3 >= 8,000 img/s on one H100);
  #    this also fills Inductor's caches for the compiled-step tests below
  phase "bench: compile, batch 256" 240 330 \
    "${BENCH[@]}" --methods adautomix:3 adautomix:2 mixup --batch-size 256 --switches bf16+cl+compile
} > "$OUT/bench.txt" 2>&1

phase "pytest -m cuda" 120 220 \
  "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/test_gpu_loader.py tests/test_accel.py \
  > "$OUT/tests.txt" 2>&1

{
  # 2. every switch off and on, eager, both batch sizes, with the profile of the AdAutoMix step
  phase "bench: eager, batch 100 and 256" 120 110 \
    "${BENCH[@]}" --methods mixup adautomix:2 adautomix:3 --batch-size 100 256 --switches none bf16 bf16+cl --profile
} >> "$OUT/bench.txt" 2>&1

phase "trials per hour" 130 15 \
  "$PY" benchmarks/trials_per_hour.py --levels 1 2 4 8 --limit-train 5000 --limit-test 500 \
  --json "$OUT/trials_per_hour.json" > "$OUT/trials_per_hour.txt" 2>&1

{
  # 3. with what is left: compile at batch 100, and compile without bf16 and channels-last
  phase "bench: compile, batch 100" 150 15 \
    "${BENCH[@]}" --methods adautomix:3 --batch-size 100 --switches bf16+cl+compile
  phase "bench: compile alone, batch 256" 150 15 \
    "${BENCH[@]}" --methods adautomix:3 --batch-size 256 --switches compile
  echo
  echo "== every measurement (from bench.jsonl)"
  "$PY" - "$OUT/bench.jsonl" "$STEPS" <<'EOF'
import json, sys
from adautomix.bench import print_profile, print_table
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
order = ["none", "bf16", "bf16+cl", "compile", "bf16+cl+compile"]
rows.sort(key=lambda r: (r["batch"], order.index(r["switches"]) if r["switches"] in order else 9))
print_table(rows, "resnet18", 1.0, 32, int(sys.argv[2]))
for r in rows:
    if "profile" in r:
        print_profile(r)
EOF
  echo "== done after $(( $(date +%s) - START )) s of $BUDGET"
} >> "$OUT/bench.txt" 2>&1
tail -3 "$OUT/tests.txt"
tail -9 "$OUT/trials_per_hour.txt"
tail -40 "$OUT/bench.txt"
