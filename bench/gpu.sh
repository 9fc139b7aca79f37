#!/usr/bin/env bash
# Issue 14's GPU measurements in one call of the device tool, after `bench/gpu_bundle.py pack` here:
#   run(command="bash bench/gpu.sh", carry=["gpu-carry"], timeout_s=540)
# (t, with THREADS=1) bench/linear_threads.py; (s, with STEPS=1) bench/gpu_steps.py: fine-tuning levers side by
# side; (a) bench/recipe_vs_lightft.py on the default model (MiniLM) and (b) on a bert-base-shaped model (random
# weights: timing only), each printing its speedup= line and the training FLOP/s share of the matmul peak; (c)
# bench/inference.py on (a)'s run; plus nvidia-smi and each lightft run's phase table (summary.json). PROFILE=1 adds
# (d), a cProfile of lightft run; INFERENCE=0 leaves (c) out; QUALITY="key=value ..." adds (q), bench/quality.py on
# BBC's 3 seeds, default vs lever;
# ONLY=diag runs instead: a lightft run's phases, a cProfile of a second one, import times, inference.
# Logs go to $OUT (the device tool brings them back); without $OUT, to gpu-out/.
# CPU dry run of the whole script (tiny sizes, same code paths):
#   DRY=1 PYTHON=.venv/bin/python bash bench/gpu.sh
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
C=gpu-carry
PY=${PYTHON:-python}
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/steps.log"; }

stamp "install the carried wheels"
$PY -m pip install --quiet --no-deps --no-index --target "$C/site" "$C"/wheels/*.whl 2>&1 | tail -3
export PYTHONPATH="$PWD/src:$PWD/$C/site${PYTHONPATH:+:$PYTHONPATH}"
# Compiled bytecode kept between processes, as on a user's machine. The image's site-packages may not take
# .pyc files, and its environment may forbid writing them (PYTHONDONTWRITEBYTECODE): the 2026-11-27 H100
# profile showed 12 s of compile() in a process whose modules an earlier one had already imported.
unset PYTHONDONTWRITEBYTECODE
export HF_HUB_OFFLINE=1 PYTHONPYCACHEPREFIX=/tmp/pycache
$PY bench/gpu_bundle.py unpack 2>&1 | tee "$OUT/unpack.log"
# The device tool brings back at most 8 files: env.log, steps.log, gpu_steps.log, the two recipe logs (each
# ending with its lightft run's summary.json), inference.log and profile.txt.
{ git rev-parse HEAD 2>/dev/null || echo "no git"; nvidia-smi; cat "$OUT/unpack.log"; env | grep "^PYTHON"
  $PY -c "import sys; print('dont_write_bytecode', sys.flags.dont_write_bytecode, 'prefix', sys.pycache_prefix)"
  $PY -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } > "$OUT/env.log" 2>&1
rm -f "$OUT/unpack.log"

DATA="data.source=$PWD/$C/bbc"
QUICK=()
if [ -n "${DRY:-}" ]; then  # tiny: proves the script, measures nothing
  QUICK=(--quick data.test_size=30 data.train_samples=30 data.validation_size=15 train.epochs=1)
fi

if [ "${ONLY:-}" = diag ]; then  # where a run's time goes now: phases, cProfile, imports, inference levers
  $PY -c "import torch, transformers, peft, accelerate, sklearn, datasets" > /dev/null 2>&1
  stamp "(p1) lightft run, first on this machine: its phases"
  $PY -m lightft run configs/bbc-news.yaml "model.name=$PWD/$C/minilm" "$DATA" "${QUICK[@]:1}" -o runs/diag1 \
    2>&1 | tr '\r' '\n' | grep -av "it/s\]\|doc/s\]\|batch/s\]" > "$OUT/run1.log"
  $PY -c "import json; print('phases', json.load(open('runs/diag1/summary.json'))['phases'])" >> "$OUT/run1.log" 2>&1
  stamp "(p2) the same again under cProfile"
  $PY -m cProfile -o /tmp/lightft.prof -m lightft run configs/bbc-news.yaml "model.name=$PWD/$C/minilm" "$DATA" \
    "${QUICK[@]:1}" -o runs/diag2 > /dev/null 2>&1
  { $PY -c "import pstats, sys; pstats.Stats(sys.argv[1]).sort_stats('cumtime').print_stats(90)" /tmp/lightft.prof
    $PY -c "import json; print('phases', json.load(open('runs/diag2/summary.json'))['phases'])"; } \
    > "$OUT/profile.txt" 2>&1
  stamp "(p3) import times: lightft's modules, the recipe's"
  { $PY -X importtime -c "import lightft.experiment, lightft.train, lightft.baselines, lightft.report; \
from accelerate import Accelerator" 2>&1 | sort -t'|' -k2 -n | tail -30
    echo "--- recipe"; $PY -X importtime -c "from transformers import Trainer, TrainingArguments, \
AutoModelForSequenceClassification; import peft, sklearn.metrics" 2>&1 | sort -t'|' -k2 -n | tail -30; } \
    > "$OUT/imports.txt" 2>&1
  stamp "(c) inference on (p1)'s run"
  $PY bench/inference.py --run runs/diag1 --rounds 2 2>&1 | tee "$OUT/inference.log"
  stamp "done"
  exit 0
fi

if [ -n "${THREADS:-}" ]; then  # ~30 s: the regressions' BLAS threads (lightft.linear.fit)
  stamp "(t) logistic regressions, BLAS on its default threads vs one"
  $PY bench/linear_threads.py 2>&1 | tee "$OUT/linear_threads.log"
fi

if [ -n "${STEPS:-}" ]; then  # ~70 s: run it when the fine-tuning levers are the question
  stamp "(s) fine-tuning levers side by side: padding, fp32, batches of 32 and 64, LoRA dropout 0"
  $PY bench/gpu_steps.py "model.name=$PWD/$C/minilm" "$DATA" "${QUICK[@]:1}" 2>&1 | tr '\r' '\n' \
    | grep -av "it/s\]\|doc/s\]\|batch/s\]" | tee "$OUT/gpu_steps.log"
fi

stamp "(a) recipe vs lightft, default model"
$PY bench/recipe_vs_lightft.py "${QUICK[@]}" "model.name=$PWD/$C/minilm" "$DATA" 2>&1 | tee "$OUT/recipe_minilm.log"
{ echo "--- summary.json"; cat runs/bench-lightft/summary.json; } >> "$OUT/recipe_minilm.log" 2>&1

if [ "${INFERENCE:-1}" != 0 ]; then
  stamp "(c) inference: predict vs the standard loader on (a)'s run"
  $PY bench/inference.py --run runs/bench-lightft --rounds "${ROUNDS:-2}" 2>&1 | tee "$OUT/inference.log"
fi

stamp "(b) recipe vs lightft, bert-base shape"
$PY bench/recipe_vs_lightft.py "${QUICK[@]}" "model.name=$PWD/$C/bert-base" "$DATA" 2>&1 \
  | tee "$OUT/recipe_bertbase.log"
{ echo "--- summary.json"; cat runs/bench-lightft/summary.json; } >> "$OUT/recipe_bertbase.log" 2>&1

if [ -n "${PROFILE:-}" ]; then  # the 7th file of the 8 the device tool brings back
  stamp "(d) where lightft run's time goes on the default model: cProfile, top 70 by cumulative time"
  $PY -m cProfile -o /tmp/lightft.prof -m lightft run configs/bbc-news.yaml "model.name=$PWD/$C/minilm" "$DATA" \
    "${QUICK[@]:1}" output_dir=runs/bench-profile > /dev/null 2>&1
  $PY -c "import pstats, sys; pstats.Stats(sys.argv[1]).sort_stats('cumtime').print_stats(70)" \
    /tmp/lightft.prof > "$OUT/profile.txt" 2>&1
  $PY -c "import json; print('phases', json.load(open('runs/bench-profile/summary.json'))['phases'])" \
    >> "$OUT/profile.txt" 2>&1
fi

if [ -n "${QUALITY:-}" ]; then  # QUALITY="key=value ...": the default config and that lever on BBC's seeds
  stamp "(q) bench/quality.py on BBC: the default, then ${QUALITY}"
  for label in default lever; do
    lever=(); [ $label = lever ] && read -ra lever <<< "$QUALITY"
    $PY bench/quality.py --label $label --seeds "${SEEDS:-42,43,44}" "${QUICK[@]:1}" "model.name=$PWD/$C/minilm" \
      "$DATA" "${lever[@]}" >> "$OUT/quality.log" 2> /tmp/quality.err \
      || tr '\r' '\n' < /tmp/quality.err | grep -av "it/s\]\|doc/s\]\|batch/s\]" | tail -15 >> "$OUT/quality.log"
  done
fi

stamp "done"
grep -h "^speedup=" "$OUT"/recipe_*.log
