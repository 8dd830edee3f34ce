# Report the probing sweep's progress and bring back every finished run (without checkpoints).
source gpu_calls/env.sh
mark report
grep -v "Warning\|warn" /root/probes.log | grep -E "val/acc=|FAILED|Error|error" | tail -80 > $OUT/progress.txt
echo "--- steps of unfinished runs" >> $OUT/progress.txt
python3 - >> $OUT/progress.txt <<'PY'
import csv, glob, os
for d in sorted(glob.glob("/root/probes/runs/prism_probes/*/")):
    if os.path.exists(d + "summary.json"):
        continue
    steps = [int(r["step"]) for r in csv.DictReader(open(d + "metrics.csv")) if r.get("step")] if os.path.exists(d + "metrics.csv") else []
    print(os.path.basename(d.rstrip("/")), max(steps, default=0))
PY
uptime >> $OUT/progress.txt; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >> $OUT/progress.txt
tail -c 20000 /root/probes.log > $OUT/probes_tail.log
tar -C /root -czf $OUT/probes.tgz --exclude checkpoints probes
mark tarred
