"""Does the pinned GPU stack still resolve? pip resolves `.[gpu]` under constraints/gpu.txt against the package
index without installing anything (a minute or two, network to PyPI only), then this compares what it chose with
the pins.

    python tools/check_gpu_resolve.py            # exit 0: resolves, and every pin was chosen as written
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints" / "gpu.txt"


def pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            [spec] = req.specifier
            out[canonicalize_name(req.name)] = spec.version
    return out


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                               "--report", str(report), "-c", str(CONSTRAINTS), f"{ROOT}[gpu]"],
                              capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            print(f"the GPU stack does not resolve under {CONSTRAINTS}", file=sys.stderr)
            return 1
        chosen = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                  for i in json.loads(report.read_text())["install"]}
    wrong = {k: (v, chosen.get(k)) for k, v in pins().items() if chosen.get(k) != v}
    for name, (pinned, got) in wrong.items():
        print(f"{name}: pinned {pinned}, resolved {got}", file=sys.stderr)
    print(f"{len(chosen)} packages resolve; {len(pins()) - len(wrong)}/{len(pins())} pins chosen as written")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
