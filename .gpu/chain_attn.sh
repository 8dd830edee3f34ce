#!/usr/bin/env bash
# lm_char attention only (no Triton): tokens/s alone (60 steps), then the runs.
R=${R:-/tmp/r}
mkdir -p $R
export OMP_NUM_THREADS=1
COMMON="logging.wandb=false trainer.enable_progress_bar=false trainer.early_stopping_patience=3"
AD="model.mixers.attention.num_heads=6 model.mixers.attention.dropout=0.2"
cp .gpu/commit $R/commit
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > $R/gpu.txt
echo "== alone $(date +%T)"
timeout 90 python train.py experiment=lm_char $AD trainer.max_steps=60 trainer.limit_val_batches=1 \
    logging.out_dir=$R/alone/attention $COMMON 2>&1 | tail -2
echo "== table $(date +%T)"
python compare.py experiment=lm_char --jobs 1 --seeds 0 --metric val/loss --mode min --columns val/loss \
    --out $R/hedge --patterns "attention_drop0.3:attention $AD model.dropout=0.3" -- $COMMON > $R/hedge.log 2>&1 &
python compare.py experiment=lm_char --jobs 3 --seeds 0 1 2 --metric val/loss --mode min \
    --columns val/loss perf/tokens_per_s --out $R/table --patterns "attention:attention $AD" \
    -- $COMMON > $R/table.log 2>&1
wait
echo "== end $(date +%T)"
