"""report.html: one static page per run (or per comparison of runs) with the numbers a clinical paper needs.

Rendered with Jinja2 from templates/report.html.j2; plots are embedded as base64 PNGs, so the file opens
anywhere without a server and can be logged to MLflow as one artifact.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cadft.eval.summary import with_ci


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cadft.eval", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda value, digits=3: "–" if value is None else f"{value:.{digits}f}"
    env.filters["pct"] = lambda value, digits=1: "–" if value is None else f"{100 * value:.{digits}f}%"
    env.filters["ci"] = lambda value, interval, digits=3: with_ci(value, interval, digits, missing="–")
    env.filters["image"] = _image  # a PNG file embedded (the explanations' plot)
    return env


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_html(path: Path, metrics: dict, files: Mapping[str, Path], context: Mapping) -> Path:
    """The run's report page; `files` are the report files written so far (plots embedded when present)."""
    images = {key: _image(file) for key, file in files.items() if file.suffix == ".png" and file.is_file()}
    html = (
        _environment()
        .get_template("report.html.j2")
        .render(
            m=metrics,
            images=images,
            title=context.get("title", f"cadft report: {metrics.get('model', 'model')}"),
            baselines=context.get("baselines", {}),
            config=context.get("config", {}),
            data=context.get("data"),
            explanations=context.get("explanations"),
        )
    )
    path.write_text(html, encoding="utf-8")
    return path


def write_explain_html(path: Path, title: str, section: Mapping) -> Path:
    """cadft explain's page: the explanations section (cadft.explain.report.section) on its own."""
    html = _environment().get_template("explain.html.j2").render(title=title, x=section)
    path.write_text(html, encoding="utf-8")
    return path


def write_comparison_html(
    path: Path, title: str, table: list[dict], columns: list[str], notes: list[str], images: Mapping[str, Path]
) -> Path:
    """cadft-compare --html: the leaderboard (sorted on validation) with its plots."""
    html = (
        _environment()
        .get_template("compare.html.j2")
        .render(
            title=title,
            table=table,
            columns=columns,
            notes=notes,
            images={key: _image(file) for key, file in images.items()},
        )
    )
    path.write_text(html, encoding="utf-8")
    return path
