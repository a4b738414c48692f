"""Trainee and cohort reports (HTML, and PDF through matplotlib's PdfPages).

A trainee report holds, per scenario: the learning curve (score history with the
pass mark, standard CUSUM with its lines, LC-CUSUM with its limit), metric trends,
the table of attempts and the last debrief notes. A cohort report holds a table of
trainees by scenarios (attempts, pass rate, last score, CUSUM and LC-CUSUM status)
and a pass-rate chart. Reports name people by opaque id only.

Plots use matplotlib's Agg backend (no display); images are embedded in the HTML
as PNG data URIs so a report is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from surgsim.errors import RecordsError
from surgsim.records.curves import LearningCurve, learning_curve

if TYPE_CHECKING:
    from surgsim.records.auth import AccessContext
    from surgsim.records.db import Records

__all__ = ["cohort_report", "trainee_report"]

TREND_METRICS = ("time_s", "path_length_m", "economy_of_motion", "wall_hits", "peak_wall_force_n")

_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; }
th { background: #eee; }
.pass { color: #1a7f37; } .fail { color: #b42318; }
img { max-width: 100%; }
.debrief { white-space: pre-wrap; background: #f6f6f6; padding: 0.8em; border-left: 4px solid #888; }
"""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _curve_figure(curve: LearningCurve, pass_score: float | None) -> Any:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    n = np.arange(1, len(curve.attempt_ids) + 1)
    ax = axes[0]
    ax.plot(n, curve.scores, "o-", color="#1f77b4")
    if pass_score is not None:
        ax.axhline(pass_score, color="#888", ls="--", label="pass mark")
        ax.legend(loc="lower right", fontsize=8)
    ax.set(title="Score history", xlabel="attempt", ylabel="score (0-100)", ylim=(0, 105))
    ax = axes[1]
    c = curve.cusum
    ax.plot(n, c.s, "o-", color="#d62728")
    ax.axhline(c.h1, color="#b42318", ls="--", label=f"alarm h1={c.h1:.2f}")
    ax.axhline(c.h0, color="#1a7f37", ls="--", label=f"acceptable h0={c.h0:.2f}")
    ax.axhline(0, color="#ccc", lw=0.8)
    ax.set(title=f"CUSUM ({c.status})", xlabel="attempt", ylabel="S_n")
    ax.legend(loc="best", fontsize=8)
    ax = axes[2]
    lc = curve.lc_cusum
    ax.plot(n, lc.s, "o-", color="#9467bd")
    ax.axhline(lc.h, color="#1a7f37", ls="--", label=f"competence h={lc.h:.2f}")
    ax.set(
        title="LC-CUSUM" + (f" (competent at {lc.competent_at + 1})" if lc.competent else ""),
        xlabel="attempt",
        ylabel="S_t",
    )
    ax.legend(loc="best", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _trend_figure(records: Records, attempt_ids: list[str], access: AccessContext | None) -> Any:
    plt = _pyplot()
    wanted = set(attempt_ids)
    by_metric: dict[str, dict[str, float]] = {}
    units: dict[str, str] = {}
    for aid, name, value, unit in records.metric_rows(access=access):
        if aid in wanted and name in TREND_METRICS and value is not None:
            by_metric.setdefault(name, {})[aid] = value
            units[name] = unit
    names = [m for m in TREND_METRICS if m in by_metric]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        xs = [i + 1 for i, a in enumerate(attempt_ids) if a in by_metric[name]]
        ys = [by_metric[name][a] for a in attempt_ids if a in by_metric[name]]
        ax.plot(xs, ys, "o-", color="#2ca02c")
        ax.set(title=name, xlabel="attempt", ylabel=units[name])
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _pass_score(records: Records, attempt_id: str, access: AccessContext | None) -> float | None:
    rec = records.get_attempt(attempt_id, access=access, with_log=False)
    v = rec.result.get("pass_score")
    return float(v) if v is not None else None


def _page(title: str, body: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + f"\n<p><small>surgsim report, made {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        "People are named by opaque id only.</small></p>\n</body></html>\n"
    )


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def trainee_report(
    records: Records,
    trainee_id: str,
    html_path: str | Path,
    *,
    pdf_path: str | Path | None = None,
    access: AccessContext | None = None,
) -> dict[str, Any]:
    """Write a trainee's report (HTML, and PDF when ``pdf_path`` is given).

    Returns
    -------
    dict
        ``{"html": path, "pdf": path or None, "scenarios": {id: {"attempts", "cusum",
        "lc_cusum_competent_at"}}}`` for the caller to print.

    Raises
    ------
    RecordsError
        No attempts of that trainee that ``access`` may read, or an output folder
        that does not exist.
    """
    out_html = _checked(html_path)
    out_pdf = _checked(pdf_path) if pdf_path is not None else None
    attempts = [a for a in records.list_attempts(trainee_id, access=access)]
    if not attempts:
        raise RecordsError(
            f"no attempts of {trainee_id!r} that you may read in {records.masked_url}; "
            "nothing to report"
        )
    plt = _pyplot()
    figures: list[Any] = []
    body = [f"<h1>Trainee report: {html.escape(trainee_id)}</h1>"]
    summary: dict[str, Any] = {}
    scenarios = sorted({a.scenario_id for a in attempts})
    for sid in scenarios:
        curve = learning_curve(records, trainee_id, sid, access=access)
        rows = [a for a in attempts if a.scenario_id == sid]
        body.append(f"<h2>Scenario {html.escape(sid)}</h2>")
        summary[sid] = {
            "attempts": len(rows),
            "cusum": curve.cusum.status,
            "lc_cusum_competent_at": curve.lc_cusum.competent_at,
        }
        if curve.attempt_ids:
            fig = _curve_figure(curve, _pass_score(records, curve.attempt_ids[-1], access))
            figures.append(fig)
            body.append(f'<img alt="learning curve of {html.escape(sid)}" src="{_png(fig)}">')
            body.append(
                f"<p>CUSUM: <b>{curve.cusum.status}</b> (p0=0.2, p1=0.3). LC-CUSUM: "
                + (
                    f"<b>competent</b> from attempt {curve.lc_cusum.competent_at + 1}"
                    if curve.lc_cusum.competent
                    else "<b>not yet competent</b>"
                )
                + f" (h={curve.lc_cusum.h:.2f}).</p>"
            )
            trend = _trend_figure(records, curve.attempt_ids, access)
            if trend is not None:
                figures.append(trend)
                body.append(f'<h3>Metric trends</h3><img alt="metric trends" src="{_png(trend)}">')
        body.append(
            "<table><tr><th>#</th><th>started (UTC)</th><th>mode</th><th>status</th>"
            "<th>score</th><th>result</th><th>released</th></tr>"
        )
        for i, a in enumerate(rows, 1):
            cls = "pass" if a.passed else "fail"
            body.append(
                f"<tr><td>{i}</td><td>{a.started_at:%Y-%m-%d %H:%M}</td><td>{a.mode}</td>"
                f"<td>{a.status}</td><td>{_fmt(a.score)}</td>"
                f"<td class=\"{cls}\">{'pass' if a.passed else 'fail'}</td>"
                f"<td>{'yes' if a.released else 'no'}</td></tr>"
            )
        body.append("</table>")
    last_debrief = None
    for a in reversed(attempts):
        rec = records.get_attempt(a.id, access=access, with_log=False)
        if rec.debrief_notes:
            last_debrief = rec
            break
    body.append("<h2>Last debrief</h2>")
    if last_debrief is not None:
        body.append(
            f"<p>Attempt of {last_debrief.started_at:%Y-%m-%d %H:%M} UTC on "
            f"{html.escape(last_debrief.scenario_id)}:</p>"
            f"<div class=\"debrief\">{html.escape(last_debrief.debrief_notes)}</div>"
        )
    else:
        body.append("<p>No debrief notes yet.</p>")
    out_html.write_text(_page(f"Trainee report {trainee_id}", body), encoding="utf-8")
    if out_pdf is not None:
        _write_pdf(
            out_pdf,
            f"Trainee report: {trainee_id}",
            [f"{sid}: {s['attempts']} attempt(s), CUSUM {s['cusum']}, LC-CUSUM "
             + ("competent" if s["lc_cusum_competent_at"] is not None else "not yet competent")
             for sid, s in summary.items()]
            + ["", "Last debrief:", last_debrief.debrief_notes if last_debrief else "none"],
            figures,
        )
    for fig in figures:
        plt.close(fig)
    return {"html": out_html, "pdf": out_pdf, "scenarios": summary}


def cohort_report(
    records: Records,
    cohort_id: str,
    html_path: str | Path,
    *,
    pdf_path: str | Path | None = None,
    access: AccessContext | None = None,
) -> dict[str, Any]:
    """Write a cohort's report: trainees by scenarios with pass rates and CUSUM status.

    Returns
    -------
    dict
        ``{"html", "pdf", "rows": [{"trainee_id", "scenario_id", "attempts",
        "pass_rate", "last_score", "cusum", "lc_cusum"}]}``.
    """
    out_html = _checked(html_path)
    out_pdf = _checked(pdf_path) if pdf_path is not None else None
    trainees = records.cohort_members(cohort_id, access=access)
    rows: list[dict[str, Any]] = []
    for tid in trainees:
        attempts = records.list_attempts(tid, access=access)
        for sid in sorted({a.scenario_id for a in attempts}):
            curve = learning_curve(records, tid, sid, access=access)
            n = len(curve.attempt_ids)
            rows.append(
                {
                    "trainee_id": tid,
                    "scenario_id": sid,
                    "attempts": n,
                    "pass_rate": float(1 - curve.failures.mean()) if n else None,
                    "last_score": float(curve.scores[-1]) if n else None,
                    "cusum": curve.cusum.status,
                    "lc_cusum": "competent" if curve.lc_cusum.competent else "not yet",
                }
            )
    plt = _pyplot()
    figures = []
    body = [f"<h1>Cohort report: {html.escape(cohort_id)}</h1>",
            f"<p>{len(trainees)} trainee(s).</p>"]
    if rows:
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(rows) + 2), 3))
        labels = [f"{r['trainee_id']}\n{r['scenario_id']}" for r in rows]
        ax.bar(range(len(rows)), [100 * (r["pass_rate"] or 0) for r in rows], color="#1f77b4")
        ax.set_xticks(range(len(rows)), labels, fontsize=7)
        ax.set(ylabel="pass rate (%)", ylim=(0, 100), title="Pass rate by trainee and scenario")
        fig.tight_layout()
        figures.append(fig)
        body.append(f'<img alt="pass rates" src="{_png(fig)}">')
    body.append(
        "<table><tr><th>trainee</th><th>scenario</th><th>attempts</th><th>pass rate</th>"
        "<th>last score</th><th>CUSUM</th><th>LC-CUSUM</th></tr>"
    )
    for r in rows:
        rate = _rate(r["pass_rate"])
        body.append(
            f"<tr><td>{html.escape(r['trainee_id'])}</td><td>{html.escape(r['scenario_id'])}</td>"
            f"<td>{r['attempts']}</td><td>{rate}</td><td>{_fmt(r['last_score'])}</td>"
            f"<td>{r['cusum']}</td><td>{r['lc_cusum']}</td></tr>"
        )
    body.append("</table>")
    out_html.write_text(_page(f"Cohort report {cohort_id}", body), encoding="utf-8")
    if out_pdf is not None:
        _write_pdf(
            out_pdf,
            f"Cohort report: {cohort_id}",
            [
                f"{r['trainee_id']} / {r['scenario_id']}: {r['attempts']} attempt(s), "
                f"pass rate {_rate(r['pass_rate'])}, CUSUM {r['cusum']}, LC-CUSUM {r['lc_cusum']}"
                for r in rows
            ],
            figures,
        )
    for fig in figures:
        plt.close(fig)
    return {"html": out_html, "pdf": out_pdf, "rows": rows}


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f} %"


def _checked(path: str | Path) -> Path:
    p = Path(path)
    if not p.parent.is_dir():
        raise RecordsError(f"cannot write {p}: the folder {p.parent} does not exist")
    return p


def _write_pdf(path: Path, title: str, lines: Iterable[str], figures: list[Any]) -> None:
    """A text page (title and summary lines) followed by the figures, one per page."""
    from matplotlib.backends.backend_pdf import PdfPages

    plt = _pyplot()
    with PdfPages(path) as pdf:
        page = plt.figure(figsize=(8.27, 11.69))  # A4
        page.text(0.08, 0.95, title, fontsize=16, weight="bold", va="top")
        y = 0.9
        for line in lines:
            for chunk in _wrap(str(line), 95):
                page.text(0.08, y, chunk, fontsize=9, va="top", family="monospace")
                y -= 0.018
                if y < 0.05:
                    break
        pdf.savefig(page)
        plt.close(page)
        for fig in figures:
            pdf.savefig(fig)
        info = pdf.infodict()
        info["Title"] = title
        info["Creator"] = "surgsim"


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    out: list[str] = []
    for para in text.splitlines() or [""]:
        out += textwrap.wrap(para, width) or [""]
    return out
