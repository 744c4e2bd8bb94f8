#!/usr/bin/env bash
# Train every model of the converged ablation that has not finished, JOBS at a time (one core each), in the plan's
# order (EXPERIMENTS.md): when one finishes the next starts, so no core idles. Safe to kill and rerun any number of
# times: each model resumes exactly from its newest checkpoint (experiments/converged.sh), and a model already
# training (its lock is held) is left to that process.
#
#   nohup nice -n 5 experiments/converged_queue.sh > /tmp/conv-runs/queue.log 2>&1 &
#   kill -- -$(pgrep -o -f converged_queue.sh)     # stop the queue and its trainings (its process group)
#
# Environment: RUNS=/tmp/conv-runs ITERS=24000 JOBS=2, and converged.sh's (DATA, PRESET; THREADS defaults to 1);
# SEEDS="0 1 2" sets the plan's seeds; MODELS="NAME ..." trains only those of the plan (e.g. MODELS="baseline-s0
# smoothed-s0"); TRAIN replaces converged.sh (tests).
set -uo pipefail
RUNS=${RUNS:-/tmp/conv-runs}
ITERS=${ITERS:-24000}
JOBS=${JOBS:-2}
export RUNS ITERS THREADS=${THREADS:-1}
TRAIN=${TRAIN:-$(cd "$(dirname "$0")" && pwd)/converged.sh}

# the plan: baseline and smoothed seed by seed (each seed's pair side by side), then the paper's form
seeds=(${SEEDS:-0 1 2})
models=()
for seed in "${seeds[@]}"; do
  models+=("baseline-s$seed $seed baseline" "smoothed-s$seed $seed smoothed")
done
for seed in "${seeds[@]}"; do
  models+=("paper-s$seed $seed paper")
done

finished() {  # the final checkpoint exists in one of the model's run directories
  compgen -G "$RUNS/*-$1/checkpoints/step-$(printf %06d "$ITERS")" > /dev/null
}

running=0
for model in "${models[@]}"; do
  read -r name seed variant <<< "$model"
  if [[ -n ${MODELS:-} && " $MODELS " != *" $name "* ]]; then
    continue
  fi
  if finished "$name"; then
    continue
  fi
  if (( running >= JOBS )); then
    wait -n
    running=$((running - 1))
  fi
  mkdir -p "$RUNS"
  if ! flock -n "$RUNS/.$name.lock" true; then
    echo "$(date -u +%FT%TZ) $name is training in another process: its slot waits for it"
    flock "$RUNS/.$name.lock" true &
  else
    echo "$(date -u +%FT%TZ) start $name"
    "$TRAIN" "$name" "$seed" "$variant" >> "$RUNS/$name.log" 2>&1 &
  fi
  running=$((running + 1))
done
wait
echo "$(date -u +%FT%TZ) queue done"
