# Start the 10k-step probing sweep (torch paths, one head per mixer) so that it outlives this call, then report.
source gpu_calls/env.sh
python3 -m pip install -q --no-deps --target /tmp/site .whl/*.whl
mark installed
nvidia-smi --query-gpu=name,memory.total --format=csv > $OUT/gpu.txt
python3 -c "import torch, lightning, fla, sys; print(sys.version, torch.__version__, lightning.__version__, fla.__version__)" >> $OUT/gpu.txt 2>&1
setsid nohup python3 compare.py experiment=prism_probes --jobs ${JOBS:-15} --out /root/probes \
  --vary data.task=mqar,parity,local_xor,modulo_add,palindrome,mux,silence_gate,variable_tracking,poly_recall \
  --patterns 'attention:attention model.mixers.attention.num_heads=1' 'prism:prism model.mixers.prism.num_heads=1' \
  'prism_l1:prism_l1 model.mixers.prism.num_heads=1' 'gdn:gdn model.mixers.gdn.num_heads=1' \
  'gla:gla model.mixers.gla.num_heads=1' 'mamba2:mamba2 model.mixers.mamba2.head_dim=32' \
  'ttt_mlp:ttt_mlp model.mixers.ttt_mlp.head_dim=16' \
  -- logging.wandb=false trainer.ckpt_every_n_steps=1000 model.mixers.prism.backend=chunk \
  model.mixers.gdn.backend=torch model.mixers.gla.backend=torch model.mixers.mamba2.backend=torch \
  > /root/probes.log 2>&1 < /dev/null &
mark started
sleep ${WAIT:-420}
bash gpu_calls/q2.sh
