# 12-layer loss curves, Triton against the chunked op (50 steps); TTT-MLP compiled (12 steps); MQAR single-run rates.
source gpu_calls/env.sh
R=/root/r; mkdir -p $R
pack() { (cd $R && tar -czf $OUT/$1.tgz $1); }
MIXERS="prism prism_chunk" LIMIT=150 bash benchmarks/run_gpu.sh $R/curve model > $R/curve.log 2>&1; mark curve rc=$?
mv $R/curve.log $R/curve/ 2>/dev/null; pack curve
MIXERS=ttt_mlp_compile LIMIT=300 BENCH_ARGS="--model-steps 12" bash benchmarks/run_gpu.sh $R/ttt model > $R/ttt.log 2>&1; mark ttt rc=$?
mv $R/ttt.log $R/ttt/ 2>/dev/null; pack ttt
timeout 200 python3 compare.py experiment=mqar_sweep --jobs 1 --lrs 3e-3 --out $R/mqrate --patterns attention prism \
  'prism_chunk:prism model.mixers.prism.backend=chunk' -- logging.wandb=false trainer.max_steps=300 \
  trainer.val_check_interval=300 data.val_examples=64 trainer.enable_progress_bar=false trainer.log_every_n_steps=25 > $R/mqrate.log 2>&1
mark mqrate rc=$?; (cd $R && tar -czf $OUT/mqrate.tgz mqrate.log $(find mqrate -name metrics.csv -o -name summary.json -o -name summary.md))
