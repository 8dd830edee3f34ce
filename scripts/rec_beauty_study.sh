#!/usr/bin/env bash
# The Beauty mixer-swap table (docs/data.md, recommendation results): every (mixer, seed) of
#   compare.py experiment=rec_beauty --patterns attention prism gdn gla mamba2 ttt_mlp --seeds 0 1 2
# as its own process, all at once (the models are tiny: on one GPU they run side by side), then one table.
#   bash scripts/rec_beauty_study.sh OUT [DATA] [overrides...]
# DATA defaults to data/Beauty.txt (python -m datamodules.fetch beauty).
set -u
out=$1; data=${2:-data/Beauty.txt}; shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out/logs"
for m in ${MIXERS:-attention prism gdn gla mamba2 ttt_mlp}; do
  for s in ${SEEDS:-0 1 2}; do
    OMP_NUM_THREADS=1 python3 compare.py experiment=rec_beauty --patterns "$m" --seeds "$s" --metric val/ndcg@10 \
      --out "$out" -- data.path="$data" "$@" > "$out/logs/$m.s$s.log" 2>&1 &
  done
done
wait
python3 compare.py --from-runs "$out" --metric val/ndcg@10 \
  --columns test/hr@10 test/ndcg@10 test/hr@20 test/ndcg@20 test/mrr test/filtered/hr@10 test/filtered/ndcg@10
