"""The testbed under failure, through the real CLI: runs that lose nodes killed hard at random
instants, a live node fed fuzzed frames, and Ctrl-C at random instants."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import psutil
import zmq

from bench.common import ROOT, Sizes, save
from node.files import read_jsonl
from transport import Message, pack, stamp

MAX_MESSAGE_BYTES = 1 << 20  # the fuzzed run's transport.max_message_bytes
KINDS = ("random", "bad_field", "wrong_size", "unknown_kind", "oversized", "pickle")


def bench_reliability(sizes: Sizes, results: Path) -> None:
    work = results / "reliability-runs"
    shutil.rmtree(work, ignore_errors=True)  # a run dir reused would show the last run's files
    kills = _kill_runs(sizes, work / "kills")
    fuzz = _fuzz(sizes, work / "fuzz")
    ctrl_c = _ctrl_c(sizes, work / "ctrl_c")
    save(
        results,
        "reliability",
        {
            "kills": kills,
            "fuzz": fuzz,
            "ctrl_c": ctrl_c,
            "meets_target": kills["all_ok"] and fuzz["all_counted"] and ctrl_c["all_ok"],
        },
    )


# ---------------------------------------------------------------- the CLI in a process group


def _start(run_dir: Path, sizes: Sizes, *overrides: str, degree: int | None = None):
    """The CLI on DivShare with `degree` peers per fragment (the sizes' small one if set), on
    dilated wall time: the instants it kills at and interrupts at are wall instants."""
    args = [sys.executable, "-m", "launcher", f"hydra.run.dir={run_dir}", "clock=wall"]
    args += sizes.extra
    if sizes.small_degree or degree:
        args.append(f"algorithm.degree={sizes.small_degree or degree}")
    return subprocess.Popen(
        [*args, *overrides],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group: a Ctrl-C reaches all of it, as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"reliability: {what} did not happen in {timeout:.0f} s")
        time.sleep(0.1)


def _training_started(run_dir: Path) -> bool:
    log = run_dir / "main.log"
    return log.is_file() and "time-dilation factor" in log.read_text()


def _group_left(group: int) -> list[int]:
    """Processes of the launcher's session still alive (zombies are gone already)."""
    left = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(proc.info["pid"]) == group and proc.info["status"] != "zombie":
                left.append(proc.info["pid"])
        except (ProcessLookupError, PermissionError):
            continue
    return left


def _summary(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- nodes killed hard


def _kill_runs(sizes: Sizes, work: Path) -> dict:
    """`runs` runs of `nodes` nodes; in each, 10% of them (at least one) SIGKILLed by this
    benchmark at random instants of the training: every run must end degraded, name every
    death, and carry the survivors' curve to the end."""
    rng, duration, tdf = random.Random(12), sizes.reliability_seconds, sizes.reliability_tdf
    count = max(1, sizes.reliability_nodes // 10)
    runs = []
    for i in range(sizes.reliability_runs):
        run_dir = work / f"{i:02d}"
        proc = _start(
            run_dir, sizes, f"num_nodes={sizes.reliability_nodes}", f"duration={duration}",
            f"tdf={tdf}",
        )  # fmt: skip
        victims = sorted(rng.sample(range(sizes.reliability_nodes), count))
        shares = sorted(rng.uniform(0.1, 0.9) for _ in victims)
        try:
            _wait_for(lambda d=run_dir: _training_started(d), 300, "the start")
            t0 = time.monotonic() + 1.0  # the launcher starts the clock 1 s after saying so
            pids = json.loads((run_dir / "pids.json").read_text())["nodes"]
            for node, share in zip(victims, shares, strict=True):
                time.sleep(max(0.0, t0 + share * duration * tdf - time.monotonic()))
                with contextlib.suppress(ProcessLookupError):  # died already: named anyway
                    os.kill(pids[str(node)], signal.SIGKILL)
            code = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        summary = _summary(run_dir) or {}
        curve = summary.get("curve") or [{}]
        record = {
            "exit_code": code,
            "status": summary.get("status"),
            "killed": victims,
            "killed_at_share": [round(s, 3) for s in shares],
            "named": sorted(int(n) for n in summary.get("departed", {})),
            "named_at": summary.get("departed"),
            "curve_end_t": curve[-1].get("t"),
            "curve_end_nodes": curve[-1].get("nodes"),
            "lagged": (summary.get("lag") or {}).get("lagged"),
        }
        record["ok"] = (
            code == 3
            and record["status"] == "degraded"
            and record["named"] == victims
            and record["curve_end_t"] == duration
            and record["curve_end_nodes"] == sizes.reliability_nodes - count
        )
        runs.append(record)
        print(f"kills {i}: {record}", flush=True)
    ok = sum(r["ok"] for r in runs)
    return {
        "nodes": sizes.reliability_nodes,
        "killed_per_run": count,
        "duration_emulated_s": duration,
        "tdf": tdf,
        "runs_ok": f"{ok} of {len(runs)}",
        "all_ok": ok == len(runs),
        "runs": runs,
    }


# ---------------------------------------------------------------- fuzzed frames


def fuzz_frames(rng: random.Random, target: int, max_bytes: int) -> tuple[str, list[bytes]]:
    """One malformed message for node `target`, of a kind drawn at random: garbage, a real
    header with one field wrong, a buffer of the wrong size, an undeclared kind, too many
    bytes, or a pickle; the receiver must drop and count every one."""
    kind = rng.choice(KINDS)
    vec = np.arange(10, dtype=np.float32)
    real = Message("fragment", 1, target, 3, 0, (vec,))
    packed = pack(real)
    frames = [bytes(f) for f in stamp(packed, 0.5, 0.6)]
    if kind == "random":
        return kind, [rng.randbytes(rng.randrange(0, 2000)) for _ in range(rng.randrange(1, 4))]
    header = msgpack.unpackb(frames[0], raw=False)
    if kind == "bad_field":
        field, value = rng.choice(
            [
                ("v", 99),
                ("src", 10_000),  # a sender it does not know
                ("dst", target + 1),  # misaddressed
                ("round", "three"),
                ("aux", {"x": [1, 2]}),
                ("bufs", [["float32", [10], 40], ["float32", [10], 40]]),
                ("bufs", [["object", [10], 40]]),
                ("t_start", "soon"),
            ]
        )
        header[field] = value
        return kind, [msgpack.packb(header), *frames[1:]]
    if kind == "wrong_size":
        return kind, [frames[0], frames[1][: rng.randrange(0, 40)]]
    if kind == "unknown_kind":
        header["kind"] = rng.choice(["evil", "model_", "FRAGMENT", "x" * 40])
        return kind, [msgpack.packb(header), *frames[1:]]
    if kind == "oversized":
        n = max_bytes // 4 + 1
        header["bufs"] = [["float32", [n], 4 * n]]
        return kind, [msgpack.packb(header), bytes(4 * n)]
    return kind, [pickle.dumps({"kind": "fragment", "src": 1, "dst": target, "payload": vec})]


def _fuzz(sizes: Sizes, work: Path) -> dict:
    """A 4-node run; as soon as it trains, `fuzz_frames` of every kind are pushed into node 0
    as fast as it takes them (ZeroMQ blocks the fuzzer when node 0's queue is full, so the
    rate measured is what the node absorbs). Every one must be counted, the run must end ok,
    and node 0 must keep its timing and get its peers' messages like the others."""
    duration, tdf = sizes.fuzz_seconds, sizes.reliability_tdf
    run_dir = work
    proc = _start(
        run_dir, sizes, "num_nodes=4", f"duration={duration}", f"tdf={tdf}",
        f"transport.max_message_bytes={MAX_MESSAGE_BYTES}", degree=2,
    )  # fmt: skip
    rng, sent, by_kind = random.Random(5), 0, dict.fromkeys(KINDS, 0)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    try:
        _wait_for(lambda: _training_started(run_dir), 300, "the start")
        sock.connect(json.loads((run_dir / "endpoints.json").read_text())["0"])
        time.sleep(1.5)  # past t0
        started = time.monotonic()
        for _ in range(sizes.fuzz_frames):
            kind, frames = fuzz_frames(rng, 0, MAX_MESSAGE_BYTES)
            try:
                sock.send_multipart(frames)
            except zmq.Again:  # node 0 took nothing for 5 s: it is gone (or the run ended)
                break
            sent += 1
            by_kind[kind] += 1
        seconds = time.monotonic() - started
        code = proc.wait(timeout=600)
    finally:
        sock.close()
        ctx.term()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    summary = _summary(run_dir) or {}
    records = {n: read_jsonl(run_dir / "nodes" / f"{n:03d}.jsonl") for n in range(4)}
    last = {n: r[-1] if r else {} for n, r in records.items()}
    behind = {
        n: max((x.get("behind_max", 0.0) for x in r), default=0.0) for n, r in records.items()
    }
    delivered = {n: last[n].get("messages_delivered", 0) for n in range(4)}
    malformed = {n: last[n].get("messages_malformed", 0) for n in range(4)}
    others = [delivered[n] for n in (1, 2, 3)]
    return {
        "frames": sent,
        "frames_planned": sizes.fuzz_frames,
        "by_kind": by_kind,
        "seconds": round(seconds, 2),
        "frames_per_s": round(sent / seconds),
        "exit_code": code,
        "status": summary.get("status"),
        "malformed_counted": summary.get("totals", {}).get("messages_malformed"),
        "malformed_by_node_at_last_round": malformed,
        "all_counted": summary.get("totals", {}).get("messages_malformed") == sent
        and sent == sizes.fuzz_frames
        and summary.get("status") == "ok",
        "delivered_node0_vs_others": round(delivered[0] / max(1, np.mean(others)), 3),
        "behind_max_s": behind,
        "lagged": (summary.get("lag") or {}).get("lagged"),
        "duration_emulated_s": duration,
        "tdf": tdf,
    }


# ---------------------------------------------------------------- Ctrl-C


def _ctrl_c(sizes: Sizes, work: Path) -> dict:
    """`ctrl_c_trials` runs interrupted at random instants (start-up, calibration, training):
    no process of the run may be left 5 s later, and the summary must parse every time."""
    rng, trials = random.Random(7), []
    for i in range(sizes.ctrl_c_trials):
        run_dir = work / f"{i:02d}"
        proc = _start(
            run_dir, sizes, f"num_nodes={sizes.ctrl_c_nodes}",
            f"duration={sizes.ctrl_c_seconds}", f"tdf={sizes.tdf}",
        )  # fmt: skip
        after = rng.uniform(0.5, sizes.ctrl_c_window)
        try:
            time.sleep(after)
            started = (run_dir / "pids.json").is_file()  # processes were started
            phase = "training" if _training_started(run_dir) else "start-up or calibration"
            phase = phase if started else "before any node process (imports, validation, data)"
            finished = proc.poll() is not None
            with contextlib.suppress(ProcessLookupError):  # the run had ended: nothing to stop
                os.killpg(proc.pid, signal.SIGINT)
            sent = time.monotonic()
            left = _group_left(proc.pid)
            while left and time.monotonic() - sent < 5.0:
                time.sleep(0.1)
                left = _group_left(proc.pid)
            gone_after = time.monotonic() - sent
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        summary = _summary(run_dir)
        record = {
            "after_s": round(after, 2),
            "phase": "already finished" if finished else phase,
            "exit_code": code,
            "left_after_5s": left,
            "all_gone_after_s": round(gone_after, 2),
            "summary_parses": summary is not None,
            "status": (summary or {}).get("status"),
        }
        record["ok"] = not left and summary is not None  # even before any node process
        trials.append(record)
        print(f"ctrl-c {i}: {record}", flush=True)
    ok = sum(t["ok"] for t in trials)
    return {
        "nodes": sizes.ctrl_c_nodes,
        "trials_ok": f"{ok} of {len(trials)}",
        "all_ok": ok == len(trials),
        "max_all_gone_after_s": max(t["all_gone_after_s"] for t in trials),
        "trials": trials,
    }
