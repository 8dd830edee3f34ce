# issue 7: time the GPU mqar_sweep (7 patterns x 2 lrs, all 14 runs at once), each mixer's torch path
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
source gpu_calls/env.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled OMP_NUM_THREADS=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import sys,torch,triton,fla,lightning;print('python',sys.version.split()[0],'torch',torch.__version__,'triton',triton.__version__,'fla',fla.__version__,'lightning',lightning.__version__)"; } > $OUT/env.log 2>&1
mark start
nvidia-smi dmon -s um -d 10 > $OUT/dmon.log 2>&1 &
timeout -s INT ${LIMIT:-530} python3 compare.py experiment=mqar_sweep --jobs 14 --out /root/mq \
  --patterns attention prism prism_l1 gdn gla mamba2 ttt_mlp --lrs 1e-3 3e-3 -- \
  logging.wandb=false trainer.enable_progress_bar=false trainer.max_time=${MAXT:-00:00:07:45} \
  model.mixers.prism.backend=chunk model.mixers.gdn.backend=torch model.mixers.gla.backend=torch \
  model.mixers.mamba2.backend=torch > $OUT/mq.log 2>&1
mark compare rc=$?
cd /root/mq && tar -czf $OUT/mq_runs.tgz --exclude='*.ckpt' --exclude=wandb . ; ls -la $OUT
