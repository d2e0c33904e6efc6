#!/usr/bin/env bash
# The steering study's rows, one after another (each appends to research/steering-data/study.jsonl).
# Rerun unattended: bash research/run_study.sh [ROW ...]   (default: every row). Logs in runs/study-logs/.
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p runs/study-logs
declare -A ROWS=(
  [base-instructions]="--base --max-new-tokens=64 lambda_text=instructions"
  [base-weights]="--base --max-new-tokens=64 lambda_text=weights"
  [weights-dirichlet-tau1]="--max-new-tokens=64 lambda_text=weights lambda_source=dirichlet rating_temperature=1.0"
  [instructions-grid]="--max-new-tokens=64"
  [instructions-grid-contrast]="--max-new-tokens=64 lambda_contrast=true per_device_train_batch_size=1"
  [instructions-grid-rpo]="--max-new-tokens=64 rpo_alpha=0.2"
  [instructions-grid-rpo1]="--max-new-tokens=64 rpo_alpha=1.0"
  [instructions-grid-k4-lr1e-3]="--max-new-tokens=64 aspects=[instruction_following,correctness,conciseness,informativeness] learning_rate=1e-3"
  [instructions-grid-k4-delta]="--max-new-tokens=64 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0"
  [instructions-grid-k4-rpo1]="--max-new-tokens=64 aspects=[instruction_following,correctness,conciseness,informativeness] rpo_alpha=1.0"
  [instructions-dirichlet]="--max-new-tokens=64 lambda_source=dirichlet"
  [instructions-grid-tau1]="--max-new-tokens=64 rating_temperature=1.0"
  [instructions-grid-beta0.3]="--max-new-tokens=64 beta=0.3"
  [instructions-grid-lr1e-3]="--max-new-tokens=64 learning_rate=1e-3"
  [instructions-grid-mean]="--max-new-tokens=64 score_type=mean beta=2.0"
  [instructions-grid-k4]="--max-new-tokens=64 aspects=[instruction_following,correctness,conciseness,informativeness]"
  [instructions-grid-k4-contrast]="--max-new-tokens=64 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1"

  # from here on: the edge sweep at 96 new tokens (the data's own budget; 64 cut the longest replies)
  [base-instructions-t96]="--base lambda_text=instructions"
  [k4-delta-t96]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0"
  [k4-delta-a2]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=2.0"
  [k4-delta-lr1e-3]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 learning_rate=1e-3"
  [k4-delta-far4]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 contrast_candidates=4"
  [k4-delta-steps200]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 max_steps=200"
  [k4-delta-steps300]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 max_steps=300"
  [k4-delta-beta0.5]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 beta=0.5"
  [k4-delta-beta1]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 beta=1.0"
  # third round: capacity, target sharpness, score type
  [k4-delta-full]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 use_lora=false learning_rate=5e-5 model_dtype=auto"
  [k4-delta-r64]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 lora_r=64 lora_alpha=128"
  [k4-delta-tau0.25]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 rating_temperature=0.25"
  [k4-delta-mean]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_type=mean beta=3.0"
  # fourth round: how lambda is written and drawn, and how much data
  [base-weights-t96]="--base lambda_text=weights"
  [k4-delta-weights]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 lambda_text=weights"
  [k4-delta-dirichlet]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 lambda_source=dirichlet"
  [k4-delta-vertices]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 lambda_grid_steps=1"
  [k4-delta-half-data]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 max_train_lists=119"
  [k4-delta-beta0.5-lr1e-4]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 beta=0.5 learning_rate=1e-4"
  # does fitting (5 epochs of 60 lists) carry to the dev lists?
  [k4-delta-60lists-300steps]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 max_train_lists=60 max_steps=300"
  # fifth round: more lists over two epochs (MORE_DATA is built first when missing, about 40 min)
  [k4-delta-more-data-2ep]="--extra-train=research/steering-data/more-data-seed1/train.jsonl aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 max_steps=MAX_STEPS_2EP"
  # the embedding mode, initialised from the instruction sentences (and, for comparison, from the header)
  [base-embedding-instr]="--base aspects=[instruction_following,correctness,conciseness,informativeness] conditioning=embedding embedding_init=instructions"
  [k4-delta-embedding-instr]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 conditioning=embedding embedding_init=instructions"
  [k4-delta-embedding-header]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 conditioning=embedding"
  # sixth round: replicates (seed= changes only the training run's randomness; same dev lists)
  [k4-delta-seed1]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 seed=1"
  [k4-delta-seed2]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 seed=2"
  [k4-delta-seed2-steps200]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 seed=2 max_steps=200"
  [k4-delta-more-data-2ep-seed1]="--extra-train=research/steering-data/more-data-seed1/train.jsonl aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 max_steps=MAX_STEPS_2EP seed=1"
  # seventh round: replies cut by the sampler's budget scored without the end of turn they never had
  [base-open-ends]="--base lambda_text=instructions score_cut_ends=false"
  [k4-delta-open-ends]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false"
  [k4-delta-open-ends-seed1]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=1"
  [k4-delta-open-ends-seed2]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=2"
  # more draws at the vertices (the grid's own share is 4/35), the mixtures kept
  [k4-delta-open-ends-vshare0.5]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lambda_vertex_share=0.5"
  [k4-delta-open-ends-vshare0.3]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lambda_vertex_share=0.3"
  # eighth round: the seed that does not steer at 100 steps (seed 2), three levers at the same 100 steps
  [k4-delta-open-ends-seed2-lr1e-3]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=2 learning_rate=1e-3"
  [k4-delta-open-ends-seed2-constant]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=2 lr_scheduler_type=constant"
  [k4-delta-open-ends-seed2-a2]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=2 contrast_alpha=2.0"
  [k4-delta-open-ends-lr1e-3-seed1]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=1 learning_rate=1e-3"
  [k4-delta-open-ends-lr1e-3]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false learning_rate=1e-3"
  [k4-delta-open-ends-constant-seed1]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=1 lr_scheduler_type=constant"
  [k4-delta-open-ends-constant]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lr_scheduler_type=constant"
  # the weights written as words (high / medium / low priority), swept at all 5 points of the edge
  [base-open-ends-p5]="--base --points=5 lambda_text=instructions score_cut_ends=false"
  [base-priorities-p5]="--base --points=5 lambda_text=priorities score_cut_ends=false"
  [k4-delta-open-ends-p5]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false"
  [k4-delta-priorities-p5]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lambda_text=priorities"
  [k4-delta-priorities-p5-seed1]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lambda_text=priorities seed=1"
  [k4-delta-priorities-p5-seed2]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lambda_text=priorities seed=2"
  [k4-delta-open-ends-p5-seed1]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=1"
  [k4-delta-open-ends-p5-seed2]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=2"
  [k4-delta-priorities-p5-steps200]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lambda_text=priorities max_steps=200"
  [k4-delta-open-ends-seed3]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=3"
  [k4-delta-open-ends-seed4]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=4"
  # ninth round: levers that move the policy further or show the vertices more, 3 seeds each, 5 points
  [k4-delta-open-ends-p5-steps200]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false max_steps=200"
  [k4-delta-open-ends-p5-steps200-seed1]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false max_steps=200 seed=1"
  [k4-delta-open-ends-p5-steps200-seed2]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false max_steps=200 seed=2"
  [k4-delta-open-ends-p5-vshare0.3]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lambda_vertex_share=0.3"
  [k4-delta-open-ends-p5-vshare0.3-seed1]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lambda_vertex_share=0.3 seed=1"
  [k4-delta-open-ends-p5-vshare0.3-seed2]="--points=5 aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false lambda_vertex_share=0.3 seed=2"
  # which part of seed 2's randomness fails: the order of the lists (data_seed) or the rest
  [k4-delta-open-ends-seed2-data0]="aspects=[instruction_following,correctness,conciseness,informativeness] lambda_contrast=true per_device_train_batch_size=1 contrast_alpha=1.0 score_cut_ends=false seed=2 data_seed=0")
ORDER=(base-instructions instructions-grid instructions-grid-contrast instructions-grid-k4 weights-dirichlet-tau1
       base-weights instructions-grid-rpo instructions-grid-k4-contrast instructions-dirichlet instructions-grid-tau1
       instructions-grid-beta0.3 instructions-grid-lr1e-3 instructions-grid-mean instructions-grid-rpo1
       instructions-grid-k4-rpo1 instructions-grid-k4-lr1e-3
       instructions-grid-k4-delta base-instructions-t96 k4-delta-t96 k4-delta-a2 k4-delta-lr1e-3 k4-delta-far4
       k4-delta-steps200 k4-delta-steps300 k4-delta-beta0.5 k4-delta-beta1
       k4-delta-full k4-delta-r64 k4-delta-tau0.25 k4-delta-mean base-weights-t96 k4-delta-weights
       k4-delta-dirichlet k4-delta-vertices k4-delta-half-data k4-delta-beta0.5-lr1e-4
       k4-delta-60lists-300steps k4-delta-more-data-2ep
       base-embedding-instr k4-delta-embedding-instr k4-delta-embedding-header
       k4-delta-seed1 k4-delta-seed2 k4-delta-more-data-2ep-seed1 k4-delta-seed2-steps200
       base-open-ends k4-delta-open-ends k4-delta-open-ends-seed1 k4-delta-open-ends-seed2
       k4-delta-open-ends-vshare0.5 k4-delta-open-ends-vshare0.3
       k4-delta-open-ends-seed2-lr1e-3 k4-delta-open-ends-seed2-constant k4-delta-open-ends-seed2-a2
       base-open-ends-p5 base-priorities-p5 k4-delta-priorities-p5 k4-delta-open-ends-p5
       k4-delta-priorities-p5-seed1 k4-delta-priorities-p5-seed2 k4-delta-open-ends-p5-seed1 k4-delta-open-ends-p5-seed2
       k4-delta-open-ends-constant k4-delta-open-ends-constant-seed1 k4-delta-priorities-p5-steps200
       k4-delta-open-ends-seed3 k4-delta-open-ends-seed4
       k4-delta-open-ends-p5-vshare0.3 k4-delta-open-ends-p5-steps200 k4-delta-open-ends-p5-vshare0.3-seed1
       k4-delta-open-ends-p5-steps200-seed1 k4-delta-open-ends-p5-vshare0.3-seed2 k4-delta-open-ends-p5-steps200-seed2
       k4-delta-open-ends-seed2-data0)
[ $# -gt 0 ] && ORDER=("$@")
while pgrep -f "research/steering_study.py" > /dev/null; do sleep 10; done  # one run at a time
MORE_DATA=research/steering-data/more-data-seed1/train.jsonl  # committed: the build the row ran on (runs/more-data/seed1)
for row in "${ORDER[@]}"; do
  args=${ROWS[$row]-}
  if [[ $args == *"$MORE_DATA"* ]]; then
    # 480 new prompts (seed 1), none of them a prompt of the shipped train or eval files
    [ -s $MORE_DATA ] || OMP_NUM_THREADS=2 .venv/bin/lambda-dpo build-data --out-dir "$(dirname $MORE_DATA)" --seed 1 \
      --n-prompts 480 --n-eval 0 --threads 2 --exclude src/lambda_dpo/resources/demo/train.jsonl \
      --exclude src/lambda_dpo/resources/demo/eval.jsonl > runs/study-logs/more-data-build.log 2>&1
    if [ ! -s $MORE_DATA ]; then echo "$(date +%T) skip $row: building $MORE_DATA failed" >> runs/study-logs/queue.log; continue; fi
    # two epochs of the shipped training lists (those left by the 15% dev split) plus the new ones
    shipped=$(wc -l < src/lambda_dpo/resources/demo/train.jsonl)
    args=${args/MAX_STEPS_2EP/$(( 2 * (shipped - (shipped * 15 + 99) / 100 + $(wc -l < $MORE_DATA)) ))}
  fi
  flags=""  # leading --options go to the script before the row name
  while [[ $args == --* ]]; do flags="$flags ${args%% *}"; [[ $args == *" "* ]] && args=${args#* } || args=""; done
  echo "$(date +%T) start $row" >> runs/study-logs/queue.log
  # 2 threads on an idle 2-core machine; 1 when something else computes (spinning threads cost ~10x)
  threads=2; pgrep -f "bench/|pytest" > /dev/null && threads=1
  # shellcheck disable=SC2086
  OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$threads $PY research/steering_study.py $flags "$row" $args > "runs/study-logs/$row.log" 2>&1
  echo "$(date +%T) done $row rc=$?" >> runs/study-logs/queue.log
done
