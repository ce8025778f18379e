"""Benchmark reports: JSON, CSV, Pareto frontiers in markdown, a recall-QPS plot."""

import csv
import json
import os
import sys

TARGET = 0.92  # the recall the summary compares methods at


def pareto(rows, key):
    """Rows not beaten in both recall and ``key`` (QPS), best recall first."""
    front, best = [], -1.0
    for row in sorted(rows, key=lambda r: (-r["recall"], -r[key])):
        if row[key] > best:
            front.append(row)
            best = row[key]
    return front


def fastest_at(rows, key, target=TARGET):
    """The fastest row reaching ``target`` recall, or None."""
    ok = [r for r in rows if r["recall"] >= target]
    return max(ok, key=lambda r: r[key]) if ok else None


def _methods(rows):
    seen = []
    for r in rows:
        if r["method"] not in seen:
            seen.append(r["method"])
    return seen


def summary_lines(meta, rows):
    lines = [f"## {meta['dataset']}: {meta['n']:,} x {meta['dim']} ({meta['distance']}), "
             f"{meta['queries']} held-out queries, recall@{meta['k']}, single thread", "",
             f"Fastest setting reaching recall >= {TARGET}:", "",
             "| method | single q/s | (recall, setting) | batch q/s | (recall, setting) | build s | index MB |",
             "|---|---|---|---|---|---|---|"]
    for m in _methods(rows):
        mine = [r for r in rows if r["method"] == m]
        cells = []
        for key in ("qps_single", "qps_batch"):
            r = fastest_at(mine, key)
            cells += ([f"{r[key]:,.0f}", f"({r['recall']:.3f}, {json.dumps(r['setting'])})"]
                      if r else ["–", f"(max recall {max(x['recall'] for x in mine):.3f})"])
        info = meta["methods"][m]
        lines.append(f"| {m} | " + " | ".join(cells)
                     + f" | {info['build_seconds']:.1f} | {info['index_bytes'] / 1e6:.1f} |")
    return lines


def write_reports(folder, meta, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    with open(os.path.join(folder, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "setting", "recall", "qps_single", "qps_batch", "build_seconds",
                    "index_bytes"])
        for r in rows:
            w.writerow([r["method"], json.dumps(r["setting"]), f"{r['recall']:.4f}",
                        f"{r['qps_single']:.1f}", f"{r['qps_batch']:.1f}",
                        f"{r['build_seconds']:.2f}", r["index_bytes"]])
    lines = summary_lines(meta, rows)
    for key, title in (("qps_single", "single-query"), ("qps_batch", "batch")):
        lines += ["", f"### Pareto frontier, {title} QPS", "",
                  "| method | recall | q/s | setting |", "|---|---|---|---|"]
        for m in _methods(rows):
            for r in pareto([x for x in rows if x["method"] == m], key):
                lines.append(f"| {m} | {r['recall']:.4f} | {r[key]:,.0f} | {json.dumps(r['setting'])} |")
    with open(os.path.join(folder, "pareto.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    _plot(folder, meta, rows)
    print("\n".join(summary_lines(meta, rows)))
    print(f"\nwrote {folder}/results.json, results.csv, pareto.md, recall_qps.png", file=sys.stderr)


def _plot(folder, meta, rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in zip(axes, ("qps_single", "qps_batch"), ("single query", "batch")):
        for m in _methods(rows):
            front = pareto([r for r in rows if r["method"] == m], key)
            ax.plot([r["recall"] for r in front], [r[key] for r in front], "o-", label=m, ms=3)
        ax.set_yscale("log")
        ax.set_xlabel(f"recall@{meta['k']}")
        ax.set_ylabel("queries per second (log)")
        ax.set_title(f"{meta['dataset']}, {title}, 1 thread")
        ax.grid(True, which="both", alpha=0.3)
        ax.axvline(TARGET, color="grey", ls=":", lw=1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "recall_qps.png"), dpi=110)
    plt.close(fig)
