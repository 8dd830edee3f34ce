# The second call: finish the probing table on the GPU, compiled. TTT-MLP on TTT_TASKS (its own process; the
# call ran TTT_TASKS=none, which exits at once, as the CPU ran TTT-MLP) and the six other patterns on
# variable_tracking and poly_recall; finished runs (and unfinished ones with last.ckpt) carried in
# .sweeps/probes10k are kept or resumed. Then report like q2.
source gpu_calls/env.sh
python3 -m pip install -q --no-deps --target /tmp/site .whl/*.whl
mkdir -p /root/probes && cp -r .sweeps/probes10k/runs /root/probes/
mark installed
export TORCHINDUCTOR_COMPILE_THREADS=1
OVR="logging.wandb=false trainer.ckpt_every_n_steps=1000 trainer.enable_progress_bar=false trainer.compile=true \
  model.mixers.prism.backend=chunk model.mixers.gdn.backend=torch model.mixers.gla.backend=torch \
  model.mixers.mamba2.backend=torch"
go() { local name=$1; shift
  setsid nohup python3 compare.py experiment=prism_probes --out /root/probes "$@" > /root/probes_$name.log 2>&1 < /dev/null & }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
go ttt --jobs 4 --vary data.task=${TTT_TASKS:-mux,silence_gate,variable_tracking,poly_recall} \
  --patterns 'ttt_mlp:ttt_mlp model.mixers.ttt_mlp.head_dim=16' -- $OVR
go six --jobs 8 --vary data.task=variable_tracking,poly_recall \
  --patterns 'attention:attention model.mixers.attention.num_heads=1' 'prism:prism model.mixers.prism.num_heads=1' \
  'prism_l1:prism_l1 model.mixers.prism.num_heads=1' 'gdn:gdn model.mixers.gdn.num_heads=1' \
  'gla:gla model.mixers.gla.num_heads=1' 'mamba2:mamba2 model.mixers.mamba2.head_dim=32' -- $OVR
mark started
sleep ${WAIT:-420}
bash gpu_calls/q2.sh
