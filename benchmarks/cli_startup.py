"""Wall time of ``dreamsync --help`` and proof that it compiles nothing.

Usage: python benchmarks/cli_startup.py [--runs 20]
"""

import argparse
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "dreamsync", "--help"]
    subprocess.run(cmd, capture_output=True, check=True)  # warm the OS file cache
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    probe = ("import sys\nfrom dreamsync.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(','.join(m for m in ('numba', 'numpy', 'scipy') if m in sys.modules) or 'none')")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()[-1]
    print(f"dreamsync --help: median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {args.runs} runs "
          f"(python -m dreamsync, whole process)")
    print(f"numerical libraries loaded by --help: {loaded}")


if __name__ == "__main__":
    main()
