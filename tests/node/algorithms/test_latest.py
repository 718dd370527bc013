"""The latest value per source that DivShare, Swift and AD-PSGD merge."""

from node.algorithms.latest import Latest


def test_an_overtaken_value_is_ignored_and_take_empties_in_arrival_order():
    latest = Latest()
    latest.offer(2, 5, "b5")
    latest.offer((1, 0), 4, "a4")
    latest.offer(2, 3, "b3")  # older than the kept round 5: overtaken on its way
    latest.offer((1, 0), 4, "a4 again")  # the same round: the later arrival kept
    assert len(latest) == 2 and latest.staleness(6) == (1 + 2) / 2
    assert latest.take() == [(2, "b5"), ((1, 0), "a4 again")]
    assert len(latest) == 0 and latest.take() == []
