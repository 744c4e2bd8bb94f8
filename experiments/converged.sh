#!/usr/bin/env bash
# Train (or continue) one model of the converged ablation; safe to stop (Ctrl-C, kill) and run again any number of
# times: each call resumes exactly from the newest checkpoint of any earlier run directory of that name (a resume
# writes a new run directory NNNNN-NAME; checkpoints every 2,000 steps are all kept for the convergence curves).
#
#   experiments/converged.sh NAME SEED VARIANT          VARIANT: smoothed | baseline | paper
#
# Environment (defaults = the measured plan in EXPERIMENTS.md, "Plan for the converged ablation (measured)"):
#   DATA=/tmp/shapes32  RUNS=/tmp/conv-runs  PRESET=shapes32  ITERS=24000  THREADS=2  SAVE_EVERY=2000
#   (ITERS other than the preset's 24,000 scale every schedule with it: λ_ds decay, style-regularisation ramp)
# The data set comes first: `smoothgan data synth $DATA --img-size 32 --seed 0` (same seed, same bytes).
set -euo pipefail
name=${1:?usage: converged.sh NAME SEED smoothed|baseline|paper}
seed=${2:?seed}
variant=${3:?variant}
DATA=${DATA:-/tmp/shapes32}
RUNS=${RUNS:-/tmp/conv-runs}
PRESET=${PRESET:-shapes32}
ITERS=${ITERS:-24000}
SAVE_EVERY=${SAVE_EVERY:-2000}
export OMP_NUM_THREADS=${THREADS:-2}

# one training per name: the lock is inherited by the trainer (exec below) and dropped when it exits or is killed
mkdir -p "$RUNS"
exec 9>"$RUNS/.$name.lock"
if ! flock -n 9; then
  echo "error: $name is already training (lock $RUNS/.$name.lock)" >&2
  exit 3
fi

case $variant in
  smoothed) flags=(--preset "$PRESET") ;;
  baseline) flags=(--preset "$PRESET" --baseline) ;;
  paper)
    # The paper's smoothing form (EXPERIMENTS.md): Eq. 3 style regularisation from step 0 (no delayed ramp) at
    # weight 2/style_dim, the magnitude of the code's term at full weight; Eq. 1 triplet on encoded real styles too.
    paper_options="$RUNS/$name.options.json"
    python3 - "$DATA" "$PRESET" "$paper_options" <<'PY'
import dataclasses, sys
from smoothgan.trainer.options import TrainOptions
data, preset, path = sys.argv[1:]
options = TrainOptions.resolve(data, preset=preset, device="cpu")
weight = 2.0 / options.model.style_dim
loss = dataclasses.replace(options.loss, style_reg="paper", triplet="paper", lambda_kl=weight,
                           init_lambda_kl=weight, kl_start_iter=0)
open(path, "w").write(options.replace(loss=loss).to_json())
PY
    flags=(--options "$paper_options") ;;
  *) echo "error: variant must be smoothed, baseline or paper, got $variant" >&2; exit 2 ;;
esac

# newest checkpoint of any run directory NNNNN-$name (step-NNNNNN names sort by step)
latest=$(ls -d "$RUNS"/*-"$name"/checkpoints/step-* 2>/dev/null | awk -F/ '{print $NF" "$0}' | sort | tail -1 |
         cut -d' ' -f2 || true)
common=(--out "$RUNS" --name "$name" --device cpu --lpips-random-backbone --save-every "$SAVE_EVERY" --keep-last 0
        --sample-every 5000 --print-every 200)
if [[ -n $latest ]]; then
  echo "resuming $name from $latest"
  exec python3 -m smoothgan train "$DATA" --resume "$latest" "${common[@]}"
fi
exec python3 -m smoothgan train "$DATA" "${flags[@]}" --iters "$ITERS" --seed "$seed" \
  "${common[@]}"
