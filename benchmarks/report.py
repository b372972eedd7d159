"""The table (Markdown), the targets of issue 9, and the plot, from one run's JSON data."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .systems import ARRAY_BYTES

Data = dict[str, Any]


@dataclass
class Metric:
    key: str
    title: str
    unit: str
    scale: float = 1.0  # seconds → unit
    rate: bool = False  # a throughput: higher is better


METRICS = [
    Metric("M1", "no-op cell, all ranks", "ms", 1e3),
    Metric("M2", "print(rank), last output", "ms", 1e3),
    Metric("M3", "stdout flood 10 MB/rank, delivered", "MB/s", rate=True),
    Metric("M4", "push 16 MiB to all ranks", "MB/s", rate=True),
    Metric("M5", "pull 16 MiB from each rank", "MB/s", rate=True),
    Metric("M6", "start to first cell done", "s"),
    Metric("M7", "CPU per idle rank (mean / max)", "%"),
    Metric("M8", "interrupt busy loop → idle", "ms", 1e3),
]
SYSTEM_ORDER = ("hpckernel", "ipykernel", "ipyparallel")


def entry(data: Data, system: str, n: int, key: str) -> dict[str, Any] | None:
    value = data["results"].get(system, {}).get(str(n), {}).get(key)
    return value if isinstance(value, dict) and "error" not in value else None


def figures(metric: Metric, n: int, e: dict[str, Any]) -> tuple[float, float, float]:
    """(median, p95, cost) in display units; cost is lower-is-better for ratios."""
    if metric.key == "M3":
        rate = e["delivered_MB_per_s"]
        return rate, math.nan, 1 / rate if rate else math.inf
    if metric.key in ("M4", "M5"):
        mb = n * ARRAY_BYTES / 1e6
        return mb / e["median"], mb / e["p95"], e["median"]
    if metric.key == "M7":
        return e["mean"], e["max"], e["mean"]
    return e["median"] * metric.scale, e["p95"] * metric.scale, e["median"]


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "—"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or math.isinf(a) or math.isinf(b):
        return "—"
    return f"{a / b:.2f}x"


def ipykernel_cost(data: Data, metric: Metric, n: int) -> float | None:
    """What hpckernel's cost is divided by: for M1/M2 the ipykernel cells interleaved with
    hpckernel's at this N (same seconds, same noise), else ipykernel's own N=1 block."""
    hpc = entry(data, "hpckernel", n, metric.key)
    if hpc is not None and "ipk_paired" in hpc:
        return float(hpc["ipk_paired"]["median"])
    ipk1 = entry(data, "ipykernel", 1, metric.key)
    return figures(metric, 1, ipk1)[2] if ipk1 is not None else None


def _note(metric: Metric, system: str, e: dict[str, Any]) -> str:
    short = {"hpckernel": "hpc", "ipyparallel": "ipp", "ipykernel": "ipk"}[system]
    if metric.key in ("M1", "M2") and system == "hpckernel" and "ipk_paired" in e:
        note = f"ipk interleaved {e['ipk_paired']['median'] * 1e3:.1f} ms"
        if metric.key == "M1":
            note += (f"; {short} CPU/cell: hub {e['hub_cpu_ms_per_cell']:.1f} ms, "
                     f"rank {e['rank_cpu_ms_per_cell']:.1f} ms")
        return note
    if metric.key == "M1" and system != "ipykernel":
        return (f"{short} CPU/cell: hub {e['hub_cpu_ms_per_cell']:.1f} ms, "
                f"rank {e['rank_cpu_ms_per_cell']:.1f} ms")
    if metric.key == "M2" and not e.get("complete", True):
        return f"{short}: some ranks' output missing"
    if metric.key == "M3":
        return (f"{short}: {e['delivered'] / 1e6:.1f} of {e['produced'] / 1e6:.0f} MB in "
                f"{e['seconds']:.1f} s, dropped {e['announced_dropped'] / 1e6:.1f} MB "
                f"{'with' if e['notice'] else 'without'} notice, "
                f"unannounced loss {e['unannounced_lost'] / 1e6:.1f} MB")
    if metric.key == "M6" and e.get("ready"):
        what = "engines registered" if system == "ipyparallel" else "kernel_info answered"
        return f"{short} {what} at {statistics.median(e['ready']):.2f} s"
    if metric.key == "M7" and e.get("hub_pct"):
        return f"{short} hub/controller {e['hub_pct'][0]:.2f} %"
    return ""


def table(data: Data) -> str:
    cpus = data["meta"].get("cpus") or 0
    head = ("| metric | N | hpckernel median | p95 | ipykernel median | p95 | ipyparallel median"
            " | p95 | hpc ÷ ipk(N=1) | ipp ÷ hpc | notes |")
    rows = [head, "|" + "---|" * 11]
    ns = sorted({int(n) for s in data["results"].values() for n in s})
    for metric in METRICS:
        for n in ns:
            cells: dict[str, tuple[float, float, float]] = {}
            notes = []
            for system in SYSTEM_ORDER:
                e = entry(data, system, n, metric.key)
                if e is not None:
                    cells[system] = figures(metric, n, e)
                    note = _note(metric, system, e)
                    if note:
                        notes.append(note)
                err = data["results"].get(system, {}).get(str(n), {}).get(metric.key)
                if isinstance(err, dict) and "error" in err:
                    notes.append(f"{system} failed: {err['error'][:60]}")
            if not cells:
                continue
            ipk_cost = ipykernel_cost(data, metric, n)
            hpc = cells.get("hpckernel")
            ipp = cells.get("ipyparallel")
            # CPU % (M7) is too coarse (10 ms clock ticks) for ratios; M3 is rate-limited.
            comparable = metric.key in ("M1", "M2", "M6", "M8")
            row = [f"{metric.key} {metric.title} ({metric.unit})",
                   f"{n}{'*' if n > cpus else ''}"]
            for system in SYSTEM_ORDER:
                med, p95, _ = cells.get(system, (math.nan, math.nan, 0))
                row += [_fmt(med), _fmt(p95)]
            row.append(_ratio(hpc[2], ipk_cost) if hpc and comparable else "—")
            row.append(_ratio(ipp[2], hpc[2]) if hpc and ipp and metric.key not in ("M3", "M7")
                       else "—")
            row.append("; ".join(notes))
            rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def targets(data: Data) -> list[tuple[str, str, str]]:
    """(target, measured, MET / MISSED / not measured) for each target of issue 9."""
    out: list[tuple[str, str, str]] = []

    def cost(system: str, n: int, key: str) -> float | None:
        e = entry(data, system, n, key)
        metric = next(m for m in METRICS if m.key == key)
        return figures(metric, n, e)[2] if e is not None else None

    def check(name: str, value: float | None, ok: Any, shown: str) -> None:
        if value is None:
            out.append((name, "—", "not measured"))
        else:
            out.append((name, shown, "MET" if ok(value) else "MISSED"))

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    m1 = METRICS[0]
    r = ratio(cost("hpckernel", 1, "M1"), ipykernel_cost(data, m1, 1))
    check("M1 N=1 within 1.5x of ipykernel", r, lambda v: v <= 1.5, f"{r or 0:.2f}x")
    r = ratio(cost("ipyparallel", 16, "M1"), cost("hpckernel", 16, "M1"))
    check("M1 N=16 ≥5x faster than ipyparallel", r, lambda v: v >= 5, f"{r or 0:.2f}x")
    r = ratio(cost("hpckernel", 16, "M1"), ipykernel_cost(data, m1, 16))
    check("M1 N=16 within 3x of ipykernel N=1", r, lambda v: v <= 3, f"{r or 0:.2f}x")
    fanin = data.get("fanin") or {}
    via, direct = (fanin.get(mode, {}).get("median") for mode in ("agents", "direct"))
    r = ratio(via, direct)
    # Within 10 %: the two kernels' medians move that much from run to run on 2 shared cores.
    check(f"M1 N={fanin.get('n', 16)} on one node through an agent no slower than direct",
          r, lambda v: v <= 1.1, f"{r or 0:.2f}x ({(via or 0) * 1e3:.1f} vs "
          f"{(direct or 0) * 1e3:.1f} ms)")
    m5 = entry(data, "hpckernel", 4, "M5")
    rate = 4 * ARRAY_BYTES / m5["median"] / 1e6 if m5 else None
    check("M5 N=4 ≥1 GB/s", rate, lambda v: v >= 1000, f"{rate or 0:.0f} MB/s")
    r = ratio(cost("ipyparallel", 4, "M5"), cost("hpckernel", 4, "M5"))
    check("M5 N=4 ≥5x ipyparallel", r, lambda v: v >= 5, f"{r or 0:.2f}x")
    m6 = cost("hpckernel", 16, "M6")
    check("M6 16 local ranks ready ≤2 s", m6, lambda v: v <= 2, f"{m6 or 0:.2f} s")
    r = ratio(cost("ipyparallel", 16, "M6"), m6)
    check("M6 N=16 ≥6x faster than ipyparallel start", r, lambda v: v >= 6, f"{r or 0:.2f}x")
    hpc = data["results"].get("hpckernel", {})
    floods = [e["M3"] for e in hpc.values() if isinstance(e.get("M3"), dict)
              and "error" not in e["M3"]]
    lost = max((f["unannounced_lost"] / f["produced"] for f in floods), default=None)
    noticed = all(f["notice"] for f in floods if f["delivered"] < f["produced"])
    check("M3 nothing lost without a notice", lost,
          lambda v: v < 0.01 and noticed, f"max unannounced {100 * (lost or 0):.2f} %, "
          f"notice {'always' if noticed else 'MISSING'} when dropped")
    idle = [e["M7"]["max"] for e in hpc.values() if isinstance(e.get("M7"), dict)
            and "error" not in e["M7"]]
    worst = max(idle, default=None)
    check("M7 <1 % CPU per idle rank", worst, lambda v: v < 1, f"max {worst or 0:.2f} %")
    stops = [e["M8"]["median"] for e in hpc.values() if isinstance(e.get("M8"), dict)
             and "error" not in e["M8"]]
    slowest = max(stops, default=None)
    check("M8 interrupt <1 s", slowest, lambda v: v < 1, f"max median {slowest or 0:.2f} s")
    return out


def simulated(data: Data) -> str:
    """The table of ``simranks.measure_all``'s records (older results, keyed by N, are not
    shown)."""
    sim = data.get("simulated") or []
    if not isinstance(sim, list) or not sim:
        return ""
    return sim_table(sim)


def sim_table(records: list[dict[str, Any]]) -> str:
    rows = ["| ranks | nodes | mode | no-op hub CPU ms | no-op wall ms | idle hub CPU % "
            "| print(rank) lines to client | print(rank) wall ms | hub RSS MB |",
            "|" + "---|" * 9]
    for e in records:
        if "error" in e:
            rows.append(f"| {e['ranks']} | {e['nodes']} | {e['mode']} | failed: "
                        f"{e['error'][:80]} |")
            continue
        rows.append(f"| {e['ranks']} | {e['nodes'] if e['mode'] != 'direct' else '-'} | "
                    f"{e['mode']} | {e['hub_cpu_ms_noop']:.1f} | {e['wall_ms_noop']:.1f} | "
                    f"{e['idle_hub_cpu_pct']:.1f} | {e['print_lines_to_client']} | "
                    f"{e['print_wall_ms']:.1f} | {e['hub_rss_mb']:.0f} |")
    return "\n".join(rows)


def m1_table(data: Data) -> str:
    """``benchmarks.run --only m1``: M1 per N, each system's median and CPU per cell, and
    the two ratios of issue 20 (hpckernel ÷ the ipykernel cells interleaved with it, and
    ipyparallel ÷ hpckernel)."""
    meta = data["meta"]
    rows = [f"M1 no-op cell, {meta['date']}, commit {meta['commit']}, "
            f"{meta['plan']['noop_reps']} cells per system and N, interleaved; load "
            f"{meta['loadavg_start'][0]:.2f} → {meta.get('loadavg_end', [math.nan])[0]:.2f}",
            "", "| N | hpckernel ms | ipykernel ms (interleaved) | ipyparallel ms | hpc ÷ ipk "
            "| ipp ÷ hpc | hpc CPU/cell: hub, rank ms | ipk CPU/cell ms | ipp CPU/cell: "
            "controller, engine ms |", "|" + "---|" * 9]
    for n in sorted({int(n) for s in data["results"].values() for n in s}):
        hpc = entry(data, "hpckernel", n, "M1")
        ipp = entry(data, "ipyparallel", n, "M1")
        ipk = hpc.get("ipk_paired") if hpc is not None else None

        def ms(e: dict[str, Any] | None) -> str:
            return _fmt(e["median"] * 1e3) if e is not None else "—"

        def med(e: dict[str, Any] | None) -> float | None:
            return float(e["median"]) if e is not None else None

        def cpu(e: dict[str, Any] | None) -> str:
            return (f"{e['hub_cpu_ms_per_cell']:.2f}, {e['rank_cpu_ms_per_cell']:.2f}"
                    if e is not None else "—")

        rows.append(" | ".join([
            f"| {n}", ms(hpc), ms(ipk), ms(ipp),
            _ratio(med(hpc), med(ipk)), _ratio(med(ipp), med(hpc)), cpu(hpc),
            f"{ipk['cpu_ms_per_cell']:.2f}" if ipk and "cpu_ms_per_cell" in ipk else "—",
            cpu(ipp)]) + " |")
    return "\n".join(rows)


def render(data: Data) -> str:
    meta = data["meta"]
    lines = [f"hpckernel benchmarks, {meta['date']}, {meta['cpus']} CPUs, commit "
             f"{meta['commit']}, load {meta['loadavg_start'][0]:.2f} → "
             f"{meta.get('loadavg_end', [math.nan])[0]:.2f}", "",
             table(data), "",
             "`*` more ranks than CPUs (oversubscribed). Ratios are of cost (time, or "
             "1/throughput, or CPU): `hpc ÷ ipk` < 1 means hpckernel is cheaper than "
             "ipykernel at N=1 (for M1/M2: than the ipykernel cells interleaved with "
             "hpckernel's, one for one, so that the machine's noise falls on both), "
             "`ipp ÷ hpc` > 1 means hpckernel is faster than ipyparallel. "
             "M4/M5 time the `ranks.push`/`ranks.pull` call inside the hub and "
             "`view.push`/`view.pull` in the client. p95 of a throughput is the rate at the "
             "p95 time; of M7 it is the busiest rank.", "", "Targets:"]
    lines += [f"- {status}: {name} — {shown}" for name, shown, status in targets(data)]
    if data.get("fanin"):
        from .fanin import table as fanin_table

        lines += ["", fanin_table(data["fanin"])]
    sim = simulated(data)
    if sim:
        lines += ["", "Hub cost with simulated ranks (benchmarks/simranks.py):", "", sim]
    return "\n".join(lines)


def plot(data: Data, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    shown = [m for m in METRICS if m.key in ("M1", "M2", "M4", "M5", "M6", "M8")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    for ax, metric in zip(axes.flat, shown, strict=True):
        for system, style in zip(SYSTEM_ORDER, ("o-", "s--", "^-"), strict=True):
            points = []
            for n in sorted(int(k) for k in data["results"].get(system, {})):
                e = entry(data, system, n, metric.key)
                if e is not None:
                    points.append((n, figures(metric, n, e)[0]))
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            if system == "ipykernel":
                ax.axhline(ys[0], color="gray", ls=":", label="ipykernel (N=1)")
            else:
                ax.plot(xs, ys, style, label=system)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
            lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.set_xlabel("ranks / engines N")
        ax.set_ylabel(metric.unit)
        ax.set_title(f"{metric.key} {metric.title}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"hpckernel vs ipykernel vs ipyparallel — {data['meta']['date']}, "
                 f"{data['meta']['cpus']} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
