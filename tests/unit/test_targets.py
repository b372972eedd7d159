"""Target specs a user types and rank ranges plane messages carry (hpckernel.targets): every
bad spec is a TargetError that says what is wrong; ranges beyond the kernel are refused
before a list of them is made."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from hpckernel.targets import (
    MAX_RANKS,
    RankRangeError,
    TargetError,
    format_ranks,
    parse_ranks,
    parse_targets,
    rank_intervals,
)


@pytest.mark.parametrize(("spec", "words"), [
    ("::0", "bad slice ::0: its step cannot be 0"),
    (slice(0, 4, 0), "bad slice 0:4:0: its step cannot be 0"),
    ("1:2:3:4", "bad slice '1:2:3:4': use start:stop[:step]"),
    (slice("a", None), "its start 'a' is not a number"),
    (1.5, "bad targets 1.5 (a float)"),
    ([0, "x"], "'x' is not a rank number"),
    (True, "bad targets True"),
    ("0-3", "'0-3' is how labels write ranks 0 to 3; as targets write 0:4"),
    ("1e3", "bad targets '1e3': use a rank (0)"),
    ("9", "rank 9 does not exist: this kernel has 4 ranks (0-3)"),
    ([-5], "rank -5 does not exist"),
    ("2:2", "targets '2:2' select no ranks"),
    ([], "select no ranks"),
    ("1" * 5000, "bad targets '111"),
    (object(), "(a object)"),
])
def test_every_bad_target_spec_is_a_target_error_naming_the_problem(spec: object,
                                                                    words: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_targets(spec, 4)  # type: ignore[arg-type]
    assert words in str(caught.value)
    assert len(str(caught.value)) < 200
    # IPython shows the message, not the hub's stack
    assert caught.value._render_traceback_() == [f"TargetError: {caught.value}"]


def test_good_target_specs() -> None:
    import numpy as np

    assert parse_targets("0,2:4,-1", 8) == [0, 2, 3, 7]
    assert parse_targets([np.int64(2), 1], 4) == [1, 2]
    assert parse_targets(slice(None, None, -2), 4) == [1, 3]
    assert parse_targets(None, 3) == parse_targets("all", 3) == [0, 1, 2]


def test_plane_rank_ranges_beyond_the_kernel_are_refused_without_making_a_list() -> None:
    texts = ("0-40000000", f"0-{MAX_RANKS}", "0-3,0-3,0-3", "0," * 1_000_000, "3-1", "x",
             "1-", "+1", " 1", "٣", "1" * 5000)
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        for text in texts:
            with pytest.raises(RankRangeError):
                parse_ranks(text, 8)
            with pytest.raises(ValueError):  # what handlers of plane messages catch
                rank_intervals(text, 8)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10**5, f"refusing ranges took {peak / 1e6:.1f} MB"
    assert elapsed < 1.0
    # without the kernel's size, a reader still has a bound
    with pytest.raises(RankRangeError, match="beyond the kernel's"):
        parse_ranks("0-40000000")


def test_plane_rank_ranges_within_the_kernel_read_back() -> None:
    ranks = [0, 1, 2, 3, 5, 9]
    assert parse_ranks(format_ranks(ranks), 10) == ranks
    assert rank_intervals("0-3,5", 6) == [(0, 3), (5, 5)]
    assert parse_ranks("", 4) == []
