#!/usr/bin/env bash
# The course's GPU checks on a CUDA machine without network access (the files come from
# scripts/fetch_gpu_wheels.sh, run where PyPI is reachable). From the project root:
#   bash scripts/gpu_check.sh [STEP ...]      STEP: install test run bench smoke (default: install test run bench)
#   install  the wheels in .whl/ and, when present, the model parts in .gpu-models/N/part, into .site/
#   test     make test-gpu: every test, notebook and lab under nbval (fast mode), GPU checks enforced
#   run      make run-gpu: every notebook in full mode, the per-notebook table into benchmarks/RESULTS.md (NOTEBOOKS= picks some)
#   bench    GPT-2 small MFU through utils.train.train, and the loop overhead for a 12M model, profiled
#   smoke    a short subset: the GPU-marked tests, the precision and quantization tests, notebook 02
# Logs and results go to $OUT (or build/gpu). Each step has a time limit (TEST_TIMEOUT, RUN_TIMEOUT, ...).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/gpu}; mkdir -p "$out"
export PYTHONPATH=$PWD/.site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python3}
status=0
steps=("$@"); [ ${#steps[@]} -eq 0 ] && steps=(install test run bench)

install() {
  if compgen -G ".whl/*.whl" > /dev/null; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target .site .whl/*.whl || return 1
  fi
  if compgen -G ".gpu-models/*/part" > /dev/null; then
    local tmp; tmp=$(mktemp -d)
    for n in $(ls .gpu-models | sort -n); do cat ".gpu-models/$n/part"; done | tar -xf - -C "$tmp" || return 1
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target .site "$tmp"/*.whl || return 1
    rm -rf "$tmp"
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia.txt"
  $py -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__, '| cuda', torch.cuda.is_available())" | tee -a "$out/nvidia.txt"
}

run_step() {  # name, timeout, command...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s) =="
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0)) s ==" | tee -a "$out/summary.txt"
  [ "$rc" = 0 ] || status=1
}

for step in "${steps[@]}"; do
  case "$step" in
    install) install 2>&1 | tee "$out/install.log"; [ "${PIPESTATUS[0]}" = 0 ] || { echo "install failed"; exit 1; } ;;
    test) run_step test-gpu "${TEST_TIMEOUT:-420}" make test-gpu PYTHON="$py" ;;
    run) run_step run-gpu "${RUN_TIMEOUT:-420}" make run-gpu PYTHON="$py" RUN_REPORT="$out/course-gpu.md"
      cp benchmarks/RESULTS.md "$out/RESULTS.md" ;;  # the table is in its section there: bring it back
    bench)
      run_step bench-gpt2 "${BENCH_TIMEOUT:-240}" $py benchmarks/bench_train_loop.py --mode gpt2 --json "$out/gpt2.json" --profile "$out/profile"
      run_step bench-overhead "${BENCH_TIMEOUT:-240}" $py benchmarks/bench_train_loop.py --mode compare --preset medium \
        --batch 16 --seq-len 512 --steps 20 --repeats 2 --json "$out/overhead.json" --profile "$out/profile" ;;
    smoke) run_step smoke "${SMOKE_TIMEOUT:-300}" env COURSE_REQUIRE_GPU=1 COURSE_FAST=1 $py -m pytest -q -p no:cacheprovider \
        -m "not slow" -rs --nbval-lax --nbval-current-env tests/test_precision.py tests/test_quant_models.py \
        tests/test_train.py tests/test_memory_measure.py notebooks/02_pretraining_objectives.ipynb ;;
    *) echo "unknown step '$step'; accepted: install test run bench smoke" >&2; exit 2 ;;
  esac
done
exit $status
