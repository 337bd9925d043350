#!/usr/bin/env bash
# What exact second-order unlearning costs, on an accelerator: the step-cost, FLOP and memory
# suites in one run (sized for about 6 minutes on one H200), each writing its results file
# with the device named (benchmarks/results/*-gpu-*.{json,md,png}).
#
#   bash benchmarks/device_suite.sh [OUT_DIR]
#
# Memory there is the compiled program's estimate (XLA's GPU buffer assignment) and, for
# GradDiff, hvp and exact, the device's own peak bytes of one step run alone in a fresh
# process (memory_stats()["peak_bytes_in_use"]). It needs jax with its GPU plugin, flax,
# optax, orbax-checkpoint, scikit-learn, matplotlib, tqdm and ml_collections; on the
# project's device machine all but ml_collections are in the image: carry its wheel in .whl/
# (see /work/.library/device/README.md) and this script installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results}"
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import jax; print('JAX', jax.__version__, jax.devices())"
start=$SECONDS
part() {  # a part that fails or runs out of time leaves the others to run
  local limit=$1; shift
  echo "== $* (at most ${limit} s)"
  timeout "$limit" python3 "$@" --out "$out" || echo "== exit $? from $1"
}
part 100 benchmarks/step_cost.py --quick
part 60 benchmarks/flops.py --sizes 10m,125m
part 120 benchmarks/memory.py --sizes 125m,350m --devices 1 --quick --block-remat on \
  --device-peak --tag gpu
part 80 benchmarks/memory.py --sizes 125m --devices 1 --quick --block-remat on \
  --seqs 2048,4096 --attention plain,chunked,xla --timed-steps 0 --tag long-gpu
echo "device suite: $((SECONDS - start)) s"
