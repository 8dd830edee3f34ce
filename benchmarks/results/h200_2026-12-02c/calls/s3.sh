# setup part 2; GPU tests; prism and gdn layers side by side (alternating rounds); profile; 12-layer models
source gpu_calls/env.sh
bash .trb/b/install.sh /tmp/site || exit 3
cat /root/tc_a .tc/b/rest | xz -d | tar -x -C /root && mark cache unpacked
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys,torch,triton,fla,lightning;print('python',sys.version.split()[0],'torch',torch.__version__,'triton',triton.__version__,'fla',fla.__version__,'lightning',lightning.__version__)"; } > $R/env.log 2>&1
timeout -s INT 120 python3 -u -m pytest -p scripts.noautotune -n 8 --timeout 110 -v --durations 0 -k "not fp32 or fused_solver or l1_equals" tests/kernels/test_prism_triton_gpu.py > $R/gpu_tests.log 2>&1
mark tests rc=$?
timeout 150 python3 benchmarks/throughput.py --skip-model --mixers prism,gdn --out $R/layers > $R/layers.log 2>&1; mark layers rc=$?
timeout 40 python3 benchmarks/profile_layer.py --mixer prism --rows 60 > $R/profile_prism.txt 2>&1; mark profile rc=$?
timeout 150 python3 benchmarks/throughput.py --skip-layers --model-mixers prism,gdn --model-steps 30 --out $R/model > $R/model.log 2>&1; mark model rc=$?
rm -f $R/*/layers.png; cd $OUT && tar -czf r.tgz r && rm -rf r
