"""Link shaping in emulated time: a pure token bucket scheduled by virtual finish time."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

INF = float("inf")


class TokenBucket:
    """A serial link of `rate_bps` with an optional burst allowance, on an injected clock.

    Scheduling by virtual finish time (`free_at = max(now, free_at) + size/rate`) instead of
    sleep-then-refill means a late wake-up never loses capacity: the next message starts from
    when the link really became free, not from when the sender noticed.

    `rate_bps=float("inf")` is an unlimited link: every message takes zero time on it.

    `changes` ((t, rate_bps), ...) are a scenario's rate changes, each in force from its
    emulated instant on: a message on the link while the rate changes crosses the rest of
    its bits at the new rate, whenever it was booked, as what is already queued would.
    """

    def __init__(
        self,
        rate_bps: float,
        burst_bytes: int = 0,
        clock: Callable[[], float] = None,
        changes: Sequence[tuple[float, float]] = (),
    ):
        for rate in (rate_bps, *(r for _, r in changes)):
            if not rate > 0:  # also refuses NaN
                raise ValueError("rate_bps must be > 0 (float('inf') for unlimited)")
        if burst_bytes < 0:
            raise ValueError("burst_bytes must be >= 0")
        if clock is None:
            raise ValueError("a clock is required (emulated seconds)")
        self.rate_bps = float(rate_bps)
        self.burst_s = burst_bytes * 8.0 / self.rate_bps
        self.clock = clock
        self.free_at = float("-inf")
        self.changes = sorted((float(t), float(r)) for t, r in changes)
        self._change_times = [t for t, _ in self.changes]

    def rate_at(self, t: float) -> float:
        """The rate in force at emulated `t`."""
        i = bisect.bisect_right(self._change_times, t)
        return self.changes[i - 1][1] if i else self.rate_bps

    def finish(self, start: float, nbytes: int) -> float:
        """When `nbytes` starting at `start` have crossed, at the rates in force meanwhile."""
        bits, t = nbytes * 8.0, start
        i = bisect.bisect_right(self._change_times, start)
        rate = self.changes[i - 1][1] if i else self.rate_bps
        while True:
            if rate == INF:
                return t
            if i == len(self.changes) or bits <= (self.changes[i][0] - t) * rate:
                return t + bits / rate
            bits -= (self.changes[i][0] - t) * rate
            t, rate = self.changes[i]
            i += 1

    def reserve(self, nbytes: int, at: float | None = None) -> tuple[float, float]:
        """Book `nbytes` starting no earlier than `at` (default now): returns (start, finish).

        `at` may lie in the past: a message queued while the link was busy starts when the
        link freed, not when the caller got round to asking.

        The burst allowance lets a link idle long enough send `burst_bytes` at once, as a
        token bucket of that depth would.
        """
        now = self.clock() if at is None else at
        start = max(now - self.burst_s, self.free_at)
        finish = self.finish(start, nbytes)
        self.free_at = finish
        return max(start, now - self.burst_s), max(finish, now)

    def abort(self, now: float | None = None) -> None:
        """What was booked on the link was cut: the link is free from `now`, not from its finish."""
        now = self.clock() if now is None else now
        self.free_at = min(self.free_at, now)


class Egress:
    """A node's uplink plus optional per-destination paths: the timing of `Sender`'s model.

    `reserve` books the uplink (serial), then the path to `dst` from the uplink start on, and
    returns `(u_end, t_start, t_end)`: the message leaves the uplink at `u_end` and has fully
    crossed its path at `t_end`, the later of the two finishes. Without a path for `dst` it is
    the uplink alone.
    """

    def __init__(self, uplink: TokenBucket, paths: dict[int, TokenBucket] | None = None):
        self.uplink = uplink
        self.paths = dict(paths or {})

    def reserve(self, dst: int, nbytes: int, at: float | None = None) -> tuple[float, float, float]:
        u_start, u_end = self.uplink.reserve(nbytes, at=at)
        path = self.paths.get(dst)
        if path is None:
            return u_end, u_start, u_end
        p_start, p_end = path.reserve(nbytes, at=u_start)
        return u_end, max(u_start, p_start), max(u_end, p_end)

    def cut(self, now: float | None = None) -> None:
        """Everything not yet fully sent was cut at `now`: the uplink and every path free then."""
        now = self.uplink.clock() if now is None else now
        self.uplink.abort(now)
        for path in self.paths.values():
            path.abort(now)


class Downlink:
    """Receiving side of a path: cut-through, so bytes flow into the downlink as they arrive.

    A message whose first byte arrives at `t_start + latency` and whose last byte left the
    sender at `t_end` is delivered when both the downlink has carried it and the last byte has
    crossed the latency: `max(t_end + latency, downlink finish)`.

    A message's latency is the one in force when it starts (`latency_changes`: (t, seconds)
    from a scenario); the rate may change as the uplink's does (`rate_changes`).
    """

    def __init__(
        self,
        rate_bps: float,
        latency_s: float,
        clock: Callable[[], float],
        rate_changes: Sequence[tuple[float, float]] = (),
        latency_changes: Sequence[tuple[float, float]] = (),
    ):
        if latency_s < 0 or any(lat < 0 for _, lat in latency_changes):
            raise ValueError("latency_s must be >= 0")
        self.bucket = TokenBucket(rate_bps, clock=clock, changes=rate_changes)
        self.latency_s = float(latency_s)
        self.latency_changes = sorted((float(t), float(lat)) for t, lat in latency_changes)
        self._latency_times = [t for t, _ in self.latency_changes]

    def latency_at(self, t: float) -> float:
        i = bisect.bisect_right(self._latency_times, t)
        return self.latency_changes[i - 1][1] if i else self.latency_s

    def book(self, nbytes: int, t_start: float, t_end: float) -> tuple[float, float, float]:
        """Reserve the downlink for a message: (downlink start, downlink finish, delivery)."""
        latency = self.latency_at(t_start)
        start, finish = self.bucket.reserve(nbytes, at=t_start + latency)
        return start, finish, max(t_end + latency, finish)

    def deliver_at(self, nbytes: int, t_start: float, t_end: float) -> float:
        return self.book(nbytes, t_start, t_end)[2]

    def rebook(
        self, queued: list[tuple[int, float, float]], free_from: float
    ) -> list[tuple[float, float, float]]:
        """Messages cut from the queue free their share: the link is free from `free_from`
        and `queued` (nbytes, t_start, t_end), in their original order, are booked again."""
        self.bucket.free_at = free_from
        return [self.book(*q) for q in queued]
