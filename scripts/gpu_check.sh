#!/usr/bin/env bash
# One prepared run on an offline GPU machine (see ../shared/gpu/README.md): install the carried wheels,
# run `make test-gpu`, then the GPT-2-small MFU benchmark. Logs go to $OUT (or build/gpu) when set.
# Before (on a machine with the package registries), from the project root:
#   ../shared/gpu/fetch-wheels.sh $(grep -v '^#' scripts/gpu_extra_wheels.txt)
# then carry .whl/ and run, from the project root on the GPU machine:  bash scripts/gpu_check.sh
set -uo pipefail
out=${OUT:-build/gpu}; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target .site .whl/*.whl \
  && export PYTHONPATH=$PWD/.site:$PWD || exit 1
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout "${TEST_TIMEOUT:-330}" make test-gpu PYTHON=python3 2>&1 | tee "$out/test-gpu.log"
rc=$?
timeout "${BENCH_TIMEOUT:-200}" python3 benchmarks/bench_train_loop.py --mode gpt2 --json "$out/gpt2.json" 2>&1 \
  | tee "$out/bench-gpt2.log"
echo "make test-gpu exit status: $rc"
exit $rc
