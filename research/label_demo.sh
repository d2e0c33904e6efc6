#!/usr/bin/env bash
# The labeling demonstration, end to end, from the repository root with the project's venv (make install):
#   1. fit a reward model on SmolLM2-135M-Instruct's features to the demo's rule-judge ratings
#      (research/fit_reward_model.py; the 20 prompts labeled next are left out of its data);
#   2. lambda-dpo label: 20 prompts of the demo's training split, 4 sampled replies each, rated by the
#      demo's rule judges and the reward model (configs/label-demo.yaml);
#   3. lambda-dpo validate-data on the result;
#   4. lambda-dpo train on it (configs/label-demo-train.yaml).
# Every step's output goes to runs/label-demo/*.log as well; runs/label-demo/REPORT.md collects them.
# Usage: bash research/label_demo.sh            (THREADS=N sets torch's threads; default: torch's)
set -euo pipefail
OUT=runs/label-demo
BIN=${VENV:-.venv}/bin
mkdir -p "$OUT"
THREAD_ARGS=()
if [ -n "${THREADS:-}" ]; then THREAD_ARGS=(--threads "$THREADS"); export OMP_NUM_THREADS="$THREADS"; fi

step() {  # step NAME COMMAND...: run it, show and keep its output
  local name=$1; shift
  echo "== $name: $*"
  { echo "\$ $*"; "$@" 2>&1; } | tee "$OUT/$name.log"
}

step fit-reward-model "$BIN/python" research/fit_reward_model.py --out "$OUT/reward-model" --skip-first 20 \
  "${THREAD_ARGS[@]}"
step label "$BIN/lambda-dpo" label configs/label-demo.yaml --no-progress
step validate "$BIN/lambda-dpo" validate-data "$OUT/labeled.jsonl" --rating-scale overall=minmax
step train "$BIN/lambda-dpo" train configs/label-demo-train.yaml

{
  echo "# Labeling demonstration"
  echo
  for name in fit-reward-model label validate train; do
    echo "## $name"
    echo
    echo '```text'
    grep -v -e "Loading weights" -e "Writing model shards" "$OUT/$name.log" | tail -n 60
    echo '```'
    echo
  done
  echo "## Datasheet"
  echo
  cat "$OUT/labeled.datasheet.md"
} > "$OUT/REPORT.md"
echo "report: $OUT/REPORT.md"
