"""Breaks, on purpose, the code that each of the strengthened tests checks, runs that test,
and reports whether it failed (it must); then restores the file. Not part of the suite:

    python tests/break_on_purpose.py          # every case
    python tests/break_on_purpose.py 0 3      # cases 0 and 3

Each case is (what is broken, file, text, replacement, test file, -k selection).
"""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [
  ("BatchNorm's training pass normalises with another epsilon than evaluation (2e-5 vs 1e-5)",
   "lur_jax/models.py", "    return (x - mean) * lax.rsqrt(var + self.epsilon) * scale + bias",
   "    return (x - mean) * lax.rsqrt(var + (2e-5 if train else self.epsilon)) * scale + bias",
   "tests/test_data_models.py", "batchnorm"),
  ("a rerun resumes from the oldest kept checkpoint, not the newest (same checksums by replay)",
   "lur_jax/training/checkpoint.py", "    for step in sorted(self._manager.all_steps(), reverse=True):",
   "    for step in sorted(self._manager.all_steps()):", "tests/test_resume.py", "sigkill"),
  ("a rerun never reuses a finished method (retrains; same checksums by determinism)",
   "lur_jax/study/runner.py", "  earlier = cache.load(name, fingerprint)\n", "  earlier = None\n",
   "tests/test_cli.py", "smoke_study"),
  ("runs are not determined by their seed (a data order drawn from the clock)",
   "lur_jax/training/loop.py", '  return zlib.crc32(f"{seed}/{name}".encode())',
   '  return zlib.crc32(f"{seed}/{name}/{__import__(\'time\').time_ns()}".encode())',
   "tests/test_cli.py", "smoke_study"),
  ("a refused write's rerun restores no checkpoint",
   "lur_jax/training/loop.py", "  restored = checkpoints.restore(state) if checkpoints is not None else None",
   "  restored = None", "tests/test_write_errors.py", "refused and checkpoint"),
  ("the NeurIPS score with δ = 1e-3 instead of 1e-5",
   "lur_jax/audit/forgetting_score.py", "DELTA = 1e-5", "DELTA = 1e-3",
   "tests/test_forgetting_score.py", "challenges_scorer"),
  ("U-LiRA loses information (noise of 0.7 sd added to the scores)",
   "lur_jax/audit/ulira.py", "  in_forget = np.asarray(in_forget, bool)\n",
   "  in_forget = np.asarray(in_forget, bool)\n  unlearned = unlearned + np.random.default_rng(9).normal(0, 0.7, unlearned.shape)\n",
   "tests/test_ulira.py", "as_well_as_possible"),
  ("an ensemble member off by 2e-7 of its value",
   "lur_jax/audit/ensemble.py", "  return jax.tree.map(lambda a: a[m], tree)",
   "  return jax.tree.map(lambda a: a[m] * (1 + 2e-7) if a.dtype == 'float32' else a[m], tree)",
   "tests/test_ensemble.py", "member_matches and graddiff"),
  ("the API page loses a name", "docs/api.md", "   lur_value_and_grad\n", "",
   "tests/test_docs.py", "api_page"),
  ("a docs example breaks", "docs/functional_api.md", "tx = optax.chain(", "tx = optax.chian(",
   "tests/test_docs.py", "block_runs and functional"),
  ("the key table loses a key", "lur_jax/study/config_keys.py", '    Key("lur.inner_steps", _POSITIVE_INT, "K, the number of virtual steps"),\n', "",
   "tests/test_docs.py", "key_table and digits.py"),
  ("a public function loses its Returns section", "lur_jax/core/metrics.py",
   "  Returns:\n    Avg. Gap in percentage points; 0 for Retrain itself.\n", "",
   "tests/test_docs.py", "docstring"),
]
OLD = sys.argv[1:2] == ['--old']


def main(only: list[str]) -> int:
  survived = 0
  for i, (what, path, old, new, test, select) in enumerate(CASES):
    if only and str(i) not in only:
      continue
    full = os.path.join(ROOT, path)
    with open(full) as f:
      source = f.read()
    if source.count(old) != 1:
      raise SystemExit(f"case {i}: the text to break is not in {path} exactly once")
    with open(full, "w") as f:
      f.write(source.replace(old, new))
    try:
      start = time.time()
      proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                             "no:cacheprovider", test, "-k", select],
                            cwd=ROOT, capture_output=True, text=True, check=False)
      last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
      verdict = "fails, as it must" if proc.returncode == 1 else f"DID NOT FAIL (rc={proc.returncode})"
      survived += proc.returncode != 1
      print(f"[{i}] {what}: {test} -k '{select}' {verdict} ({last}; {time.time() - start:.0f} s)",
            flush=True)
    finally:
      with open(full, "w") as f:
        f.write(source)
  return 1 if survived else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
