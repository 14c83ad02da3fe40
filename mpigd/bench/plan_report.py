"""The outputs of ``mpigd plan``: a table, JSON, CSV and a PNG, each labelled as a MODEL with its
parameters and where they came from (see :mod:`mpigd.bench.plan` for the formulas)."""

from __future__ import annotations

import csv
from typing import Any

from mpigd.bench.plan import STRATEGIES
from mpigd.outputs import json_text

LABEL = "MODEL (projected from the alpha-beta-gamma cost model and a compute rate; not measured)"
CSV_FIELDS = ("kind", "nodes", "ranks", "rows_per_rank", "compute_s", *(f"{s}_s" for s in STRATEGIES), "best",
              "allreduce_s", "step_s", "comm_fraction", "speedup", "efficiency", "mode", "model", "bytes",
              "rate_rows_per_s", "alpha_s", "beta_s_per_byte", "gamma_s_per_byte", "intra_alpha_s",
              "intra_beta_s_per_byte")


def describe(plan: dict[str, Any]) -> str:
    """The parameters as ``#`` lines: what the table above them is a model of, and from what."""
    p, net, intra = plan["parameters"], plan["parameters"]["network"], plan["parameters"]["intra_node"]
    # Name the calibration once; each parameter then says "calibration" or the option that set it.
    s = {k: "calibration" if v == plan["sources"]["calibration"] else v for k, v in plan["sources"].items()}
    lines = [f"# {LABEL}",
             f"# calibration: {plan['sources']['calibration']}",
             f"# {plan['mode']} scaling, {plan['model']} ({plan['n_params']} parameters), {plan['rows']:,} rows"
             f"{' per rank' if plan['mode'] == 'weak' else ''} x {plan['features']} features, {plan['dtype']}; "
             f"allreduce of {plan['bytes']:,} bytes per step; {plan['ranks_per_node']} rank(s) per node",
             f"# between nodes: alpha {net['alpha_s'] * 1e6:.3g} us [{s['alpha']}]",
             f"#                beta {net['beta_s_per_byte'] * 1e9:.4g} ns/B = {_gbps(net['beta_s_per_byte'])} "
             f"[{s['beta']}]",
             f"# gamma           {p['gamma_s_per_byte'] * 1e9:.4g} ns/B [{s['gamma']}]"]
    if plan["ranks_per_node"] > 1:
        lines.append(f"# inside a node: alpha {intra['alpha_s'] * 1e6:.3g} us, beta {intra['beta_s_per_byte'] * 1e9:.4g}"
                     f" ns/B [calibration]; hierarchical: reduce, allreduce among nodes, broadcast")
    lines.append(f"# compute         {p['rate_rows_per_s']:.4g} rows/s per rank [{s['rate']}]")
    half = plan["below_half_efficiency_nodes"]
    lines.append(f"# efficiency falls below 50% at {half} nodes" if half else
                 "# efficiency stays at or above 50% up to the largest node count")
    return "\n".join(lines)


def _gbps(beta: float) -> str:
    return f"{1e-9 / beta:.3g} GB/s" if beta > 0 else "inf GB/s"


def table(plan: dict[str, Any]) -> str:
    """The records as a fixed-width table under :func:`describe`'s lines (times in ms)."""
    lines = [describe(plan),
             f"{'nodes':>6} {'ranks':>6} {'rows/rank':>11} {'compute ms':>11} "
             + " ".join(f"{s + ' ms':>10}" for s in STRATEGIES)
             + f" {'best':>5} {'step ms':>10} {'comm %':>7} {'speedup':>8} {'effic.':>7}"]
    for r in plan["records"]:
        lines.append(f"{r['nodes']:>6} {r['ranks']:>6} {r['rows_per_rank']:>11.4g} {r['compute_s'] * 1e3:>11.4g} "
                     + " ".join(f"{r[s + '_s'] * 1e3:>10.4g}" for s in STRATEGIES)
                     + f" {r['best']:>5} {r['step_s'] * 1e3:>10.4g} {r['comm_fraction'] * 100:>7.1f} "
                       f"{r['speedup']:>8.4g} {r['efficiency']:>7.3f}")
    return "\n".join(lines)


def write_json(path: str, plan: dict[str, Any]) -> None:
    """The whole plan: ``kind: "model"``, the label, parameters, their sources and the records."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json_text({"kind": "model", "label": LABEL, **plan}, indent=2) + "\n")


def write_csv(path: str, plan: dict[str, Any]) -> None:
    """One row per node count; ``kind`` is ``model`` and every row repeats the parameters, so that a
    row read alone still says it is a projection and from what."""
    p = plan["parameters"]
    constant = {"kind": "model", "mode": plan["mode"], "model": plan["model"], "bytes": plan["bytes"],
                "rate_rows_per_s": p["rate_rows_per_s"], "alpha_s": p["network"]["alpha_s"],
                "beta_s_per_byte": p["network"]["beta_s_per_byte"], "gamma_s_per_byte": p["gamma_s_per_byte"],
                "intra_alpha_s": p["intra_node"]["alpha_s"], "intra_beta_s_per_byte": p["intra_node"]["beta_s_per_byte"]}
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in plan["records"]:
            writer.writerow({**constant, **r})


def plot(path: str, plan: dict[str, Any]) -> None:
    """Time per step (compute and each strategy), speedup against ideal, and efficiency, against
    nodes on log axes; the title says MODEL and names the parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = plan["records"]
    nodes = [r["nodes"] for r in records]
    p, net = plan["parameters"], plan["parameters"]["network"]
    figure, (ax_time, ax_speed, ax_eff) = plt.subplots(1, 3, figsize=(16, 5))
    ax_time.plot(nodes, [r["compute_s"] * 1e3 for r in records], "o-", color="tab:green", label="compute")
    many = [r for r in records if r["nodes"] > 1]  # one node sends nothing: 0 has no place on a log axis
    for strategy, style in zip(STRATEGIES, ("s--", "^--")):
        ax_time.plot([r["nodes"] for r in many], [r[f"{strategy}_s"] * 1e3 for r in many], style,
                     label=f"allreduce: {strategy}")
    ax_time.plot(nodes, [r["step_s"] * 1e3 for r in records], "k-", linewidth=2, label="step (compute + best)")
    ax_time.set(xscale="log", yscale="log", xlabel="nodes", ylabel="ms per step", title="time per step")
    ax_time.legend(fontsize=8)
    ax_speed.plot(nodes, [r["speedup"] for r in records], "o-", label="modelled")
    ax_speed.plot(nodes, nodes, "k--", label="ideal")
    ax_speed.set(xscale="log", yscale="log", xlabel="nodes", ylabel="speedup vs 1 node", title="speedup")
    ax_speed.legend(fontsize=8)
    ax_eff.plot(nodes, [r["efficiency"] for r in records], "o-")
    ax_eff.axhline(0.5, color="tab:red", linestyle=":", label="50%")
    half = plan["below_half_efficiency_nodes"]
    if half:
        ax_eff.axvline(half, color="tab:red", linestyle=":")
        ax_eff.annotate(f"< 50% from {half} nodes", (half, 0.5), textcoords="offset points", xytext=(6, 8),
                        color="tab:red", fontsize=9)
    for r in records:  # which strategy the step uses, under each point
        ax_eff.annotate(r["best"][0], (r["nodes"], r["efficiency"]), textcoords="offset points", xytext=(0, -12),
                        ha="center", fontsize=7, color="gray")
    ax_eff.set(xscale="log", ylim=(0, 1.1), xlabel="nodes  (r/t: ring or tree wins)", ylabel="efficiency",
               title="parallel efficiency")
    ax_eff.legend(fontsize=8)
    for ax in (ax_time, ax_speed, ax_eff):
        ax.grid(True, which="major", alpha=0.3)
    weak = " per rank" if plan["mode"] == "weak" else ""
    figure.suptitle(
        f"MODEL, not measured: {plan['mode']} scaling, {plan['model']}, {plan['rows']:,} rows{weak} x "
        f"{plan['features']} features, {plan['dtype']}, {plan['bytes']:,} B allreduce, "
        f"{plan['ranks_per_node']} rank(s)/node\n"
        f"alpha {net['alpha_s'] * 1e6:.3g} us, beta 1/({_gbps(net['beta_s_per_byte'])}) "
        f"[{_short(plan['sources']['beta'])}], gamma {p['gamma_s_per_byte'] * 1e9:.3g} ns/B, "
        f"compute {p['rate_rows_per_s']:.3g} rows/s per rank [{_short(plan['sources']['rate'])}]",
        fontsize=10)
    figure.tight_layout()
    # PNG whatever the name says: matplotlib would refuse an unknown extension after the work,
    # and add ".png" to a name without one (the file would then not be where it was asked for).
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)


def _short(source: str) -> str:
    """A source without its parenthesised details, for the plot's title."""
    return source.split(" (", 1)[0]
