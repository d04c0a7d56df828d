"""The table the runner prints, and the JSON files it writes to bench/results/."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any, Final

import msgspec
from rich.console import Console
from rich.table import Table

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
LEGEND: Final = (
    "Nx (low-high): the median of the ratios within each repetition, and the extremes. "
    "✓/✗: the issues' targets (6 and 14)."
)


class Ratio(msgspec.Struct, frozen=True):
    """A row's figure against a baseline measured in the same run."""

    baseline: str
    value: float  # row / baseline: the median of the ratios within each repetition
    says: str = ""  # the ratio in words, e.g. "events cost 2.1% (target <= 5%)"
    meets_target: bool | None = None  # None: no target
    low: float | None = None  # the lowest and highest ratio within a repetition
    high: float | None = None


class Row(msgspec.Struct, frozen=True, kw_only=True):
    suite: str
    name: str
    value: float  # median over `runs`
    unit: str
    low: float  # the lowest and highest run
    high: float
    runs: int
    ratios: list[Ratio] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)


def figure(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio_text(ratio: Ratio) -> str:
    mark = {True: " [green]✓[/]", False: " [red]✗[/]", None: ""}[ratio.meets_target]
    says = f": {ratio.says}" if ratio.says else ""
    spread = "" if ratio.low is None else f" ({ratio.low:.2f}-{ratio.high:.2f})"
    return f"{ratio.value:.2f}x{spread} {ratio.baseline}{says}{mark}"


def table(rows: list[Row], title: str, legend: Sequence[str] = ()) -> Table:
    caption = " ".join([LEGEND, *legend])
    out = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    out.add_column("benchmark", overflow="fold")
    out.add_column("median", justify="right", no_wrap=True)
    out.add_column("runs: low-high", justify="right", no_wrap=True)
    out.add_column("vs baseline (same run)", overflow="fold")
    out.add_column("notes", overflow="fold", style="dim")
    for index, (_, group) in enumerate(groupby(rows, key=lambda row: row.suite)):
        if index:
            out.add_section()
        for row in group:
            out.add_row(
                row.name,
                f"{figure(row.value)} {row.unit}",
                f"{row.runs}: {figure(row.low)}-{figure(row.high)}",
                "\n".join(_ratio_text(ratio) for ratio in row.ratios),
                "\n".join(row.notes),
            )
    return out


def print_table(rows: list[Row], title: str, legend: Sequence[str] = ()) -> None:
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide lines rather than folded cells
        console = Console(width=200)
    console.print(table(rows, title, legend))


def write_results(results: dict[str, Any], started: datetime) -> Path:
    """bench/results/<UTC timestamp>.json, and the same as bench/results/latest.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = msgspec.json.format(msgspec.json.encode(results), indent=2) + b"\n"
    path = RESULTS_DIR / f"{started:%Y%m%dT%H%M%SZ}.json"
    path.write_bytes(text)
    (RESULTS_DIR / "latest.json").write_bytes(text)
    return path
