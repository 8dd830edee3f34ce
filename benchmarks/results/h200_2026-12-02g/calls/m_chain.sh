# Background chain (started by m1.sh with setsid, outlives the call): layer profiles, then the 12-layer model
# per mixer and compile mode, then TTT-MLP; one process at a time, each with its own time limit.
R=/root/r; mkdir -p $R/profiles; export OUT=$R   # mark() writes $OUT/times.log
source gpu_calls/env.sh
for m in prism gdn; do
  timeout 150 python3 benchmarks/profile_layer.py --mixer $m --rows 60 > $R/profiles/$m.txt 2>&1; mark profile $m rc=$?
done
for mode in none reduce-overhead default; do
  for m in prism gdn; do
    timeout 420 python3 benchmarks/throughput.py --skip-layers --model-mixers $m --model-compile $mode \
      --model-steps 30 --out $R/model/${m}_$mode > $R/model_${m}_$mode.log 2>&1; mark model $m $mode rc=$?
  done
done
timeout 420 python3 benchmarks/throughput.py --skip-layers --model-mixers ttt_mlp_compile --model-steps 12 \
  --out $R/model/ttt_mlp_compile > $R/model_ttt.log 2>&1; mark model ttt rc=$?
python3 benchmarks/throughput.py --out $R/model/all --merge $R/model/*/results.json > /dev/null; mark merged
touch $R/DONE
