"""What a reproduction runs, as typed config: parts (a data set and its scenarios), the
algorithms and seeds of each, and the paper's claims to check; expanded into planned runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

SUITES_DIR = Path(__file__).resolve().parent / "suites"
CLAIM_KINDS = ("speedup", "accuracy_gain", "loss_reduction")


class SuiteError(Exception):
    """A suite file that cannot be run; the message names the file, the key and the fix."""


@dataclass
class PartSpec:
    """One table of the report: every algorithm on every scenario, each with every seed."""

    name: str = MISSING
    title: str = MISSING
    scenarios: dict[str, list[str]] = MISSING  # label -> the launcher overrides that make it
    algorithms: list[str] = MISSING
    # A label in `algorithms` that is a key here is made by these overrides instead of
    # `algorithm=<label>` (e.g. dpsgd_topk10: [algorithm=dpsgd, sharing=topk]).
    methods: dict[str, list[str]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)  # for every run of the part
    seeds: list[int] | None = None  # default: the suite's
    dataset: str = "mnist1d"  # a data set that may be absent: the part is skipped, saying why
    scaled: str = ""  # what is smaller than in the paper, and by how much (printed in the report)


@dataclass
class ClaimSpec:
    """A claim of the paper, the figure it gives, and where in the runs it is checked."""

    id: str = MISSING
    text: str = MISSING  # the claim as the paper words it
    kind: str = MISSING  # speedup | accuracy_gain | loss_reduction
    paper: float = MISSING  # the paper's figure: a factor, points, or a share
    part: str = MISSING
    scenarios: list[str] = MISSING
    versus: list[str] = MISSING  # the baselines the reference is compared with


@dataclass
class Suite:
    name: str = MISSING
    title: str = "the DivShare paper's evaluation on this machine"
    seeds: list[int] = MISSING
    reference: str = "divshare"  # the algorithm the claims are about
    overrides: list[str] = field(default_factory=list)  # for every run
    parts: list[PartSpec] = MISSING
    claims: list[ClaimSpec] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedRun:
    """One launcher run: its place in the report and the overrides that make it."""

    part: str
    scenario: str
    algorithm: str
    seed: int
    overrides: tuple[str, ...]
    dataset: str

    @property
    def key(self) -> str:
        return f"{self.part}/{self.scenario}/{self.algorithm}/seed{self.seed}"

    def run_dir(self, out: Path) -> Path:
        """By scenario, not part: two parts that list the same scenario share its runs."""
        return out / "runs" / self.scenario / f"{self.algorithm}-s{self.seed}"


def suite_path(name_or_path: str) -> Path:
    """A shipped suite by name (launcher/reproduce/suites/NAME.yaml) or a YAML file of one's own."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return SUITES_DIR / f"{name_or_path}.yaml"


def load_suite(name_or_path: str) -> Suite:
    path = suite_path(name_or_path)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
        raise SuiteError(f"no suite {path}; shipped suites: {shipped}, or give a YAML file")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Suite), OmegaConf.load(path))
        suite: Suite = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        raise SuiteError(f"{path}: {err}".strip()) from err
    check_suite(suite, path)
    return suite


def check_suite(suite: Suite, path: Path | str = "suite") -> None:
    parts = {p.name: p for p in suite.parts}
    if len(parts) != len(suite.parts):
        raise SuiteError(f"{path}: parts: two parts share a name; give each its own")
    scenarios: dict[str, tuple] = {}
    for part in suite.parts:
        for label, overrides in part.scenarios.items():
            made = (*part.overrides, *overrides)
            if scenarios.setdefault(label, made) != made:
                raise SuiteError(
                    f"{path}: parts.{part.name}.scenarios.{label}: another part makes a scenario "
                    "of this name differently; give it its own name (runs are kept by scenario)"
                )
        if not part.scenarios or not part.algorithms:
            raise SuiteError(f"{path}: parts.{part.name}: needs scenarios and algorithms")
        unused = sorted(set(part.methods) - set(part.algorithms))
        if unused:
            raise SuiteError(
                f"{path}: parts.{part.name}.methods: {unused} are not in its algorithms; "
                "list them there or remove them"
            )
        if not (part.seeds or suite.seeds):
            raise SuiteError(f"{path}: seeds: empty; give at least one seed")
    for claim in suite.claims:
        where = f"{path}: claims.{claim.id}"
        if claim.kind not in CLAIM_KINDS:
            raise SuiteError(f"{where}.kind: {claim.kind!r}; valid: {', '.join(CLAIM_KINDS)}")
        part = parts.get(claim.part)
        if part is None:
            raise SuiteError(f"{where}.part: no part {claim.part!r}; valid: {', '.join(parts)}")
        for scenario in claim.scenarios:
            if scenario not in part.scenarios:
                raise SuiteError(f"{where}.scenarios: {scenario!r} is not in part {part.name}")
        for algorithm in [suite.reference, *claim.versus]:
            if algorithm not in part.algorithms:
                raise SuiteError(f"{where}: {algorithm!r} is not run in part {part.name}")


def plan_runs(suite: Suite) -> list[PlannedRun]:
    """Every run, in the order they are made: part by part, seed by seed (so that a cut-short
    reproduction has whole seeds), scenario by scenario, algorithm by algorithm."""
    runs = []
    for part in suite.parts:
        for seed in part.seeds or suite.seeds:
            for scenario, scenario_overrides in part.scenarios.items():
                for algorithm in part.algorithms:
                    overrides = (
                        *suite.overrides,
                        *part.overrides,
                        *scenario_overrides,
                        *part.methods.get(algorithm, [f"algorithm={algorithm}"]),
                        f"seed={seed}",
                    )
                    runs.append(
                        PlannedRun(part.name, scenario, algorithm, seed, overrides, part.dataset)
                    )
    return runs
