"""The wiring over training as data and as a self-contained HTML page with a slider over the recorded steps.

:func:`wiring_page_data` turns a :class:`~neuralgraphs.analysis.history.WiringHistory` and the model it
recorded into plain JSON-able data: per wired module its nodes (with a drawing position: the topological
level left to right for a DAG, a circle for a graph with cycles), the candidate edges that were active at
some recorded step (``[source, target]`` in the module's own node numbers), and per recorded step the
positions of its active edges in that list.  :func:`write_wiring_page` writes the page: the graph drawn
as SVG at the step the slider selects, the in- and out-degree distributions of that step, and the edges
swapped between recorded steps.  The page loads nothing from the network (its script and data are
inline).  ``wiring.html#step=K`` opens it at recorded step ``K``.
"""

from __future__ import annotations

import html
import json
import math
import os
from typing import Any, Dict, List, Union

import torch
from torch import Tensor, nn

from .history import WiringHistory, wired_modules

__all__ = ["wiring_page_data", "write_wiring_page", "DRAWN_EDGES_MAX"]

#: A module with more active edges than this is summarised on the page (counts, swaps), not drawn.
DRAWN_EDGES_MAX = 4000

PathLike = Union[str, "os.PathLike[str]"]


def _positions(graph) -> List[List[float]]:
    """``[x, y]`` in ``[0, 1]`` per node: level / max level and rank within the level for a DAG, a circle
    otherwise (cyclic graphs have no levels)."""
    n = graph.num_nodes
    if graph.is_dag:
        level = graph.levels()
        depth = max(int(level.max()), 1)
        pos = [[0.0, 0.0] for _ in range(n)]
        for nodes in graph.level_sets():
            count = nodes.numel()
            for rank, v in enumerate(nodes.tolist()):
                pos[v] = [int(level[v]) / depth, (rank + 0.5) / count]
        return pos
    return [[0.5 + 0.5 * math.cos(2 * math.pi * v / n), 0.5 + 0.5 * math.sin(2 * math.pi * v / n)]
            for v in range(n)]


def wiring_page_data(model: nn.Module, history: WiringHistory, title: str = "wiring") -> Dict[str, Any]:
    """The data of the wiring page: JSON-able, one entry per wired module of ``model``.

    Args:
        model (torch.nn.Module): the model ``history`` recorded (its candidate graphs give the nodes and edges).
        history (WiringHistory): at least one snapshot.
        title (str): the page title. (default: ``"wiring"``)

    Returns:
        dict: ``{"title", "steps": [step per snapshot], "labels": [...], "modules": [{"name", "num_nodes",
        "inputs", "outputs", "positions", "edges": [[src, dst], ...], "active": [[edge positions] per
        snapshot] or None when not drawn, "num_active": [...], "swaps": [...]}]}``; ``swaps[i]`` counts the
        edges that entered between snapshots ``i - 1`` and ``i`` (0 for the first).

    Raises:
        TypeError: if ``model`` or ``history`` has the wrong type.
        ValueError: if ``history`` is empty or was recorded from other modules than ``model``'s.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(history, WiringHistory):
        raise TypeError(f"history: expected a WiringHistory, got {type(history).__name__}")
    if len(history) == 0:
        raise ValueError("history: has no snapshot; record at least one")
    modules = dict(wired_modules(model))
    names = list(history.records.names)
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"history: recorded modules {missing} that the model does not have")
    swaps = [[0] + [s[n] for s in history.swaps(per_module=True)] for n in names]
    counts = history.num_active(per_module=True)
    drawn = [n for n in names if max(c[n] for c in counts) <= DRAWN_EDGES_MAX]
    # one pass over the stored changes, only for the modules that are drawn
    snaps_of: Dict[str, List[Tensor]] = {n: [] for n in drawn}
    if drawn:
        for snap in history.records:
            for n in drawn:
                snaps_of[n].append(snap[n])
    out = []
    for name, module_swaps in zip(names, swaps):
        graph = modules[name].graph
        num_active = [c[name] for c in counts]
        entry: Dict[str, Any] = {
            "name": name or "model", "num_nodes": int(graph.num_nodes),
            "inputs": graph.inputs.tolist(), "outputs": graph.outputs.tolist(),
            "positions": [[round(x, 4), round(y, 4)] for x, y in _positions(graph)],
            "num_candidates": int(graph.num_edges), "num_active": num_active, "swaps": module_swaps,
            "edges": [], "active": None}
        if name in snaps_of:
            snaps = snaps_of[name]
            used = torch.unique(torch.cat(snaps)) if snaps else torch.empty(0, dtype=torch.long)
            entry["edges"] = graph.edge_index[:, used].t().tolist()
            entry["active"] = [torch.searchsorted(used, s).tolist() for s in snaps]
        out.append(entry)
    return {"title": str(title), "steps": list(history.steps),
            "labels": [None if lab is None else str(lab) for lab in history.labels], "modules": out}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font: 14px sans-serif; margin: 1em 2em; color: #222; }
.module { margin: 1em 0 2em; }
svg { border: 1px solid #ddd; background: #fff; }
.edge { stroke: #3465a4; stroke-opacity: 0.45; stroke-width: 1; }
.node { fill: #888; } .node.input { fill: #4e9a06; } .node.output { fill: #cc0000; }
.bar { fill: #75507b; } .bar.now { fill: #f57900; }
#slider { width: 60%; }
.note { color: #666; }
</style></head><body>
<h1>__TITLE__</h1>
<p><label for="slider">Recorded step</label>
<input type="range" id="slider" min="0" max="0" value="0" step="1">
<span id="where"></span></p>
<div id="modules"></div>
<script id="wiring-data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("wiring-data").textContent);
const NS = "http://www.w3.org/2000/svg";
const W = 720, H = 360, PAD = 12;
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function histogram(values) {
  const counts = [];
  for (const v of values) { while (counts.length <= v) counts.push(0); counts[v] += 1; }
  return counts;
}
function bars(svg, counts, cls, width, height, label) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const top = Math.max(1, ...counts), bw = (width - 30) / Math.max(counts.length, 1);
  counts.forEach((c, i) => {
    const h = (height - 30) * c / top;
    el("rect", {class: cls, x: 25 + i * bw, y: height - 15 - h, width: Math.max(bw - 1, 1), height: h,
                "data-degree": i, "data-count": c}, svg);
  });
  const t = el("text", {x: 25, y: 12, "font-size": 11}, svg); t.textContent = label;
  const lo = el("text", {x: 25, y: height - 3, "font-size": 10}, svg); lo.textContent = "0";
  const hi = el("text", {x: width - 5, y: height - 3, "font-size": 10, "text-anchor": "end"}, svg);
  hi.textContent = String(Math.max(counts.length - 1, 0));
}
const panels = DATA.modules.map((m, mi) => {
  const div = document.createElement("div"); div.className = "module";
  const h = document.createElement("h2"); h.textContent = m.name + " (" + m.num_nodes + " nodes, " +
    m.num_candidates + " candidate edges)";
  div.appendChild(h);
  const info = document.createElement("p"); div.appendChild(info);
  const panel = {m: m, info: info};
  if (m.active !== null) {
    const svg = el("svg", {width: W, height: H, id: "graph-" + mi, class: "graph"});
    div.appendChild(svg);
    panel.edges = el("g", {class: "edges"}, svg);
    const inputs = new Set(m.inputs), outputs = new Set(m.outputs);
    const nodes = el("g", {class: "nodes"}, svg);
    m.positions.forEach((p, v) => {
      const cls = "node" + (inputs.has(v) ? " input" : "") + (outputs.has(v) ? " output" : "");
      el("circle", {class: cls, cx: PAD + p[0] * (W - 2 * PAD), cy: PAD + p[1] * (H - 2 * PAD),
                    r: m.num_nodes > 300 ? 1.5 : 3}, nodes);
    });
    div.appendChild(document.createElement("br"));
    panel.indeg = el("svg", {width: 350, height: 120, class: "in-degree"}); div.appendChild(panel.indeg);
    panel.outdeg = el("svg", {width: 350, height: 120, class: "out-degree"}); div.appendChild(panel.outdeg);
  } else {
    const note = document.createElement("p"); note.className = "note";
    note.textContent = "Not drawn: more than __MAX__ active edges; counts and swaps only.";
    div.appendChild(note);
  }
  div.appendChild(document.createElement("br"));
  panel.churn = el("svg", {width: W, height: 120, class: "churn"}); div.appendChild(panel.churn);
  document.getElementById("modules").appendChild(div);
  return panel;
});
function show(i) {
  const step = DATA.steps[i], label = DATA.labels[i];
  document.getElementById("where").textContent = "step " + step + (label ? " (" + label + ")" : "") +
    ", " + (i + 1) + " of " + DATA.steps.length;
  for (const p of panels) {
    const m = p.m;
    p.info.textContent = m.num_active[i] + " active edges; " + m.swaps[i] + " entered since the previous record";
    bars(p.churn, m.swaps, "bar", W, 120, "edges entered per record interval");
    if (p.churn.childNodes[i]) p.churn.childNodes[i].setAttribute("class", "bar now");
    if (m.active === null) continue;
    while (p.edges.firstChild) p.edges.removeChild(p.edges.firstChild);
    const indeg = new Array(m.num_nodes).fill(0), outdeg = new Array(m.num_nodes).fill(0);
    for (const e of m.active[i]) {
      const [u, v] = m.edges[e], a = m.positions[u], b = m.positions[v];
      el("line", {class: "edge", x1: PAD + a[0] * (W - 2 * PAD), y1: PAD + a[1] * (H - 2 * PAD),
                  x2: PAD + b[0] * (W - 2 * PAD), y2: PAD + b[1] * (H - 2 * PAD),
                  "data-source": u, "data-target": v}, p.edges);
      outdeg[u] += 1; indeg[v] += 1;
    }
    bars(p.indeg, histogram(indeg), "bar", 350, 120, "in-degree: nodes per degree");
    bars(p.outdeg, histogram(outdeg), "bar", 350, 120, "out-degree: nodes per degree");
  }
  document.body.setAttribute("data-shown", String(i));
}
const slider = document.getElementById("slider");
slider.max = String(DATA.steps.length - 1);
slider.addEventListener("input", () => show(Number(slider.value)));
const wanted = /step=(\\d+)/.exec(location.hash);
slider.value = wanted ? String(Math.min(Number(wanted[1]), DATA.steps.length - 1)) : slider.max;
slider.dispatchEvent(new Event("input"));
</script></body></html>
"""


def write_wiring_page(data: Dict[str, Any], path: PathLike) -> str:
    """Write the page of :func:`wiring_page_data`'s ``data`` to ``path`` (atomically); returns the path.

    The page opens at the last recorded step (``#step=K`` in the address: at step ``K``).
    """
    if not isinstance(data, dict) or "modules" not in data or "steps" not in data:
        raise TypeError("data: expected the dict of wiring_page_data()")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    # "</" inside a script would end it early; JSON allows the escaped form
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    text = (_PAGE.replace("__TITLE__", html.escape(data.get("title", "wiring")))
            .replace("__MAX__", str(DRAWN_EDGES_MAX)).replace("__DATA__", payload))
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
