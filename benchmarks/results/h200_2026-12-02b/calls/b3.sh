# issue 7: the mqar_sweep slice again (14 runs at once, torch paths), after the head-at-labels change
source gpu_calls/env.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled OMP_NUM_THREADS=1
mark start
nvidia-smi dmon -s um -d 10 > $OUT/dmon.log 2>&1 &
timeout -s INT ${LIMIT:-470} python3 compare.py experiment=mqar_sweep --jobs 14 --out /root/mq7 \
  --patterns attention prism prism_l1 gdn gla mamba2 ttt_mlp --lrs 1e-3 3e-3 -- \
  logging.wandb=false trainer.enable_progress_bar=false trainer.max_time=${MAXT:-00:00:06:40} \
  model.mixers.prism.backend=chunk model.mixers.gdn.backend=torch model.mixers.gla.backend=torch \
  model.mixers.mamba2.backend=torch > $OUT/mq.log 2>&1
mark compare rc=$?
cd /root/mq7 && tar -czf $OUT/mq_runs.tgz --exclude='*.ckpt' --exclude=wandb . ; ls -la $OUT
