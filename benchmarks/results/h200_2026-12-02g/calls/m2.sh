# Wait until the chain is done or WAIT seconds pass, then bring back /root/r (results, logs, times).
source gpu_calls/env.sh
for i in $(seq ${WAIT:-550}); do [ -f /root/r/DONE ] && break; sleep 1; done
tail -n 3 /root/r/model_*.log > $OUT/progress.txt 2>&1; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >> $OUT/progress.txt
tar -C /root -czf $OUT/r.tgz r
