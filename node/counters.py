"""What a node counts during a run (its lag, steps, rounds, losses, CPU), fresh at its start."""

from __future__ import annotations


def fresh_counters() -> dict:
    """What a node counts during a run, before it starts."""
    return {
        "behind_max": 0.0,  # emulated seconds the latest action came after its instant
        "late_actions": 0,
        "steps": 0,
        "rounds": 0,
        "rejected_messages": 0,
        "outbox_overflow": 0,
        "ready_misses": 0,
        "slack_min": 1.0,  # the least share of a burst's span left when it was done
        "cpu_s": 0.0,  # the process's, every thread, during the run
        "cpu_compute_s": 0.0,  # the training thread's in its local steps
        "left": 0,  # a scenario's graceful leaves and joins of this node
        "joined": 0,
        "stale_on_join": 0,  # delivered before it left, never taken: dropped at its join
    }
