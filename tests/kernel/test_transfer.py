"""Data in and out of the ranks: --in/--out/--scatter/--concat, %push/%pull, scatter/gather,
and a pipeline that mixes cluster and local steps."""

from __future__ import annotations

from .harness import Kernel


def test_in_scatter_and_out_concat_round_trip(kernel: Kernel) -> None:
    kernel.ok("%%local\nimport numpy as np\ndata = np.arange(10.0)\nfactor = 3")
    kernel.ok("%%px --in data --scatter --out piece --concat\npiece = data * 2")
    # array_split: 10 elements on 4 ranks are 3, 3, 2, 2
    checks = kernel.ok("%%local\nprint(type(piece).__name__, piece.tolist() == (data * 2)"
                       ".tolist())")
    assert checks.text() == "ndarray True\n"
    sizes = kernel.ok("%%px --in factor --out n\nn = len(data) * factor")
    assert sizes.text() == ""
    assert kernel.ok("%%local\nprint(n)").text() == "[9, 9, 6, 6]\n"


def test_out_without_concat_is_a_list_in_rank_order(kernel: Kernel) -> None:
    kernel.ok("%%px --targets 1:3 --out who --out twice\nwho = rank\ntwice = [rank] * 2")
    assert kernel.ok("%%local\nprint(who, twice)").text() == "[1, 2] [[1, 1], [2, 2]]\n"


def test_large_arrays_round_trip_through_the_magics(kernel: Kernel) -> None:
    kernel.ok("%%local\nimport numpy as np\nbig = np.random.default_rng(1).random(3_000_000)")
    kernel.ok("%push big --targets 0,3")
    kernel.ok("%%px --targets 0,3\nbig_sum = float(big.sum())")
    kernel.ok("%pull big_sum --targets 0,3")
    assert kernel.ok("%%local\nprint(np.allclose(big_sum, big.sum()), len(big_sum))").text() \
        == "True 2\n"
    kernel.ok("%push big --scatter")
    kernel.ok("%pull big --concat")
    assert kernel.ok("%%local\nprint(big.shape)").text() == "(3000000,)\n"


def test_px_magic_called_from_hub_code_moves_data_too(kernel: Kernel) -> None:
    result = kernel.ok("%%local\nseed = 7\n"
                       "get_ipython().run_cell_magic('px', '--in seed --out got', "
                       "'got = seed + rank')\nprint(got)")
    assert result.text() == "[7, 8, 9, 10]\n"


def test_ranks_scatter_and_gather(kernel: Kernel) -> None:
    result = kernel.ok(
        "%%local\nimport numpy as np\nm = np.arange(24).reshape(8, 3)\n"
        "ranks.scatter('rows', m)\n"
        "print(ranks.apply(lambda: rows.shape))\n"
        "print(np.array_equal(ranks.gather('rows'), m))\n"
        "ranks[1:3].scatter('half', np.arange(4))\n"
        "print(ranks[1:3].pull('half'), ranks[1:3].gather('half'))")
    assert result.text() == ("[(2, 3), (2, 3), (2, 3), (2, 3)]\nTrue\n"
                             "[array([0, 1]), array([2, 3])] [0 1 2 3]\n")


def test_local_and_cluster_steps_chain_into_a_pipeline(kernel: Kernel) -> None:
    # step 1, on the ranks: each produces its part of a result
    kernel.ok("%%px --out part --concat\nimport numpy as np\n"
              "part = np.full(2, rank, dtype=float)")
    # step 2, in the hub: consume what the ranks produced, prepare the next input
    local = kernel.ok("%%local\nprint(part.tolist())\nweights = part / part.sum()")
    assert local.text() == "[0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]\n"
    # step 3, on the ranks again: each gets its slice of the hub's result
    final = kernel.ok("%%px --in weights --scatter\nprint(rank, weights.tolist())")
    assert final.text() == ("[stdout:0] 0 [0.0, 0.0]\n[stdout:1] 1 [0.0833, 0.0833]\n"
                            .replace("0.0833", str(1 / 12))
                            + f"[stdout:2] 2 [{2 / 12}, {2 / 12}]\n"
                            + f"[stdout:3] 3 [{3 / 12}, {3 / 12}]\n")


def test_out_of_a_name_on_some_ranks_only_is_one_clear_error(kernel: Kernel) -> None:
    kernel.ok("%%local\nsome = 'kept'")
    result = kernel.run("%%px --out some\nprint('ran', flush=True)\nif rank % 2:\n"
                        "    some = rank")
    assert result.status == "error" and result.content["ename"] == "TransferError"
    assert result.content["evalue"] == (
        "--out: 'some' is not defined on ranks 0,2 (only ranks 1,3 have it), so nothing "
        "was gathered into the hub; get the others with ranks[[1, 3]].pull('some')")
    assert "[stdout:0-3] ran" in result.text()  # the cell's own output is not lost
    assert kernel.ok("%%local\nprint(some, ranks[[1, 3]].pull('some'))").text() == (
        "kept [1, 3]\n")
    assert kernel.ok("print('still fine')").text() == "[stdout:0-3] still fine\n"


def test_transfer_bad_input_gives_clear_errors(kernel: Kernel) -> None:
    cases = [
        ("%%px --in not_in_hub\npass", "TransferError",
         "--in: 'not_in_hub' is not defined in the hub: define it in a %%local cell"),
        ("%%local\nscalar = 5", None, None),
        ("%%px --in scalar --scatter\npass", "TransferError",
         "cannot scatter 'scalar': a int has no first axis to split"),
        ("%%px --out words --concat\nwords = 'a' if rank else 5", "TransferError",
         "cannot concatenate 'words' from the ranks (int, str)"),
        ("%%px --out table --concat\ntable = {'a': rank}", "TransferError",
         "cannot concatenate 'table' from the ranks (dict)"),
        ("%%px --out z --noblock\nz = 1", "UsageError", "--out needs the cell's end"),
        ("%%px --scatter\npass", "UsageError", "--scatter splits the --in values"),
        ("%push never_defined_in_hub", "TransferError",
         "'never_defined_in_hub' is not defined in the hub"),
        ("%pull never_defined_on_ranks", "TransferError",
         "'never_defined_on_ranks' is not defined on ranks 0-3"),
    ]
    for cell, ename, message in cases:
        result = kernel.run(cell)
        if ename is None:
            assert result.status == "ok"
            continue
        assert result.status == "error", cell
        assert result.content["ename"] == ename, (cell, result.content)
        assert message in result.content["evalue"], (cell, result.content["evalue"])
        errors = result.of_type("error")
        assert len(errors) == 1 and len(errors[0]["content"]["traceback"]) <= 3, errors
    assert kernel.ok("print('still fine')").text() == "[stdout:0-3] still fine\n"
