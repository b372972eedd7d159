"""How the merger shares the output budget between ranks when it must cut (merge.py)."""

from __future__ import annotations

from hpckernel.hub.merge import describe_cuts, fair_shares


def test_small_demands_are_met_whole_and_the_rest_split_evenly() -> None:
    assert fair_shares([10, 1000, 20, 5000], 1000) == [10, 485, 20, 485]
    assert fair_shares([10, 20], 1000) == [10, 20]
    assert sum(fair_shares([7, 7, 7], 10)) == 10
    assert fair_shares([], 5) == []


def test_cuts_are_named_by_rank_largest_first() -> None:
    assert describe_cuts({0: 5_000_000, 1: 10, 2: 10}) == (
        "5.0 MB from rank 0, 10 B each from ranks 1-2")
    assert describe_cuts({r: r + 1 for r in range(6)}, most=2) == (
        "6 B from rank 5, 5 B from rank 4, less from 4 more ranks")
