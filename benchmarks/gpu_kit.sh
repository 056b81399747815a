#!/usr/bin/env bash
# Builds, in the repo root, what benchmarks/gpu_side_by_side.sh needs on the GPU machine beside vLLM
# (../shared/gpu/make-vllm-kit.sh builds vLLM 0.26.0 as .vk1-.vk3), each folder under the 64 MiB
# that one device call carries:
#   .whl/     ray without its jars, deepspeed and their missing dependencies (../shared/gpu/make-wheels.sh)
#   .gpw/     mlflow, vaderSentiment (rayalign's pins), TRL and datasets (benchmarks/requirements.txt)
#             and whatever they need that the image lacks (benchmarks/gpu_image_packages.txt) and
#             that .whl and the vLLM kit do not carry (build the kit first)
#   .gputok/  the built-in policy's tokenizer, for the random-weight checkpoints made there
# Run from anywhere, with rayalign installed here (make install):  bash benchmarks/gpu_kit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
../shared/gpu/make-wheels.sh
for d in .gpw .gputok; do
  rm -rf "$d"; mkdir -p "$d"
  grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude
done
pins=$(grep -oE '"(mlflow|vaderSentiment)==[^"]+"' pyproject.toml | tr -d '"'; grep -vE '^(#|$)' benchmarks/requirements.txt)
tmp=$(mktemp -d)
# shellcheck disable=SC2086  # one argument per pin
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$tmp" $pins
names() { for w in "$@"; do basename "$w" | cut -d- -f1 | tr 'A-Z_.' 'a-z--'; done; }
# What .whl and the vLLM kit carry (fastapi and starlette at vLLM's pins) is installed from there.
carried=$(names .whl/*.whl .vk1/*.whl .vk2/*.whl .vk3/*.whl 2>/dev/null; echo fastapi; echo starlette)
for wheel in "$tmp"/*.whl; do
  name=$(names "$wheel")
  # The image's packages, its torch and CUDA, and what is carried already stay behind.
  if grep -qx "$name" benchmarks/gpu_image_packages.txt || [[ $name == nvidia-* || $name == torch || $name == triton ]] \
     || grep -qx "$name" <<< "$carried"; then
    continue
  fi
  mv "$wheel" .gpw/
done
rm -rf "$tmp"
policy=$(.venv/bin/python -c "from rayalign.models import resolve_model; print(resolve_model('smollm2-135m-instruct'))")
cp "$policy"/tokenizer.json "$policy"/tokenizer_config.json .gputok/
cp "$policy"/chat_template.jinja .gputok/ 2>/dev/null || true
du -sh .whl .gpw .gputok
for d in .whl .gpw; do
  [ "$(du -sm "$d" | cut -f1)" -lt 62 ] || { echo "$d is over what one device call carries: split it" >&2; exit 1; }
done
