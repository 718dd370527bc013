"""Writes a reproduction's analysis as REPORT.md (readable on GitHub), report.json and its
figures."""

from __future__ import annotations

from pathlib import Path

from launcher.report.compare import finite_json
from launcher.reproduce.figures import figure_name, overview_name, plot_overview, plot_scenario
from node.files import write_json_atomic, write_text_atomic

METHOD = (
    "Every figure is computed from the runs' `summary.json` files in `runs/`. A value is the "
    "mean over seeds with Student's t 95% interval in brackets; a speed-up, gain or reduction "
    "is the ratio or difference of the two algorithms' means, with a percentile bootstrap "
    "interval over seeds (paired: the same seed gives both algorithms the same data partition "
    "and initial model; scipy.stats.bootstrap, 9,999 resamples). With three seeds such an "
    "interval excludes no effect exactly when every seed shows the effect: it says how far the "
    "seeds agree, not more. A time to a target is shown only when every seed reached "
    "it; a speed-up is taken at the last target every run of both reached."
)
UNITS = {"speedup": "×", "accuracy_gain": " points", "loss_reduction": "%"}


def fmt(est: dict | None, digits: int = 2, unit: str = "") -> str:
    """`value [low, high]unit`, or the value alone when there is no interval, or —."""
    if not est or est.get("value") is None:
        return "—"
    value = f"{est['value']:.{digits}f}"
    if est.get("low") is None:
        return f"{value}{unit}"
    return f"{value}{unit} [{est['low']:.{digits}f}, {est['high']:.{digits}f}]"


def claims_table(claims: list[dict]) -> list[str]:
    lines = [
        "| claim | the paper | measured here: up to (95% interval) | where | verdict |",
        "|---|---|---|---|---|",
    ]
    for c in claims:
        unit = UNITS[c["kind"]]
        best = c.get("up_to")
        where = f"{best['scenario']} vs {best['versus']}" if best else "—"
        if best and best.get("target") is not None:
            where += f", target {best['target']:g}"
        paper = f"up to {c['paper']:g}{unit}"
        lines.append(f"| {c['text']} | {paper} | {fmt(best, 2, unit)} | {where} | {c['verdict']} |")
    return lines


def claim_details(c: dict) -> list[str]:
    unit = UNITS[c["kind"]]
    lines = [f"**{c['id']}** ({c['kind']}, part `{c['part']}`): {c['verdict']}", ""]
    if not c["rows"]:
        return lines
    relative = c["kind"] == "accuracy_gain"
    extra = " relative (%) |" if relative else ""
    lines += [f"| scenario | versus | seeds | target | measured (95% interval) |{extra} verdict |"]
    lines += ["|---" * (6 + relative) + "|"]
    for r in c["rows"]:
        target = "—" if r.get("target") is None else f"{r['target']:g}"
        extra = f" {fmt(r.get('relative'), 1)} |" if relative else ""
        lines.append(
            f"| {r['scenario']} | {r['versus']} | {len(r['seeds'])} | {target} | "
            f"{fmt(r, 2, unit)} |{extra} {r.get('verdict') or r.get('why', '')} |"
        )
    return lines + [""]


def if_every_seed(stats: dict, target: str, text: str) -> str:
    """`text`, a figure about `target`, if every seed reached it; else how many did."""
    tt = stats["time_to"][target]
    return text if tt["reached"] == tt["of"] else f"reached in {tt['reached']} of {tt['of']}"


def scenario_table(part: dict, scenario: dict) -> list[str]:
    targets = part["targets"]
    head = f"| algorithm | seeds | final {part['metric']} | " + " | ".join(
        f"time to {t} (s)" for t in targets
    )
    lines = [head + " |", "|---" * (3 + len(targets)) + "|"]
    for stats in scenario["algorithms"]:
        if not stats:
            continue
        cells = [if_every_seed(stats, t, fmt(stats["time_to"][t], 1)) for t in targets]
        lines.append(
            f"| {stats['algorithm']} | {len(stats['seeds'])} | {fmt(stats['final'], 3)} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def traffic_table(part: dict, scenario: dict) -> list[str]:
    """MB sent by all nodes in all and to each target, and the metric at the byte budget."""
    budget = scenario.get("budget_mb")
    if budget is None:
        return []  # runs made before the traffic was on their curves
    targets = part["targets"]
    lines = [
        "",
        f"Traffic (MB sent by all nodes: headers, values, indices and scales), and the "
        f"{part['metric']} each had when its nodes had sent {budget:.1f} MB, the least any "
        "algorithm here sent in all (the byte budget):",
        "",
        "| algorithm | MB sent in all | "
        + " | ".join(f"MB to {t}" for t in targets)
        + f" | {part['metric']} at {budget:.1f} MB |",
        "|---" * (3 + len(targets)) + "|",
    ]
    for stats in scenario["algorithms"]:
        if not stats or "at_budget" not in stats:
            continue
        cells = [if_every_seed(stats, t, fmt(stats["mb_to"].get(t), 1)) for t in targets]
        lines.append(
            f"| {stats['algorithm']} | {fmt(stats['mb_total'], 1)} | "
            + " | ".join(cells)
            + f" | {fmt(stats['at_budget'], 3)} |"
        )
    return lines


def speedup_table(reference: str, scenario: dict) -> list[str]:
    if not scenario["speedups"]:
        return []
    lines = [
        "",
        f"{reference}'s speed-up (the other's time to the target / {reference}'s, paired by seed):",
        "",
        "| versus | target | speed-up (95% interval) | verdict |",
        "|---|---|---|---|",
    ]
    for r in scenario["speedups"]:
        target = "—" if r["target"] is None else f"{r['target']:g}"
        said = r.get("verdict") or r.get("why", "")
        lines.append(f"| {r['versus']} | {target} | {fmt(r, 2, '×')} | {said} |")
    return lines


def summary_lines(result: dict) -> list[str]:
    """What the command prints at its end: the claims table, or for a suite that checks none,
    each scenario's tables."""
    if result["claims"]:
        return claims_table(result["claims"])
    lines = []
    for part in result["parts"]:
        for scenario in [] if part["skipped"] else part["scenarios"]:
            lines += [f"{part['name']} / {scenario['scenario']}:", ""]
            lines += scenario_table(part, scenario) + traffic_table(part, scenario) + [""]
    return lines


def render(result: dict, meta: dict) -> str:
    lines = [
        f"# Reproduction `{result['suite']}`: "
        + result.get("title", "the DivShare paper's evaluation on this machine"),
        "",
        f"Made {meta['date']} on `{meta['host']}` ({meta['cores']} cores), commit "
        f"`{meta['commit']}`, by `{meta['command']}`.",
        f"{meta['runs']} runs: {meta['made']} made by this invocation, {meta['reused']} reused "
        "(finished before with the same config).",
        "",
        METHOD,
        "",
        "## The paper's claims",
        "",
        *(claims_table(result["claims"]) if result["claims"] else ["This suite checks none."]),
        "",
    ]
    for c in result["claims"]:
        lines += claim_details(c)
    lines += [
        "## Wall time here",
        "",
        "What the runs took, each counted in the first part that lists it (start-up, training "
        "and the evaluations' tail; the reproduction's own planning aside).",
        "",
        "| part | runs made for it | wall time (min) |",
        "|---|---|---|",
    ]
    for name, (count, seconds) in meta["wall_by_part"].items():
        lines.append(f"| {name} | {count} | {seconds / 60:.1f} |")
    count = sum(c for c, _ in meta["wall_by_part"].values())
    seconds = sum(s for _, s in meta["wall_by_part"].values())
    lines += [f"| all | {count} | {seconds / 60:.1f} |", ""]
    for part in result["parts"]:
        lines += [f"## {part['title']} (`{part['name']}`)", ""]
        if part["skipped"]:
            lines += [f"Skipped: {part['skipped']}", ""]
            continue
        if part["scaled"]:
            lines += [f"Scaled down from the paper: {part['scaled']}", ""]
        higher = "higher" if part["higher_is_better"] else "lower"
        lines += [f"Metric: test {part['metric']} ({higher} is better), mean over nodes.", ""]
        lines += [f"![{part['name']} overview]({overview_name(part['name'])})", ""]
        for scenario in part["scenarios"]:
            lines += [f"### {scenario['scenario']}", ""]
            lines += [
                f"![{scenario['scenario']}]({figure_name(part['name'], scenario['scenario'])})",
                "",
            ]
            lines += scenario_table(part, scenario)
            lines += traffic_table(part, scenario)
            lines += speedup_table(result["reference"], scenario)
            lines.append("")
    lines += ["## Runs left out of the intervals", ""]
    if result["flagged"]:
        lines += [f"- `{f['run']}`: {f['flag']}" for f in result["flagged"]]
    else:
        lines.append("None: every run finished without lag, loss of nodes or a missing evaluation.")
    return "\n".join(lines) + "\n"


def write_report(result: dict, meta: dict, out: Path) -> Path:
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for part in result["parts"]:
        if part["skipped"]:
            continue
        plot_overview(part, result["reference"], out / overview_name(part["name"]))
        for scenario in part["scenarios"]:
            plot_scenario(part, scenario, out / figure_name(part["name"], scenario["scenario"]))
    write_json_atomic(out / "report.json", finite_json({**result, "meta": meta}))
    path = out / "REPORT.md"
    write_text_atomic(path, render(result, meta))
    return path
