#!/usr/bin/env bash
# lm_char on one GPU: tokens/s of each pattern alone (100 steps), then the table runs.
R=${R:-/tmp/r}
mkdir -p $R
export OMP_NUM_THREADS=1
COMMON="logging.wandb=false trainer.enable_progress_bar=false"
AD="model.mixers.attention.dropout=0.2"
git rev-parse HEAD > $R/commit 2>/dev/null || cp .gpu/commit $R/commit
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > $R/gpu.txt
for spec in "attention|mixer=attention model.mixers.attention.num_heads=6 $AD" "prism|mixer=prism" "gdn|mixer=gdn" \
    "gla|mixer=gla" "mamba2|mixer=mamba2" "prism+attention|mixer=prism model.insert_every=3 $AD" \
    "linear_attention|mixer=linear_attention"; do
  label=${spec%%|*}; ov=${spec#*|}
  echo "== alone $label $(date +%T)"
  timeout 90 python train.py experiment=lm_char $ov trainer.max_steps=60 trainer.limit_val_batches=1 \
      logging.out_dir=$R/alone/$label $COMMON 2>&1 | tail -2
done
echo "== table $(date +%T)"
python compare.py experiment=lm_char --jobs 1 --seeds 0 --metric val/loss --mode min \
    --columns val/loss perf/tokens_per_s --out $R/hedge --patterns \
    "attention_drop0.3:attention model.mixers.attention.num_heads=6 $AD model.dropout=0.3" \
    -- $COMMON trainer.early_stopping_patience=3 > $R/hedge.log 2>&1 &
python compare.py experiment=lm_char --jobs 10 --seeds 0 1 2 --metric val/loss --mode min \
    --columns val/loss perf/tokens_per_s --out $R/table --patterns \
    "attention:attention model.mixers.attention.num_heads=6 $AD" \
    "prism+attention:prism model.insert_every=3 $AD" linear_attention mamba2 gla \
    -- $COMMON trainer.early_stopping_patience=3 > $R/table.log 2>&1
wait
echo "== end $(date +%T)"
