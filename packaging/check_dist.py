#!/usr/bin/env python
"""Build the wheel and sdist and check they carry what a service install needs.

Usage: python packaging/check_dist.py [--outdir DIR]
Exits non-zero with one line per problem. Builds through setuptools' PEP 517 backend directly (no network, no isolation).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEEL_MUST_HAVE = [
    "sleap_rtc_plugin/service/cli.py",
    "sleap_rtc_plugin/service/templates/system.service.in",
    "sleap_rtc_plugin/service/templates/template.service.in",
    "sleap_rtc_plugin/service/templates/user.service.in",
    "sleap_rtc_plugin/service/templates/worker.env.in",
    "sleap_rtc_plugin/service/templates/winsw.xml.in",
]
SCRIPTS = ["sleap-rtc = sleap_rtc_plugin.cli:main", "sleap-rtc-service = sleap_rtc_plugin.service.cli:main"]


def build(outdir: Path) -> tuple[Path, Path]:
    """PEP 517 build through setuptools' own backend, in a child process (no network)."""
    for hook in ("build_wheel", "build_sdist"):  # one process each: setuptools keeps state between them
        code = f"import sys; from setuptools import build_meta as b; b.{hook}(sys.argv[1])"
        subprocess.run([sys.executable, "-c", code, str(outdir)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return next(outdir.glob("sleap_rtc_plugin-*.whl")), next(outdir.glob("sleap_rtc_plugin-*.tar.gz"))


def check(wheel: Path, sdist: Path | None) -> list[str]:
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        problems += [f"wheel lacks {n}" for n in WHEEL_MUST_HAVE if n not in names]
        entry = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        text = zf.read(entry).decode() if entry else ""
        problems += [f"wheel entry_points.txt lacks '{s}'" for s in SCRIPTS if s not in text]
        problems += [f"wheel ships a test or cache file: {n}" for n in names if "__pycache__" in n or n.startswith("tests/")]
    if sdist is not None:
        with tarfile.open(sdist) as tf:
            names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
        problems += [f"sdist lacks {n}" for n in WHEEL_MUST_HAVE if n not in names]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        outdir = args.outdir or Path(tmp)
        outdir.mkdir(parents=True, exist_ok=True)
        wheel, sdist = build(outdir)
        problems = check(wheel, sdist)
    for p in problems:
        print(f"check_dist: {p}", file=sys.stderr)
    print(f"check_dist: {wheel.name}{' + ' + sdist.name if sdist else ''}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
