# setup part 2, then the prism and gdn layers with GPU time (throughput.py's kernel_ms), each in its own process
source gpu_calls/env.sh
bash .trb/b/install.sh /tmp/site || exit 3
cat /root/tc_a .tc/b/rest | xz -d | tar -x -C /root && mark cache unpacked
for m in prism gdn; do
  timeout 80 python3 benchmarks/throughput.py --skip-model --mixers $m --out $OUT/$m > $OUT/$m.log 2>&1
  mark layer $m rc=$?; rm -f $OUT/$m/layers.png
done
