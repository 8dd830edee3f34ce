# setup part 2, then the GPU tests (bf16 and fp32), the op benchmark, the prism and gdn layers, kernel profiles
source gpu_calls/env.sh
bash .trb/b/install.sh /tmp/site || exit 3
cat /root/tc_a .tc/b/rest | xz -d | tar -x -C /root && mark cache unpacked
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys,torch,triton,fla,lightning;print('python',sys.version.split()[0],'torch',torch.__version__,'triton',triton.__version__,'fla',fla.__version__,'lightning',lightning.__version__)"; } > $OUT/env.log 2>&1
# 8 workers: a case whose kernels are not in the carried cache compiles beside the others
timeout -s INT ${TLIM:-150} python3 -u -m pytest -p scripts.noautotune -n 8 --timeout 210 -v --durations 0 -k "not fp32 or fused_solver or l1_equals" tests/kernels/test_prism_triton_gpu.py > $OUT/gpu_tests.log 2>&1
mark tests rc=$?
timeout 90 python3 -u -m kernels.prism.triton.bench --ops gdn,prism_split_fused_e256 --json $OUT/opbench.json > $OUT/opbench.log 2>&1
mark opbench rc=$?
MIXERS="prism gdn" LIMIT=70 bash benchmarks/run_gpu.sh $OUT/layers layers > $OUT/layers.log 2>&1
mark layers rc=$?
for m in prism gdn; do timeout 40 python3 benchmarks/profile_layer.py --mixer $m --rows 45 > $OUT/profile_$m.txt 2>&1; mark profile $m rc=$?; done
