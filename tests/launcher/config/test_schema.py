"""Config validation: the defaults validate; bad keys and values name the key and the fix."""

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from launcher.config.schema import validate
from launcher.main import CONF_DIR
from node.checks import ConfigError


def composed(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def test_default_experiment_validates_to_the_artifact_setting():
    run = validate(composed())
    assert run.num_nodes == 60 and run.tdf is None and run.clock == "virtual"
    a = run.algorithm
    assert (a.name, a.fraction, a.degree, a.local_steps, a.lr, a.batch_size) == (
        "divshare",
        0.1,
        6,
        128,
        0.05,
        8,
    )
    assert run.network.stragglers == tuple(range(7))
    fast, slow = run.network.links[59], run.network.links[0]
    assert slow.up_mbps == pytest.approx(fast.up_mbps / 5) and slow.down_mbps == slow.up_mbps
    assert fast.latency_ms == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.num_nodes = 3


def test_small_runs_keep_one_straggler_and_overrides_apply():
    run = validate(
        composed(
            "num_nodes=4",
            "algorithm.degree=2",
            "+network.overrides.3={up_mbps: 1.5}",
            "+compute.overrides.2=0.01",
        )
    )
    assert run.network.stragglers == (0,)
    assert run.network.links[3].up_mbps == 1.5 and run.network.links[3].down_mbps == 5.5
    assert run.step_times == (0.00485, 0.00485, 0.01, 0.00485)


@pytest.mark.parametrize(
    "overrides, curve",
    [
        ((), False),  # the default binds loopback
        (("transport.bind=ipc://",), False),
        (("transport.bind=tcp://10.1.2.3",), True),
        (("transport.bind=tcp://10.1.2.3", "transport.curve=off"), False),
        (("transport.curve=on",), True),
    ],
)
def test_curve_is_on_when_asked_or_when_nodes_bind_off_loopback(overrides, curve):
    assert validate(composed(*overrides)).curve is curve


def test_a_run_with_curve_gives_every_node_one_key_pair_and_writes_no_secret(tmp_path):
    from launcher.config.plan import make_plan

    small = ("num_nodes=3", "algorithm.degree=2", f"data_root={tmp_path}")
    run = validate(composed(*small, "transport.curve=on"))
    keys = {spec.curve for spec in make_plan(run, tmp_path).nodes}
    assert len(keys) == 1 and None not in keys
    assert keys.pop().secret not in str(dataclasses.asdict(run))  # what config.json holds
    plain = make_plan(validate(composed(*small)), tmp_path)
    assert all(spec.curve is None for spec in plain.nodes)


def test_uniform_network_and_explicit_straggler_ids():
    assert validate(composed("network=uniform")).network.stragglers == ()
    run = validate(composed("network.straggler_fraction=null", "network.straggler_ids=[5,9]"))
    assert run.network.stragglers == (5, 9)


@pytest.mark.parametrize(
    ("overrides", "key", "fix"),
    [
        (["num_nodes=4"], "algorithm.degree", "algorithm.degree<=3"),
        (["algorithm.fraction=0"], "algorithm.fraction", "0.1"),
        (["algorithm.lr=-1"], "algorithm.lr", "0.05"),
        (["+algorithm.momentum=0.9"], "algorithm.momentum", "remove it"),
        (["+nodes=3"], "nodes", "known top-level keys"),
        (["duration=abc"], "duration", "duration=60"),
        (["clock=wall", "tdf=0.5"], "tdf", "tdf=auto"),
        (["tdf=12"], "tdf", "use clock=wall tdf=12"),
        (["clock=fast"], "clock", "virtual (time kept by the launcher"),
        (["compute.pace=false"], "compute.pace", "or use clock=wall"),
        (["launch.stall_timeout=0"], "launch.stall_timeout", ">= 1.0"),
        (["network.num_stragglers=3"], "network.num_stragglers", "exactly one"),
        (
            ["network.straggler_fraction=null", "network.num_stragglers=70"],
            "network.num_stragglers",
            "lower it",
        ),
        (
            ["network.straggler_fraction=null", "network.straggler_ids=[1,1]"],
            "network.straggler_ids",
            "each node once",
        ),
        (["network.rate_mbps=0"], "network.rate_mbps", ">="),
        (["dataset.partition=shards"], "dataset.partition", "dirichlet"),
        (["dataset.partition=dirichlet", "++dataset.alpha=0"], "dataset.alpha", "alpha=0.1"),
        (["++dataset.alpha=abc"], "dataset.alpha", "alpha=0.1"),
        (["algorithm=relaysgd", "algorithm.fill=zero"], "algorithm.fill", "counts"),
        (["algorithm=relaysgd", "algorithm.momentum=1"], "algorithm.momentum", "0.9"),
        (["model.name=resnet"], "model.name", "cnn1d"),
        (["eval.interval=100"], "eval.interval", "lower eval.interval"),
        (["transport.bind=localhost"], "transport.bind", "tcp://127.0.0.1"),
        (["transport.curve=yes"], "transport.curve", "auto (on when nodes bind off loopback)"),
        (["dataset.num_samples=200"], "dataset.num_samples", "raise dataset.num_samples"),
        (["compute.threads=abc"], "compute.threads", "of type int"),
        (["+compute.speed=2"], "compute.speed", "known keys of 'compute'"),
        (["~compute.step_time"], "compute.step_time", "set compute.step_time"),
        (["compute.step_time=fast"], "compute.step_time", "e.g. compute.step_time=0.00485"),
        (["compute.pacing=fast"], "compute.pacing", "burst"),
        (["compute.gate_slots=-1"], "compute.gate_slots", "0 (no gate)"),
        (["eval.workers=0"], "eval.workers", "auto, or >= 1"),
        (["launch.stop_grace=0"], "launch.stop_grace", ">= 0.1"),
        (["seed=-1"], "seed", ">= 0"),
        (["clock=wall", "tdf=fast"], "tdf", "tdf=auto"),
        (["sharing=topk", "sharing.fraction=0"], "sharing.fraction", "e.g. 0.1"),
        (["sharing=topk", "+sharing.bits=4"], "sharing.bits", "known keys of 'sharing'"),
        (["sharing=quantize", "sharing.bits=3"], "sharing.bits", "(1, 2, 4, 8)"),
        (["sharing=quantize", "sharing.block=100"], "sharing.block", "multiple of 8"),
        (["sharing.name=zip"], "sharing.name", "'full', 'topk', 'random', 'quantize'"),
        (["sharing=topk"], "sharing", "an algorithm that takes a codec (choco"),  # DivShare
        (["algorithm=choco", "algorithm.gamma=2"], "algorithm.gamma", "e.g. 0.2"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(overrides, key, fix):
    with pytest.raises(ConfigError) as err:
        validate(composed(*overrides))
    assert err.value.key == key
    assert fix in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ((), {"name": "full"}),
        (("algorithm=dpsgd", "sharing=topk"), {"name": "topk", "fraction": 0.1}),
        (
            ("algorithm=el", "sharing=random", "sharing.fraction=0.2"),
            {"name": "random", "fraction": 0.2},
        ),
        (("algorithm=choco", "sharing=quantize"), {"name": "quantize", "bits": 4, "block": 256}),
    ],
)
def test_sharing_validates_to_the_codecs_typed_config_and_reaches_every_node(
    overrides, expected, tmp_path, shared_data_root
):
    from launcher.config.plan import make_plan

    small = ("num_nodes=8", "algorithm.degree=2", f"data_root={shared_data_root}")
    run = validate(composed(*small, *overrides))
    assert dataclasses.asdict(run.sharing) == expected
    plan = make_plan(run, tmp_path)
    assert all(spec.sharing == run.sharing for spec in plan.nodes)


GEO_SCALE = 0.0917


def test_geo_experiment_gives_every_node_a_path_rate_per_region_pair():
    run = validate(composed("+experiment=geo_10regions"))
    net = run.network
    assert (net.name, len(net.links), net.stragglers) == ("geo", 60, ())
    assert net.regions[:7] == ("capetown",) * 6 + ("tokyo",) and net.regions[59] == "oregon"
    rate = {(a, b): net.links[a].paths[b] for a in range(60) for b in net.links[a].paths}
    assert rate[0, 18] == pytest.approx(21 * GEO_SCALE)  # capetown -> sydney, the slowest
    assert rate[24, 30] == pytest.approx(405 * GEO_SCALE)  # stockholm -> milan, the fastest
    assert rate[41, 42] == pytest.approx(30 * GEO_SCALE)  # bahrain -> saopaulo
    assert rate[13, 41] == pytest.approx(336 * GEO_SCALE)  # mumbai -> bahrain
    assert rate[53, 59] == pytest.approx(105 * GEO_SCALE)  # ohio -> oregon
    assert rate[1, 5] == pytest.approx(405 * GEO_SCALE)  # within capetown (assumption)
    assert all(rate[a, b] == rate[b, a] for a, b in rate)
    assert all(
        len(link.paths) == 59 and node not in link.paths for node, link in enumerate(net.links)
    )
    assert net.links[0].up_mbps == float("inf") and net.links[0].down_mbps == float("inf")
    assert net.links[0].latency_ms == 1.0


def test_geo_uses_the_first_regions_for_small_runs_and_keeps_overrides():
    run = validate(
        composed(
            "network=geo",
            "num_nodes=4",
            "algorithm.degree=2",
            "network.num_regions=2",
            "network.nodes_per_region=2",
            "network.uplink_mbps=60",
            "+network.overrides.3={up_mbps: 1.5}",
        )
    )
    net = run.network
    assert net.regions == ("capetown", "capetown", "tokyo", "tokyo")
    assert net.links[0].paths == pytest.approx(
        {1: 405 * GEO_SCALE, 2: 26 * GEO_SCALE, 3: 26 * GEO_SCALE}
    )
    assert net.links[0].up_mbps == pytest.approx(60 * GEO_SCALE)
    assert net.links[3].up_mbps == 1.5 and net.links[3].paths[0] == pytest.approx(26 * GEO_SCALE)


@pytest.mark.parametrize(
    ("overrides", "key", "fix"),
    [
        (["num_nodes=4", "algorithm.degree=2"], "num_nodes", "network.num_regions=2"),
        (["num_nodes=50"], "num_nodes", "num_nodes=60 for 10 regions of 6"),
        (["~network.matrix_mbps.ohio"], "network.matrix_mbps.ohio.oregon", "add network"),
        (["+network.matrix_mbps.oregon={ohio: 1}"], "network.matrix_mbps.oregon.ohio", "keep one"),
        (["network.matrix_mbps.tokyo.mumbai=0"], "network.matrix_mbps.tokyo.mumbai", ">="),
        (["+network.matrix_mbps.ohio.paris=5"], "network.matrix_mbps.ohio.paris", "region_names"),
        (["network.intra_region_mbps=-1"], "network.intra_region_mbps", ">="),
        (["+network.slowdown=5"], "network.slowdown", "network=stragglers"),
        (["network.num_regions=11"], "network.num_regions", "<= 10"),
    ],
)
def test_bad_geo_config_names_the_key_and_the_fix(overrides, key, fix):
    with pytest.raises(ConfigError) as err:
        validate(composed("network=geo", *overrides))
    assert err.value.key == key
    assert fix in str(err.value)


def test_uniform_refuses_a_geo_key_by_name():
    with pytest.raises(ConfigError) as err:
        validate(composed("network=uniform", "+network.rate_scale=0.5"))
    assert err.value.key == "network.rate_scale" and "network=geo" in str(err.value)


def test_compute_stragglers_take_slowdown_times_the_step_and_overrides_still_win():
    run = validate(
        composed(
            "num_nodes=4",
            "algorithm.degree=2",
            "compute.stragglers=[0,2]",
            "compute.slowdown=5",
            "+compute.overrides.2=0.01",
        )
    )
    assert run.step_times == pytest.approx((0.02425, 0.00485, 0.01, 0.00485))
    with pytest.raises(ConfigError, match="compute.stragglers"):
        validate(composed("num_nodes=4", "algorithm.degree=2", "compute.stragglers=[4]"))


EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def traces_root(tmp_path_factory):
    """A data root with made-up FedScale traces, for the experiments that read them."""
    from launcher.heterogeneity.__main__ import synthesize

    root = tmp_path_factory.mktemp("data")
    synthesize(root / "traces", clients=100)
    return root


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment, traces_root):
    run = validate(composed(f"+experiment={experiment}", f"data_root={traces_root}"))
    assert run.num_nodes == 60


ALGORITHMS = sorted(p.stem for p in (Path(CONF_DIR) / "algorithm").glob("*.yaml"))


def test_every_algorithm_config_validates_and_a_bad_topology_names_the_key():
    assert len(ALGORITHMS) >= 9
    for name in ALGORITHMS:
        run = validate(composed(f"algorithm={name}"))
        assert run.algorithm.name == name and run.algorithm_class.startswith("node.algorithms.")
    with pytest.raises(ConfigError, match="algorithm.topology"):
        validate(composed("algorithm=dpsgd", "algorithm.topology=star"))
    with pytest.raises(ConfigError, match="algorithm.degree"):
        validate(composed("num_nodes=5", "algorithm=dpsgd", "algorithm.degree=3"))


def test_dirichlet_partition_and_relaysgd_validate():
    run = validate(composed("dataset.partition=dirichlet", "++dataset.alpha=0.01"))
    assert (run.dataset.partition, run.dataset.alpha) == ("dirichlet", 0.01)
    run = validate(composed("num_nodes=4", "algorithm=relaysgd", "algorithm.momentum=0.9"))
    a = run.algorithm
    assert (a.topology, a.fill, a.momentum) == ("double_binary_tree", "initial", 0.9)


def test_paper_cifar10_is_the_artifacts_setting():
    run = validate(composed("+experiment=paper_cifar10"))
    assert (run.num_nodes, run.duration, run.clock) == (60, 800.0, "virtual")
    assert (run.dataset.name, run.dataset.partition, run.model) == ("cifar10", "kshard", "gn_lenet")
    assert run.dataset.shards_per_node == 5 and run.dataset.download is True
    a = run.algorithm
    assert (a.name, a.degree, a.fraction, a.local_steps, a.batch_size, a.lr) == (
        "divshare",
        6,
        0.1,
        128,
        8,
        0.05,
    )
    assert run.network.stragglers == tuple(range(7))
    rates = sorted({(link.up_mbps, link.latency_ms) for link in run.network.links})
    assert rates == [(12.0, 1.0), (60.0, 1.0)]
    assert run.step_times == (0.00485,) * 60


def test_paper_movielens_keeps_the_network_and_splits_by_user():
    run = validate(composed("+experiment=paper_movielens"))
    assert (run.dataset.name, run.dataset.partition, run.model) == ("movielens", "by_user", "mf")
    assert run.dataset.train_fraction == 0.7 and run.network.stragglers == tuple(range(7))
    assert sorted({link.up_mbps for link in run.network.links}) == [12.0, 60.0]


@pytest.mark.parametrize(
    ("overrides", "key", "fix"),
    [
        (
            ["dataset=cifar10", "model=gn_lenet", "+dataset.num_samples=10"],
            "dataset.num_samples",
            "remove",
        ),
        (
            ["dataset=movielens", "model=mf", "dataset.partition=kshard"],
            "dataset.partition",
            "by_user",
        ),
        (
            ["dataset=cifar10", "model=gn_lenet", "dataset.download=maybe"],
            "dataset.download",
            "true",
        ),
        (
            ["dataset=movielens", "model=mf", "dataset.train_fraction=1.5"],
            "dataset.train_fraction",
            "0.7",
        ),
        (["dataset=cifar10", "model=mf"], "model.name", "model=gn_lenet"),
        (["dataset.name=imagenet"], "dataset.name", "cifar10"),
    ],
)
def test_bad_dataset_config_names_the_key_and_the_fix(overrides, key, fix):
    with pytest.raises(ConfigError) as err:
        validate(composed(*overrides))
    assert err.value.key == key and fix in err.value.fix, str(err.value)


def test_dataset_root_defaults_to_data_root_and_may_be_set(tmp_path):
    run = validate(composed("dataset=cifar10", "model=gn_lenet", f"data_root={tmp_path}"))
    assert run.dataset.root == str(tmp_path)
    run = validate(composed("dataset=movielens", "model=mf", f"dataset.root={tmp_path / 'ml'}"))
    assert run.dataset.root == str(tmp_path / "ml")


TYPED = ["algorithm=local", "algorithm._target_=tests.node.twin.Typed", "algorithm.name=typed"]


def test_a_plug_in_config_takes_its_defaults_and_typed_values_without_any_schema_code():
    run = validate(composed(*TYPED))
    assert (run.algorithm.flag, run.algorithm.ids, run.algorithm.limit) == (False, [], None)
    assert run.algorithm.local_steps == 128 and run.algorithm_class == "tests.node.twin.Typed"
    run = validate(
        composed(*TYPED, "+algorithm.flag=true", "+algorithm.ids=[1,2]", "+algorithm.limit=0.5")
    )
    assert (run.algorithm.flag, run.algorithm.ids, run.algorithm.limit) == (True, [1, 2], 0.5)


@pytest.mark.parametrize(
    ("overrides", "key", "fix"),
    [
        (["+algorithm.flag=maybe"], "algorithm.flag", "bool"),
        (["+algorithm.ids=[a]"], "algorithm.ids[0]", "algorithm.ids a value of type list[int]"),
        (["+algorithm.limit=far"], "algorithm.limit", "float | None"),
        (["+algorithm.nope=1"], "algorithm.nope", "remove it"),
        (["~algorithm.name"], "algorithm.name", "set algorithm.name"),
        (["algorithm._target_=nowhere.Nothing"], "algorithm._target_", "hydra.searchpath"),
        (["algorithm._target_=node.models.MLP"], "algorithm._target_", "dotted path"),
    ],
)
def test_a_bad_plug_in_config_names_the_key_and_the_fix(overrides, key, fix):
    with pytest.raises(ConfigError) as err:
        validate(composed(*TYPED, *overrides))
    assert err.value.key == key and fix in err.value.fix, str(err.value)


def test_targets_are_values_of_the_tasks_metric():
    assert validate(composed()).targets == (0.3, 0.4, 0.5)  # auto: accuracy
    movielens = ("dataset=movielens", "model=mf")
    assert validate(composed(*movielens)).targets == (1.5, 1.2, 1.0)  # auto: RMSE
    assert validate(composed(*movielens, "eval.targets=[2.5,0.9]")).targets == (2.5, 0.9)
    assert validate(composed("+experiment=paper_movielens")).targets == (1.5, 1.2, 1.0)
    with pytest.raises(ConfigError) as err:
        validate(composed("eval.targets=[0.5,1.2]"))
    assert err.value.key == "eval.targets" and "accuracies in (0, 1]" in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate(composed(*movielens, "eval.targets=[1.0,-0.2]"))
    assert err.value.key == "eval.targets" and "RMSE values above 0" in str(err.value)
    assert "lower is better" in str(err.value) and "[1.2,1.0]" in err.value.fix


def test_the_ray_backend_validates_to_its_settings():
    run = validate(composed("launch.backend=ray", "ray.placement=pack", "ray.cpus_per_node=0.5"))
    assert (run.backend, run.ray.address, run.ray.strategy, run.ray.cpus_per_node) == (
        "ray",
        "local",
        "PACK",
        0.5,
    )
    assert validate(composed()).ray is None  # local: no Ray settings, Ray never imported


def test_the_ray_backend_without_ray_installed_names_the_install_command(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` fails
    with pytest.raises(ConfigError, match=r"launch\.backend.*pip install -e '\.\[ray\]'"):
        validate(composed("launch.backend=ray"))


@pytest.mark.parametrize(
    "overrides, key",
    [
        (("launch.backend=slurm",), "launch.backend"),
        (("launch.host=tcp://10.0.0.1",), "launch.host"),
        (("launch.backend=ray", "ray.placement=strict"), "ray.placement"),
        (("launch.backend=ray", "ray.cpus_per_node=0"), "ray.cpus_per_node"),
        (("launch.backend=ray", "transport.bind=ipc://"), "transport.bind"),
    ],
)
def test_bad_launch_and_ray_settings_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(composed(*overrides))
