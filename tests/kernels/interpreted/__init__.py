"""Test programs that tests/conftest.py's run_interpreted runs in a subprocess under Triton's interpreter; each
prints one JSON line of results for its test module to read."""
import json


def report(*cases) -> None:
    """Run every case(out), which adds its results to ``out``, and print ``out`` as the JSON line the test reads."""
    out = {}
    for case in cases:
        case(out)
    print(json.dumps(out))
