# setup part 2; GPU tests (bf16 + fused conv); one layer of prism and gdn, new code and c63cbfc; kernel profiles
source gpu_calls/env.sh
bash .trb/b/install.sh /tmp/site || exit 3
cat /root/tc_a .tc/b/rest | xz -d | tar -x -C /root && mark cache unpacked
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys,torch,triton,fla,lightning;print('python',sys.version.split()[0],'torch',torch.__version__,'triton',triton.__version__,'fla',fla.__version__,'lightning',lightning.__version__)"; } > $R/env.log 2>&1
timeout -s INT 150 python3 -u -m pytest -p scripts.noautotune -n 8 --timeout 140 -v --durations 0 -k "not fp32 or fused_solver or l1_equals" tests/kernels/test_prism_triton_gpu.py > $R/gpu_tests.log 2>&1
mark tests rc=$?
for m in prism gdn; do
  timeout 80 python3 benchmarks/throughput.py --skip-model --mixers $m --out $R/new_$m > $R/new_$m.log 2>&1; mark new $m rc=$?
  (cd gpu_calls/old && PYTHONPATH=/tmp/site:$PWD timeout 70 python3 benchmarks/throughput.py --skip-model --mixers $m --out $R/old_$m > $R/old_$m.log 2>&1); mark old $m rc=$?
done
for m in prism gdn; do timeout 40 python3 benchmarks/profile_layer.py --mixer $m --rows 70 > $R/profile_$m.txt 2>&1; mark profile $m rc=$?; done
rm -f $R/*/layers.png; cd $OUT && tar -czf r.tgz r && rm -rf r
