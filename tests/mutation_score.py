"""The mutation score per module from mutmut's results in mutants/ (`make mutate` prints it at the end).

Only the mutants that were run count: `make mutate MUTANTS=...` may run some functions only. Score = killed
(including timeouts, which a hanging mutant gets) / (killed + survived + no tests)."""
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, "")
from mutmut.stats import status_by_exit_code  # noqa: E402


def main(root: Path = Path("mutants")) -> None:
    print(f"{'module':22} {'run':>5} {'killed':>7} {'timeout':>8} {'survived':>9} {'no tests':>9} {'score':>6}")
    for meta in sorted(root.glob("core/*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(status_by_exit_code[c] for c in codes.values() if c is not None)
        run = sum(counts.values())
        if not run:
            continue
        killed, timeout = counts["killed"], counts["timeout"]
        judged = killed + timeout + counts["survived"] + counts["no tests"]
        score = f"{100 * (killed + timeout) / judged:.0f}%" if judged else "-"
        print(f"{meta.name[:-5]:22} {run:5} {killed:7} {timeout:8} {counts['survived']:9} {counts['no tests']:9} "
              f"{score:>6}")


if __name__ == "__main__":
    main()
