# setup part 2; every GPU test (fp32 included); prism and gdn layers side by side; op benchmark.
source gpu_calls/env.sh
bash .trb/b/install.sh /tmp/site || exit 3
cat /root/tc_a .tc/b/rest | xz -d | tar -x -C /root && mark cache unpacked
R=/root/r; mkdir -p $R/tests
pack() { (cd $R && tar -czf $OUT/$1.tgz $1); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys,torch,triton,fla,lightning;print('python',sys.version.split()[0],'torch',torch.__version__,'triton',triton.__version__,'fla',fla.__version__,'lightning',lightning.__version__)"; } > $R/tests/env.log 2>&1
timeout -s INT 230 python3 -u -m pytest -p scripts.noautotune -n 8 --timeout 220 -v --durations 0 tests/kernels/test_prism_triton_gpu.py > $R/tests/gpu_tests.log 2>&1
mark tests rc=$?; pack tests
timeout 180 python3 benchmarks/throughput.py --skip-model --mixers prism,gdn --out $R/layers > $R/layers.log 2>&1; mark layers rc=$?
mv $R/layers.log $R/layers/ 2>/dev/null; rm -f $R/layers/layers.png; pack layers
mkdir -p $R/op; timeout 60 python3 -u -m kernels.prism.triton.bench --ops gdn,prism_split_fused_e256 --json $R/op/opbench.json > $R/op/opbench.log 2>&1; mark opbench rc=$?; pack op
