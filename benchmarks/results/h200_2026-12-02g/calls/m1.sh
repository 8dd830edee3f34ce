# Call 3 of the session: setup part 2 (triton 3.7.1, the Triton cache), start m_chain.sh in the background,
# wait, bring back what finished.
source gpu_calls/env.sh
bash .trb/b/install.sh /tmp/site || exit 3
cat /root/tc_a .tc/b/rest | xz -d | tar -x -C /root && mark cache unpacked
mkdir -p /root/r
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys,torch,triton,fla,lightning;print('python',sys.version.split()[0],'torch',torch.__version__,'triton',triton.__version__,'fla',fla.__version__,'lightning',lightning.__version__)"; } > /root/r/env.log 2>&1
cp gpu_calls/m_chain.sh /root/  # bash reads a script as it runs: the next call replaces gpu_calls/
setsid nohup bash /root/m_chain.sh > /root/r/chain.log 2>&1 < /dev/null &
WAIT=${WAIT:-520} bash gpu_calls/m2.sh
