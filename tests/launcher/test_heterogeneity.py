"""Trace importers on small files written in the real formats (FedScale's pickles, the CSVs
`python -m launcher.heterogeneity` writes, a WAN matrix) and on broken ones: what a run gets
from them, and errors that name the file and the line."""

from __future__ import annotations

import dataclasses
import os
import pickle
import statistics
from pathlib import Path

import pytest

from launcher.config.schema import validate
from launcher.heterogeneity import TracesSection, availability_actions, device_heterogeneity
from launcher.heterogeneity.__main__ import main as heterogeneity_cli
from launcher.heterogeneity.fedscale import read_availability, read_devices
from launcher.heterogeneity.wan import read_wan_matrix
from node.checks import ConfigError
from tests.launcher.config.test_schema import composed


def write_pickle(path: Path, data) -> Path:
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return path


DEVICES = {  # FedScale's client_device_capacity: ms per sample, kbit/s
    11: {"computation": 100.0, "communication": 5000.0},
    12: {"computation": 300.0, "communication": 1000.0},
    13: {"computation": 50.0, "communication": 20000.0},
    14: {"computation": 200.0, "communication": 8000.0},
    15: {"computation": 100.0, "communication": 2500.0},
}


def test_device_capacity_gives_step_times_around_the_median_and_rates(tmp_path):
    path = write_pickle(tmp_path / "client_device_capacity", DEVICES)
    section = TracesSection(device=str(path), rate_scale=2.0, seed=3)
    steps, rates, clients, _ = device_heterogeneity(section, 3, 0.01, None)
    assert len(set(clients)) == 3 and set(clients) <= set(DEVICES)
    median = statistics.median(DEVICES[c]["computation"] for c in clients)
    for step, (up, down), client in zip(steps, rates, clients, strict=True):
        assert step == pytest.approx(0.01 * DEVICES[client]["computation"] / median)
        assert up == down == pytest.approx(DEVICES[client]["communication"] / 1000 * 2.0)
    assert sorted(steps)[1] == pytest.approx(0.01)  # the median device: the default step
    again = device_heterogeneity(section, 3, 0.01, None)[2]
    other = device_heterogeneity(dataclasses.replace(section, seed=4), 3, 0.01, None)[2]
    assert again == clients and other != clients  # seeded


def test_the_csv_and_the_pickle_read_the_same_and_convert_round_trips(tmp_path):
    pickled = write_pickle(tmp_path / "client_device_capacity", DEVICES)
    assert heterogeneity_cli(["convert", "--device", str(pickled), "--out", str(tmp_path)]) == 0
    assert read_devices(tmp_path / "client_device_capacity.csv") == read_devices(pickled)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("client_id,computation\n1,100\n", "line 1", "lacks ['communication']"),
        ("client_id,computation,communication\n1,100,5000\n2,100,-5\n", "line 3", "below"),
        ("client_id,computation,communication\n1,fast,5000\n", "line 2", "not a number"),
        ("client_id,computation,communication\n1,100,5000\n1,90,5000\n", "line 3", "again"),
    ],
)
def test_a_broken_device_csv_names_the_file_and_line(tmp_path, text, where, problem):
    assert_refused(read_devices, tmp_path / "devices.csv", text, where, problem)


def assert_refused(reader, path: Path, text: str, where: str, problem: str) -> None:
    """`reader` refuses the file holding `text`, naming it, the line and the problem."""
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        reader(path)
    assert f"{path} {where}" in str(err.value) and problem in str(err.value)


def test_a_pickle_entry_without_its_key_and_a_pickle_that_runs_code_are_refused(tmp_path):
    path = write_pickle(tmp_path / "caps", {7: {"computation": 1.0}})
    with pytest.raises(ConfigError, match=r"client 7.*no 'communication'"):
        read_devices(path)

    class RunsCode:
        def __reduce__(self):
            return (os.getcwd, ())

    evil = write_pickle(tmp_path / "evil", {1: RunsCode()})
    with pytest.raises(ConfigError, match="refused global"):
        read_devices(evil)


def test_availability_becomes_leaves_and_joins_at_exactly_the_intervals_instants(tmp_path):
    trace = {  # FedScale's client_behave_trace: the i-th interval is [active[i], inactive[i])
        1: {"active": [0.0, 300.0], "inactive": [100.0, 500.0], "finish_time": 600.0},
        2: {"active": [150.0], "inactive": [260.0], "finish_time": 600.0},
    }
    path = write_pickle(tmp_path / "client_behave_trace", trace)
    # emulated = (trace - 50) x 0.02, within a 6-s run
    section = TracesSection(availability=str(path), time_scale=0.02, offset=50.0, seed=0)
    actions, clients, _ = availability_actions(section, 2, 6.0, None)
    got = {
        client: [(a.kind, a.t) for a in actions if a.node == node]
        for node, client in enumerate(clients)
    }
    assert got[1] == [("leave", 1.0), ("join", 5.0)]  # up at 0, away [1, 5), up to the end
    assert got[2] == [("join", 2.0), ("leave", 4.2)]  # away at the start
    # through the launcher's validation: the scenario's absences are the trace's
    run = validate(composed("num_nodes=2", "algorithm.degree=1", "duration=6",
                            f"traces.availability={path}", "traces.time_scale=0.02",
                            "traces.offset=50"))  # fmt: skip
    kinds = sorted((a.t, a.kind, a.node) for a in run.scenario if a.kind in ("leave", "join"))
    assert len(kinds) == 4
    assert run.traces.availability_clients == clients  # kept in config.json


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("client_id,active\n1,0\n", "line 1", "lacks ['inactive']"),
        ("client_id,active,inactive\n1,0,100\n1,50,200\n", "line 3", "overlaps"),
        ("client_id,active,inactive\n1,100,100\n", "line 2", "empty"),
        ("client_id,active,inactive\n1,-5,100\n", "line 2", "below"),
    ],
)
def test_a_broken_availability_csv_names_the_file_and_line(tmp_path, text, where, problem):
    assert_refused(read_availability, tmp_path / "behave.csv", text, where, problem)


def test_too_few_clients_for_the_nodes_is_a_config_error(tmp_path):
    path = write_pickle(tmp_path / "caps", DEVICES)
    with pytest.raises(ConfigError, match="5 clients for 8 nodes"):
        validate(composed("num_nodes=8", "algorithm.degree=2", f"traces.device={path}"))


WAN = "src,dst,mbps,ms\nwest,east,20,80\nwest,asia,50,40\neast,asia,10,120\nwest,west,400,1\n"


def test_a_wan_matrix_loads_into_the_geo_profile(tmp_path):
    path = tmp_path / "wan.csv"
    path.write_text(WAN)
    wan = read_wan_matrix(path)
    assert wan.region_names == ["west", "east", "asia"] and wan.latency_ms == 80.0
    run = validate(composed("network=geo", f"network.matrix_file={path}", "num_nodes=6",
                            "network.nodes_per_region=2", "network.rate_scale=1.0",
                            "algorithm.degree=2"))  # fmt: skip
    links = run.network.links
    assert run.network.regions == ("west", "west", "east", "east", "asia", "asia")
    assert links[0].paths[1] == 400.0 and links[0].paths[2] == 20.0  # intra, west-east
    assert links[2].paths[4] == 10.0 and links[5].paths[0] == 50.0
    assert all(link.latency_ms == 80.0 for link in links)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("src,dst,mbps\na,b,1\n", "line 1", "lacks ['ms']"),
        ("src,dst,mbps,ms\na,b,10,5\nb,a,12,5\n", "line 3", "given again (line 2)"),
        ("src,dst,mbps,ms\na,b,-1,5\n", "line 2", "not positive"),
    ],
)
def test_a_broken_wan_matrix_names_the_file_and_line(tmp_path, text, where, problem):
    assert_refused(read_wan_matrix, tmp_path / "wan.csv", text, where, problem)


def test_synthesized_traces_drive_a_validated_run(tmp_path):
    assert heterogeneity_cli(["synthesize", "--out", str(tmp_path), "--clients", "40"]) == 0
    assert "not measured" in (tmp_path / "SYNTHETIC.txt").read_text()
    run = validate(composed("num_nodes=12", "algorithm.degree=2",
                            f"traces.device={tmp_path / 'client_device_capacity.csv'}",
                            f"traces.availability={tmp_path / 'client_behave_trace'}",
                            "traces.time_scale=0.000277778"))  # fmt: skip
    assert len(set(run.step_times)) > 1 and len({link.up_mbps for link in run.network.links}) > 1
    record = dataclasses.asdict(run)["traces"]
    assert len(record["device_clients"]) == len(record["availability_clients"]) == 12


def test_fetch_unpacks_fedscales_archive_and_converts_its_pickles(tmp_path):
    """The real download path, from a local archive of FedScale's layout (file:// URL)."""
    import tarfile

    inner = tmp_path / "device_info"
    inner.mkdir()
    write_pickle(inner / "client_device_capacity", DEVICES)
    trace = {1: {"active": [0.0], "inactive": [60.0], "finish_time": 100.0}}
    write_pickle(inner / "client_behave_trace", trace)
    archive = tmp_path / "device_info.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(inner, arcname="device_info")
    out = tmp_path / "traces"
    code = heterogeneity_cli(["fetch", "--out", str(out), "--url", archive.as_uri()])
    assert code == 0
    assert read_devices(out / "client_device_capacity.csv") == read_devices(
        inner / "client_device_capacity"
    )
    assert read_availability(out / "client_behave_trace.csv") == {1: [(0.0, 60.0)]}
