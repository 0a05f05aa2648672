#!/usr/bin/env bash
# The GPU check for a session lent a device machine: WebGPU training and generation figures for the README.
# Here first: npm install && bash ../shared/tools/device-prep.sh
# Then through the device tool, carrying .device:  bash bench/device-check.sh   (the prologue is sourced below)
set -euo pipefail
source .device/prologue.sh
node --version
nvidia-smi -L || true
for shape in small medium; do
  node --import tsx bench/train.bench.ts --shape "$shape" --backend webgpu
done 2>&1 | tee "${OUT:-/tmp}/bench-webgpu.txt"
