# Background chain after the custom-op change (conv, q/key norm, solver): GPU tests of the changed kernels, then
# the 12-layer model per mixer and compile mode, and the layer rows; one process at a time.
R=/root/r; mkdir -p $R/tests $R/model; export OUT=$R   # mark() writes $OUT/times.log
source gpu_calls/env.sh
timeout 200 python3 -u -m pytest -p scripts.noautotune -n 4 --timeout 190 -v -k "not fp32" \
  tests/kernels/test_prism_triton_gpu.py > $R/tests/gpu_tests.log 2>&1; mark tests rc=$?
model() {  # mixer mode
  timeout 300 python3 benchmarks/throughput.py --skip-layers --model-mixers $1 --model-compile $2 \
    --model-steps 30 --out $R/model/$1_$2 > $R/model_$1_$2.log 2>&1; mark model $1 $2 rc=$?
}
model prism reduce-overhead; model gdn reduce-overhead; model prism none; model gdn none
timeout 200 python3 benchmarks/throughput.py --skip-model --mixers prism,gdn --out $R/layers > $R/layers.log 2>&1
mark layers rc=$?
model prism default; model gdn default
python3 benchmarks/throughput.py --out $R/model/all --merge $R/model/*/results.json > /dev/null; mark merged
touch $R/DONE
