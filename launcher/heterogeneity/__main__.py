"""Trace files for `traces.*` and `network.matrix_file`:

    python -m launcher.heterogeneity fetch --out data/traces        # FedScale's, where online
    python -m launcher.heterogeneity convert PICKLE... --out DIR    # FedScale pickles -> CSV
    python -m launcher.heterogeneity synthesize --out DIR           # made-up files, same format

`fetch` downloads FedScale's device_info archive and converts its two pickles (through the
restricted loader: nothing in them is run) into client_device_capacity.csv and
client_behave_trace.csv. `synthesize` writes files of the same formats from distributions,
marked synthetic, for a machine with no internet (the project commits no trace data: FedScale
publishes it without a licence of its own)."""

from __future__ import annotations

import argparse
import csv
import pickle
import random
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from launcher.heterogeneity.fedscale import read_availability, read_devices
from node.checks import ConfigError

FEDSCALE_DEVICE_INFO = "https://fedscale.eecs.umich.edu/dataset/device_info.tar.gz"
DEVICE_CSV, AVAILABILITY_CSV = "client_device_capacity.csv", "client_behave_trace.csv"


def write_device_csv(devices: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["client_id", "computation", "communication", "ul_kbps", "dl_kbps"])
        for client in sorted(devices):
            d = devices[client]
            out.writerow([client, d.compute_ms, d.up_kbps, d.up_kbps, d.down_kbps])


def write_availability_csv(spans: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["client_id", "active", "inactive"])
        for client in sorted(spans):
            for a, b in spans[client]:
                out.writerow([client, a, b])


def convert(device: Path | None, availability: Path | None, out: Path) -> list[Path]:
    """FedScale's pickles, read through the restricted loader and checked, as CSV files."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if device:
        write_device_csv(read_devices(device), out / DEVICE_CSV)
        written.append(out / DEVICE_CSV)
    if availability:
        write_availability_csv(read_availability(availability), out / AVAILABILITY_CSV)
        written.append(out / AVAILABILITY_CSV)
    return written


def fetch(out: Path, url: str = FEDSCALE_DEVICE_INFO) -> list[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "device_info.tar.gz"
        urllib.request.urlretrieve(url, archive)  # noqa: S310 - a fixed https URL
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")  # no links out, no devices
        found = {p.name: p for p in Path(tmp).rglob("*") if p.is_file()}
        return convert(found.get("client_device_capacity"), found.get("client_behave_trace"), out)


def synthesize(out: Path, clients: int = 500, seed: int = 0, hours: float = 48.0) -> list[Path]:
    """Made-up traces in FedScale's pickle formats: compute ms per sample log-normal around
    ~100 (a tail 10x slower), bandwidth log-normal around ~5,600 kbit/s; each client active
    for spells of 1-6 h separated by 0.5-4 h over `hours`."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    devices = {
        c: {
            "computation": round(rng.lognormvariate(4.6, 0.6), 3),
            "communication": round(rng.lognormvariate(8.6, 0.8), 3),
        }  # fmt: skip
        for c in range(1, clients + 1)
    }
    behave = {}
    for c in range(1, clients + 1):
        t, active, inactive = rng.uniform(-3, 3) * 3600, [], []
        while t < hours * 3600:
            start, end = max(0.0, t), t + rng.uniform(1, 6) * 3600
            if end > 0:
                active.append(round(start, 1))
                inactive.append(round(end, 1))
            t = end + rng.uniform(0.5, 4) * 3600
        behave[c] = {"active": active, "inactive": inactive, "finish_time": hours * 3600,
                     "duration": hours * 3600, "synthetic": True}  # fmt: skip
    paths = [out / "client_device_capacity", out / "client_behave_trace"]
    for path, data in zip(paths, (devices, behave), strict=True):
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
    (out / "SYNTHETIC.txt").write_text(
        f"Made up by `python -m launcher.heterogeneity synthesize --clients {clients} --seed "
        f"{seed}`, in FedScale's formats: not measured data.\n"
    )
    return [*paths, *convert(paths[0], paths[1], out)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.heterogeneity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download FedScale's device traces and convert them")
    f.add_argument("--out", type=Path, default=Path("data/traces"))
    f.add_argument("--url", default=FEDSCALE_DEVICE_INFO)
    c = sub.add_parser("convert", help="FedScale pickles -> CSV (restricted loader)")
    c.add_argument("--device", type=Path)
    c.add_argument("--availability", type=Path)
    c.add_argument("--out", type=Path, default=Path("data/traces"))
    s = sub.add_parser("synthesize", help="made-up traces in FedScale's formats")
    s.add_argument("--out", type=Path, default=Path("data/traces"))
    s.add_argument("--clients", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            written = fetch(args.out, args.url)
        elif args.command == "convert":
            written = convert(args.device, args.availability, args.out)
        else:
            written = synthesize(args.out, args.clients, args.seed)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err} (no internet here? `synthesize` makes files offline)", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
