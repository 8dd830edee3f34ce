# setup part 1: the first half of the triton 3.7.1 bundle, the wheels, the first part of the Triton cache
mkdir -p /root/trb && cp .trb/a/part.aa /root/trb/ && cp .tc/a/part.aa /root/tc_a && python3 -m pip install -q --no-deps --target /tmp/site .whl/*.whl && echo ok
