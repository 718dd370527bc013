"""The multi-run comparison: labels, hand-computed numbers, the files, the CLI and a real sweep."""

from __future__ import annotations

import csv
import json

import pytest
from omegaconf import OmegaConf

from launcher.report.cli import CompareCallback
from launcher.report.compare import compare, write_comparison
from launcher.report.curves import bytes_sent_at
from launcher.report.runs import CompareError, assign_labels, find_run_dirs, load_run
from launcher.report.tables import render_markdown
from tests import cli
from tests.launcher.report.run_dirs import make_rmse_run, make_run, make_sweep

MB = 1e6


@pytest.fixture
def sweep(tmp_path):
    return make_sweep(tmp_path)


def _group(result, label):
    return next(g for g in result["groups"] if g["label"] == label)


def test_sweep_jobs_are_taken_in_job_number_order(sweep):
    (sweep / "3").mkdir()  # a job still running: no summary yet
    dirs, warnings = find_run_dirs([sweep])
    assert [d.name for d in dirs] == ["0", "1", "2", "10"] and not warnings


def test_labels_drop_seed_and_common_overrides_and_keep_first_appearance(sweep):
    runs = [load_run(d) for d in find_run_dirs([sweep])[0]]
    groups = assign_labels(runs)
    assert [g.label for g in groups] == [
        "algorithm=divshare",
        "algorithm=swift",
        "algorithm=adpsgd",
    ]
    assert [r.seed for r in groups[1].runs] == [1, 2]


def test_label_is_the_algorithm_when_only_seeds_differ(tmp_path):
    make_run(tmp_path / "a", overrides=["num_nodes=2", "seed=1"], means=[0.1, 0.4])
    make_run(tmp_path / "b", overrides=["num_nodes=2", "seed=2"], seed=2, means=[0.1, 0.4])
    make_run(tmp_path / "c", overrides=["num_nodes=2"], algorithm="el", means=[0.1, 0.4])
    (tmp_path / "c" / "config.json").write_text("{}")  # falls back on summary["algorithm"]
    runs = [load_run(tmp_path / d) for d in "abc"]
    assert [(g.label, len(g.runs)) for g in assign_labels(runs)] == [("divshare", 2), ("el", 1)]


def test_time_to_target_mean_std_and_speedup_are_the_hand_computed_ones(sweep):
    result = compare([sweep])
    assert result["reference"] == "algorithm=divshare" and result["targets"] == ["0.3", "0.5"]
    ref, swift, adpsgd = result["groups"]
    assert ref["time_to_accuracy"]["0.3"] == {"mean": 2.0, "std": 0.0, "reached": 1}
    assert ref["speedup"] == {"0.3": 1.0, "0.5": 1.0}
    # swift: 0.3 at 1.0 (1/2 of the way 0.1 -> 0.5 over 0..2) and at 2.0; 0.5 at 2.0 and 3.0
    assert swift["time_to_accuracy"]["0.3"] == pytest.approx(
        {"mean": 1.5, "std": 0.5, "reached": 2}
    )
    assert swift["time_to_accuracy"]["0.5"] == pytest.approx(
        {"mean": 2.5, "std": 0.5, "reached": 2}
    )
    assert swift["speedup"] == pytest.approx({"0.3": 2.0 / 1.5, "0.5": 4.0 / 2.5})
    assert swift["final_mean_accuracy"] == pytest.approx({"mean": 0.65, "std": 0.05})
    assert swift["bytes_sent_mb"] == pytest.approx({"mean": 2.0, "std": 1.0})
    # adpsgd: 0.3 half way from 0.2 (t=2) to 0.4 (t=4) -> 3.0, twice as slow as 2/3; 0.5 never
    assert adpsgd["time_to_accuracy"]["0.3"]["mean"] == pytest.approx(3.0)
    assert adpsgd["speedup"]["0.3"] == pytest.approx(2.0 / 3.0)
    assert adpsgd["time_to_accuracy"]["0.5"] == {"mean": None, "std": None, "reached": 0}
    assert adpsgd["speedup"]["0.5"] is None and adpsgd["lagged"] and result["lagged"]


def test_a_target_one_seed_missed_is_not_reached_with_the_count(tmp_path):
    make_run(tmp_path / "0", overrides=["seed=1"], means=[0.1, 0.3, 0.5])
    make_run(tmp_path / "1", overrides=["seed=2"], seed=2, means=[0.1, 0.3, 0.4])
    out = tmp_path / "out"
    result = write_comparison([tmp_path / "0", tmp_path / "1"], out)
    (group,) = result["groups"]
    assert group["label"] == "divshare"
    assert group["time_to_accuracy"]["0.5"] == {"mean": None, "std": None, "reached": 1}
    assert group["speedup"]["0.5"] is None
    assert (
        "| divshare | 2 (1, 2) | 2.00 ± 0.00 | not reached (1/2) |"
        in (out / "comparison.md").read_text()
    )


def test_bytes_are_interpolated_per_node_and_summed():
    nodes = [
        [{"t": 1.0, "bytes_sent": 100}, {"t": 3.0, "bytes_sent": 300}],
        [{"t": 2.0, "bytes_sent": 50}],
        [],  # a node that never finished a round sent nothing we know of
    ]
    # node 0: 0, 50, 100, 200, 300, 300 (flat after its last round); node 1: 0, 12.5, 25, 50, ..
    got = bytes_sent_at(nodes, [0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    assert got.tolist() == pytest.approx([0.0, 62.5, 125.0, 250.0, 350.0, 350.0])


def test_group_bytes_curve_is_the_mean_over_seeds_on_the_eval_grid(tmp_path):
    make_run(tmp_path / "0", overrides=["seed=1"], means=[0.1, 0.3, 0.5], nodes={0: [(4.0, 4e6)]})
    make_run(
        tmp_path / "1", overrides=["seed=2"], seed=2, means=[0.1, 0.5, 0.7], nodes={0: [(2.0, 4e6)]}
    )
    (group,) = compare([tmp_path])["groups"]
    assert group["curve"]["t"] == [0.0, 2.0, 4.0]
    assert group["curve"]["mb"] == pytest.approx([0.0, (2.0 + 4.0) / 2, 4.0])
    assert group["curve"]["mean"] == pytest.approx([0.1, 0.4, 0.6])
    assert group["curve"]["min"] == pytest.approx([0.05, 0.25, 0.45])
    assert group["curve"]["max"] == pytest.approx([0.15, 0.55, 0.75])


def test_the_traffic_to_a_target_is_what_the_nodes_had_sent_when_it_was_reached(tmp_path):
    # seed 1 reaches 0.3 at t=2 and 0.5 at t=4, having sent 2 and 4 MB by then (4 MB by t=4,
    # linearly); seed 2 reaches them at t=1 and t=2, with 2 and 4 MB sent (4 MB by t=2)
    targets = [0.3, 0.5, 0.9]
    for seed, means, end in ((1, [0.1, 0.3, 0.5], 4.0), (2, [0.1, 0.5, 0.7], 2.0)):
        make_run(
            tmp_path / str(seed),
            overrides=[f"seed={seed}"],
            seed=seed,
            means=means,
            targets=targets,
            nodes={0: [(end, 4_000_000)]},
        )
    result = compare([tmp_path])
    (group,) = result["groups"]
    assert group["mb_to_accuracy"]["0.3"] == pytest.approx({"mean": 2.0, "std": 0.0})
    assert group["mb_to_accuracy"]["0.5"] == pytest.approx({"mean": 4.0, "std": 0.0})
    assert group["mb_to_accuracy"]["0.9"] == {"mean": None, "std": None}  # never reached
    assert "| divshare | 2.0 ± 0.0 | 4.0 ± 0.0 | not reached |" in render_markdown(result)


@pytest.mark.parametrize(
    ("key", "value", "what"), [("num_nodes", 3, "num_nodes"), ("duration", 8.0, "duration")]
)
def test_runs_of_different_size_or_length_are_refused_naming_the_dirs(tmp_path, key, value, what):
    make_run(tmp_path / "a", overrides=["seed=1"], means=[0.1, 0.4])
    make_run(tmp_path / "b", overrides=["seed=2"], means=[0.1, 0.4], **{key: value})
    with pytest.raises(CompareError, match=f"disagree on {what}") as err:
        compare([tmp_path / "a", tmp_path / "b"])
    assert str(tmp_path / "a") in str(err.value) and str(tmp_path / "b") in str(err.value)


def test_different_targets_warn_and_take_the_union(tmp_path):
    make_run(tmp_path / "a", overrides=["seed=1"], means=[0.1, 0.4], targets=[0.3])
    make_run(tmp_path / "b", overrides=["seed=2"], means=[0.1, 0.4], targets=[0.2, 0.3])
    result = compare([tmp_path / "a", tmp_path / "b"])
    assert result["targets"] == ["0.2", "0.3"]
    assert any("different accuracy targets" in w for w in result["warnings"])


def test_no_run_dir_is_refused(tmp_path):
    with pytest.raises(CompareError, match="no run directory"):
        compare([tmp_path])


def test_the_four_outputs_are_written_into_the_sweep_dir(sweep):
    write_comparison([sweep])
    names = {p.name for p in sweep.iterdir() if p.is_file()}
    assert names == {
        "comparison.md",
        "comparison.csv",
        "comparison.json",
        "comparison_accuracy.png",
        "comparison_bytes.png",
    }  # and no temporary left behind
    for png in ("comparison_accuracy.png", "comparison_bytes.png"):
        assert (sweep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (sweep / png).stat().st_size > 10_000
    md = (sweep / "comparison.md").read_text()
    assert "2 nodes, 4 emulated seconds, network uniform, 1 stragglers" in md
    assert "| label | runs (seeds) | time to 0.3 (s) | time to 0.5 (s) |" in md
    assert "| algorithm=swift | 2 (1, 2) | 1.50 ± 0.50 | 2.50 ± 0.50 | 65.0 ± 5.0% |" in md
    assert "| algorithm=adpsgd | 1 (1) | 3.00 | not reached |" in md
    assert "| yes | 0.67 |  |" in md and "ddof=0" in md and "not faithful" in md
    with open(sweep / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == [
        "algorithm=divshare",
        "algorithm=swift",
        "algorithm=adpsgd",
    ]
    assert float(rows[1]["tta_0.3_mean_s"]) == pytest.approx(1.5)
    assert float(rows[1]["tta_0.3_std_s"]) == pytest.approx(0.5)
    assert float(rows[1]["speedup_0.5"]) == pytest.approx(1.6)
    assert rows[2]["tta_0.5_mean_s"] == "" and rows[2]["tta_0.5_seeds_reached"] == "0"
    saved = json.loads((sweep / "comparison.json").read_text())
    assert saved["groups"][1]["speedup"]["0.3"] == pytest.approx(2.0 / 1.5)


def test_callback_writes_into_the_sweep_dir_and_never_raises(sweep, tmp_path_factory, capsys):
    CompareCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert (sweep / "comparison.md").exists()
    assert "| algorithm=swift |" in capsys.readouterr().out
    empty = tmp_path_factory.mktemp("empty")
    CompareCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(empty)}}}))
    CompareCallback().on_multirun_end(OmegaConf.create({}))  # not even a sweep dir
    err = capsys.readouterr().err
    assert err.count("comparison not written") == 2 and "no run directory" in err


def _movielens_pair(tmp_path):
    """divshare: RMSE 3.0, 1.3, 1.1 at t = 0, 2, 4; swift: 3.0, 1.1, 0.95 (worst node +0.2)."""
    a = make_rmse_run(tmp_path / "a", overrides=["algorithm=divshare"], rmse=[3.0, 1.3, 1.1])
    b = make_rmse_run(
        tmp_path / "b", overrides=["algorithm=swift"], algorithm="swift", rmse=[3.0, 1.1, 0.95]
    )
    return a, b


def test_movielens_runs_are_compared_on_rmse_lower_is_better(tmp_path):
    result = write_comparison(list(_movielens_pair(tmp_path)), tmp_path / "out")
    assert result["metric"] == "RMSE" and result["targets"] == ["1.2", "1"]  # order reached
    divshare, swift = result["groups"]
    # 1.2 lies half way from 1.3 (t=2) to 1.1 (t=4); for swift 1.8/1.9 of the way from t=0 to 2
    assert divshare["time_to_rmse"]["1.2"]["mean"] == pytest.approx(3.0)
    assert swift["time_to_rmse"]["1.2"]["mean"] == pytest.approx(2 * 1.8 / 1.9)
    assert divshare["time_to_rmse"]["1"]["mean"] is None
    assert swift["time_to_rmse"]["1"]["mean"] == pytest.approx(2 + 2 * 0.1 / 0.15)
    assert swift["speedup"]["1.2"] == pytest.approx(3.0 / (2 * 1.8 / 1.9))
    assert swift["final_mean_rmse"]["mean"] == pytest.approx(0.95)
    assert swift["final_worst_rmse"]["mean"] == pytest.approx(1.15)  # the node with most error
    assert swift["curve"]["worst"] == pytest.approx([3.2, 1.3, 1.15])
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "RMSE targets on the mean test RMSE over nodes (lower is better): 1.2, 1" in md
    assert "| final mean RMSE | final worst RMSE | sent (MB) |" in md
    assert "| algorithm=swift | 1 (1) | 1.89 | 3.33 | 0.9500 | 1.1500 |" in md
    png = tmp_path / "out" / "comparison_rmse.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not (tmp_path / "out" / "comparison_accuracy.png").exists()
    with open(tmp_path / "out" / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[1]["final_worst_rmse_mean"]) == pytest.approx(1.15)


def test_the_worst_node_curve_of_accuracy_is_the_lowest(sweep):
    swift = _group(compare([sweep]), "algorithm=swift")
    # two seeds: min over seeds of each run's lowest node (mean - 0.05)
    assert swift["curve"]["worst"] == pytest.approx([0.05, 0.25, 0.55])


def test_runs_of_different_tasks_are_refused(tmp_path):
    a, _ = _movielens_pair(tmp_path)
    c = make_run(tmp_path / "c", overrides=["algorithm=swift"], means=[0.1, 0.5, 0.6])
    with pytest.raises(CompareError, match="different metrics"):
        compare([a, c])


# ---------------------------------------------------------------- the real commands


@pytest.mark.process
def test_cli_compares_two_run_dirs(tmp_path):
    a = make_run(tmp_path / "a", overrides=["algorithm=divshare"], means=[0.1, 0.3, 0.5])
    b = make_run(tmp_path / "b", overrides=["algorithm=swift"], algorithm="swift", means=[0.1, 0.5])
    code, out = cli.run("launcher.report", str(a), str(b), timeout=120, cwd=tmp_path)
    assert code == 0, out
    assert "| algorithm=swift | 1 (1) | 1.00 | 2.00 |" in out
    out = tmp_path / "comparison"  # two run dirs: ./comparison
    assert (out / "comparison_accuracy.png").stat().st_size > 0
    assert "| algorithm=divshare |" in (out / "comparison.md").read_text()


@pytest.mark.process
def test_cli_refuses_an_empty_dir_with_exit_2(tmp_path):
    proc = cli.start("launcher.report", str(tmp_path), merge_stderr=False)
    _, err = cli.communicate(proc, timeout=120)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        f"compare: error: no run directory (one with summary.json) found in: {tmp_path}"
    ]


@pytest.fixture(scope="module")
def movielens_sweep(tmp_path_factory):
    """One real multirun (the CLI, `-m algorithm=divshare,swift`) of two short 4-node runs on a
    small ratings file in the real format: (sweep dir, output). Both tests below read it."""
    from bench.data_files import write_ratings

    tmp = tmp_path_factory.mktemp("movielens-sweep")
    write_ratings(tmp / "ml", num_users=16, per_user=(20, 40))
    args = [
        "-m",
        "algorithm=divshare,swift",
        "num_nodes=4",
        "dataset=movielens",
        "model=mf",
        f"dataset.root={tmp / 'ml'}",
        "dataset.download=false",
        "network=uniform",
        "algorithm.degree=2",
        "algorithm.local_steps=16",
        "algorithm.lr=0.1",
        "duration=2",
        "eval.interval=0.5",
        "eval.targets=[3.5,3.0]",  # RMSE values: the comparison judges MovieLens on RMSE
        f"hydra.sweep.dir={tmp / 'sweep'}",
    ]
    code, out = cli.run("launcher", *args, timeout=280)
    assert code == 0, out
    return tmp / "sweep", out


@pytest.mark.process
def test_a_real_multirun_ends_with_the_comparison_in_its_sweep_dir(movielens_sweep):
    sweep, out = movielens_sweep
    md, traffic = (sweep / "comparison.md").read_text().split("## Traffic to each target")
    for table in (md, traffic):
        rows = [line for line in table.splitlines() if line.startswith("| algorithm=")]
        assert [r.split(" | ")[0] for r in rows] == ["| algorithm=divshare", "| algorithm=swift"]
    for png in ("comparison_rmse.png", "comparison_bytes.png"):
        assert (sweep / png).stat().st_size > 10_000
    assert "comparison written to" in out


@pytest.mark.process
def test_two_short_movielens_runs_are_compared_on_rmse(movielens_sweep, tmp_path):
    """The comparison's own CLI on the sweep's two run folders, judged on RMSE."""
    sweep, _ = movielens_sweep
    runs = [sweep / "0", sweep / "1"]
    assert all((run / "summary.json").is_file() for run in runs)
    code, out = cli.run("launcher.report", *map(str, runs), timeout=120, cwd=tmp_path)
    assert code == 0, out
    cmp = tmp_path / "comparison"
    md = (cmp / "comparison.md").read_text()
    assert "RMSE targets on the mean test RMSE over nodes (lower is better): 3.5, 3" in md
    assert "| final mean RMSE | final worst RMSE |" in md and "final mean acc." not in md
    assert (cmp / "comparison_rmse.png").stat().st_size > 10_000
    result = json.loads((cmp / "comparison.json").read_text())
    assert [group["label"] for group in result["groups"]] == [
        "algorithm=divshare",
        "algorithm=swift",
    ]
    for group in result["groups"]:
        curve = group["curve"]
        assert curve["mean"][-1] < curve["mean"][0]  # RMSE falls as MF trains
        assert all(w >= m for w, m in zip(curve["worst"], curve["mean"], strict=True))
