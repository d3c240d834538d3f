"""Reproducible benchmarks: ``make bench`` (``python -m benchmarks``) runs every module here.

A benchmark module exposes ``TITLE`` and ``run() -> list[Result]``; ``python -m benchmarks``
prints each table and rewrites the generated part of ``BENCHMARKS.md`` (between the
``bench:begin`` / ``bench:end`` markers; the hand-written findings around it stay).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def env_int(name: str, default: int) -> int:
    """A benchmark knob from the environment (unset or blank: the default)."""
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


@dataclass(frozen=True)
class Result:
    metric: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""

    def formatted_value(self) -> str:
        if self.unit in {"x", "ratio"}:
            return f"{self.value:.2f}"
        if self.value >= 100:
            return f"{self.value:,.0f}"
        return f"{self.value:,.1f}"


def table(results: list[Result]) -> str:
    """A Markdown table (also readable on a terminal)."""
    lines = ["| metric | value | unit | target | met | note |", "|---|---:|---|---|---|---|"]
    for r in results:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(
            f"| {r.metric} | {r.formatted_value()} | {r.unit} | {r.target} | {met} | {r.note} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": sys.version.split()[0],
        "commit": _git_commit(),
    }


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
