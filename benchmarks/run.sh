#!/usr/bin/env bash
# The standard benchmark set: AFHQ-like (w_hpf 0) and CelebA-HQ-like (w_hpf 1, FAN) models at 256x256 with
# random He-initialised weights (timing only), on every backend/precision present, beside torch fp32 eager.
#   CPU:  bash benchmarks/run.sh cpu
#   GPU:  bash benchmarks/run.sh cuda
set -euo pipefail
device=${1:-cpu}
out=${OUT_DIR:-benchmarks/results}
if [[ $device == cpu ]]; then
  common=(--device cpu --backends torch,onnxruntime --precisions fp32 --batches 1 --budget 3)
else
  common=(--device cuda --backends torch,onnxruntime,tensorrt --precisions fp32,fp16 --batches 1,8,20,64 --budget 5
          --compile)
fi
for preset in stargan_v2-afhq stargan_v2-celeba_hq; do
  smoothgan bench --preset "$preset" "${common[@]}" --out "$out"
done
