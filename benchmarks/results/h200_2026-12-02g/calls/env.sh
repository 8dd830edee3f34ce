export PYTHONPATH=/tmp/site:$PWD TRITON_CACHE_DIR=/root/tcache TRITON_CACHE_AUTOTUNING=1 PYTHONUNBUFFERED=1
T0=${T0:-$(date +%s)}
mark() { echo "$(date +%T) +$(( $(date +%s) - T0 ))s $*" >> $OUT/times.log; }
