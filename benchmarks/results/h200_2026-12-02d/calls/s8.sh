# setup part 2; the three GPU tests the first run left (two fp32 cases out of memory at launch with 8 workers,
# one not finished); then full 3000-step mqar_sweep runs of attention and PRISM (chunked torch op), two at once.
source gpu_calls/env.sh
bash .trb/b/install.sh /tmp/site || exit 3
cat /root/tc_a .tc/b/rest | xz -d | tar -x -C /root && mark cache unpacked
R=/root/r; mkdir -p $R/tests2
pack() { (cd $R && tar -czf $OUT/$1.tgz $1); }
F=tests/kernels/test_prism_triton_gpu.py
timeout -s INT 150 python3 -u -m pytest -p scripts.noautotune -n 3 --timeout 140 -v --durations 0 "$F::test_triton_matches_chunk_op[1000-False-fp32]" "$F::test_triton_matches_chunk_op_packed[3-fp32]" "$F::test_fused_solver_gpu[paper-2-bf16]" > $R/tests2/gpu_tests.log 2>&1
mark tests rc=$?; pack tests2
timeout 370 python3 compare.py experiment=mqar_sweep --jobs 2 --lrs 3e-3 --out $R/mqfull --patterns attention \
  'prism_chunk:prism model.mixers.prism.backend=chunk' -- logging.wandb=false trainer.enable_progress_bar=false trainer.log_every_n_steps=50 > $R/mqfull.log 2>&1
mark mqfull rc=$?; (cd $R && tar -czf $OUT/mqfull.tgz mqfull.log $(find mqfull -maxdepth 1 -type f) $(find mqfull -name metrics.csv -o -name summary.json -o -name config.yaml))
