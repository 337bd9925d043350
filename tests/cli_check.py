"""Many ``lur-jax`` command lines in one process (8 simulated devices, set before JAX starts);
run by test_parallel.py. Reads a JSON list of argument lists from stdin and prints one JSON line
per command: its exit code, what it printed on stdout and stderr, and whether ``--out``
(the argument after it, when given) exists afterwards."""

import contextlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lur_jax import cli  # noqa: E402


def main():
  for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        code = cli.main(argv)
      except SystemExit as e:  # argparse's own errors
        code = e.code
    target = argv[argv.index("--out") + 1] if "--out" in argv else None
    print(json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                      "out_exists": bool(target) and os.path.exists(target)}), flush=True)


if __name__ == "__main__":
  main()
