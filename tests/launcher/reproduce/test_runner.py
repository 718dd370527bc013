"""The runner's rules without a process: what counts as finished, what is made once, what
the rest should cost."""

import io
import json

import pytest

from launcher.reproduce import runner
from launcher.reproduce.suite import PlannedRun

CONFIG = {"duration": 20.0, "num_nodes": 60, "model": "cnn1d", "dataset": {"name": "mnist1d"}}


def _job(tmp_path, algorithm="divshare", scenario="a", seed=1, **config) -> runner.Job:
    run = PlannedRun("p", scenario, algorithm, seed, (f"algorithm={algorithm}",), "mnist1d")
    return runner.Job(run, run.run_dir(tmp_path), {**CONFIG, **config}, None)


def _finish(job: runner.Job, config=None, **summary) -> None:
    job.dir.mkdir(parents=True, exist_ok=True)
    (job.dir / "config.json").write_text(json.dumps(config or job.config))
    (job.dir / "summary.json").write_text(json.dumps({"status": "ok", **summary}))


def test_finished_means_ended_with_this_very_config(tmp_path):
    job = _job(tmp_path)
    assert not runner.is_finished(job.dir, job.config)  # never ran
    _finish(job)
    assert runner.is_finished(job.dir, job.config)
    _finish(job, status="degraded")
    assert runner.is_finished(job.dir, job.config)  # reached its end: its flag is the report's
    for summary in ({"status": "failed"}, {"status": "ok", "interrupted": True}):
        _finish(job, **summary)
        assert not runner.is_finished(job.dir, job.config)
    _finish(job, config={**job.config, "duration": 34.0})
    assert not runner.is_finished(job.dir, job.config)
    (job.dir / "summary.json").write_text("{half")
    assert not runner.is_finished(job.dir, job.config)


def test_a_run_two_parts_share_is_made_once(tmp_path):
    a, b, c = _job(tmp_path), _job(tmp_path), _job(tmp_path, seed=2)
    assert runner.to_make([a, b, c]) == [a, c]
    made = []

    def run_one(job):
        made.append(job)
        _finish(job, wall_seconds=50.0, training_wall_seconds=40.0)
        return {"status": "ok"}

    runner.run_all([a, b, c], run_one, stream=io.StringIO())
    assert made == [a, c] and a.done and b.done and c.done


def test_the_estimate_prefers_the_same_algorithm_and_scales_with_duration(tmp_path):
    costs = [
        runner.Cost(("mnist1d", 60, "cnn1d"), "divshare", 10.0, 3.0),
        runner.Cost(("mnist1d", 60, "cnn1d"), "swift", 20.0, 5.0),
    ]
    assert runner.estimate(_job(tmp_path), costs) == pytest.approx(10 + 20 * 3.0)
    adpsgd = _job(tmp_path, algorithm="adpsgd", duration=10.0)
    assert runner.estimate(adpsgd, costs) == pytest.approx(15 + 10 * 4.0)
    other = _job(tmp_path, num_nodes=16)
    assert runner.estimate(other, costs) is None
    assert runner.expected_seconds([adpsgd, other], costs) == (pytest.approx(55.0), 1)


def test_a_finished_run_is_priced_from_its_summary(tmp_path):
    job = _job(tmp_path)
    _finish(job, wall_seconds=100.0, training_wall_seconds=80.0)
    job.done = True
    (cost,) = runner.measured_costs([job])
    assert (cost.fixed_s, cost.per_s) == (20.0, 4.0)


def test_ctrl_c_in_a_run_stops_the_rest(tmp_path):
    jobs = [_job(tmp_path, seed=s) for s in (1, 2)]
    made = []

    def run_one(job):
        made.append(job)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_all(jobs, run_one, stream=io.StringIO())
    assert made == jobs[:1] and not any(j.done for j in jobs)
