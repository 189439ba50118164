"""The drift report as one self-contained HTML page: per feature, reference vs current histograms
(inline SVG, no scripts, no network) and the test's score, drifted features first."""

from __future__ import annotations

import html
from typing import Any

WIDTH, HEIGHT, PAD = 360, 120, 18


def _bars(plot: dict[str, Any]) -> str:
    ref = [float(x or 0.0) for x in plot.get("reference") or []]
    cur = [float(x or 0.0) for x in plot.get("current") or []]
    labels = [str(x) for x in plot.get("labels") or []]
    n = max(len(ref), len(cur))
    if n == 0:
        return ""
    top = max([*ref, *cur, 1e-9])
    slot = (WIDTH - 2 * PAD) / n
    parts = [f'<svg width="{WIDTH}" height="{HEIGHT + 30}" role="img">']
    for i in range(n):
        x = PAD + i * slot
        for j, (values, colour) in enumerate(((ref, "#8aa1c1"), (cur, "#e4572e"))):
            v = values[i] if i < len(values) else 0.0
            h = (HEIGHT - PAD) * v / top
            label = html.escape(labels[i] if i < len(labels) else str(i))
            parts.append(f'<rect x="{x + j * slot / 2:.1f}" y="{HEIGHT - h:.1f}" width="{slot / 2 - 1:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{label}: {v:.3f}</title></rect>')
    parts.append(f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH - PAD}" y2="{HEIGHT}" stroke="#333"/>')
    parts.append(f'<text x="{PAD}" y="{HEIGHT + 14}" font-size="10">{html.escape(labels[0] if labels else "")}</text>')
    parts.append(f'<text x="{WIDTH - PAD}" y="{HEIGHT + 14}" font-size="10" text-anchor="end">'
                 f'{html.escape(labels[-1] if labels else "")}</text></svg>')
    return "".join(parts)


def render(doc: dict[str, Any], plots: dict[str, dict[str, Any]]) -> str:
    """The HTML page of a drift report document (``roost.workers.drift``)."""
    features = sorted(doc.get("features") or [], key=lambda f: (f.get("drifted") is not True, f.get("name", "")))
    verdict = {True: "drift detected", False: "no drift", None: "not enough data"}[doc.get("driftDetected")]
    share = doc.get("driftedShare")
    rows = []
    for f in features:
        score = f.get("pValue") if f.get("pValue") is not None else f.get("statistic")
        status = {True: '<b style="color:#c0392b">drifted</b>', False: "ok", None: "no verdict"}[f.get("drifted")]
        score_text = "—" if score is None else f"{score:.4g}"
        rows.append(
            f"<tr><td><b>{html.escape(str(f.get('name')))}</b><br>{status}</td>"
            f"<td>{html.escape(str(f.get('method')))}<br>score {score_text} (bound {f.get('threshold')})"
            f"<br>{f.get('samples')} values</td><td>{_bars(plots.get(str(f.get('name')), {}))}</td></tr>")
    share_text = "—" if share is None else f"{share:.0%}"
    ref = doc.get("reference") or {}
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift report — {html.escape(str(doc.get('deployment')))}</title>
<style>body{{font-family:sans-serif;margin:2em}}td{{padding:6px 12px;vertical-align:top;border-bottom:1px solid #ddd}}
.key span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}}</style></head><body>
<h1>Drift report: {html.escape(str(doc.get('deployment')))} ({html.escape(str(doc.get('modelVersion')))})</h1>
<p><b>{verdict}</b> — drifted share {share_text} (threshold {doc.get('shareThreshold')}),
correction {html.escape(str(doc.get('correction')))}, {doc.get('rows')} rows in the window,
checked at {html.escape(str(doc.get('checkTime')))}.</p>
<p>Reference: Dataset {html.escape(str(ref.get('name')))} {html.escape(str(ref.get('digest')))}</p>
<p class="key"><span style="background:#8aa1c1"></span>reference <span style="background:#e4572e"></span>current</p>
<table>{''.join(rows)}</table></body></html>
"""
