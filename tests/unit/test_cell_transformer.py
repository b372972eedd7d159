"""The ranks' input transformer (``worker/shell.CellTransformer``) skips IPython's token
transforms for plain Python: whatever the cell, it must give what IPython's own gives, the
same text or the same error."""

from __future__ import annotations

import random
from typing import Any

import pytest
from IPython.core.inputtransformer2 import TokenTransformBase, TransformerManager

from hpckernel.worker import shell

CELLS = [
    "pass", "x = 1\ny = 2", "for i in range(3):\n    print(i)\nz = 1",
    "def f():\n    for i in x:\n        y()\n    return y",
    "if 1:\n        x = 1\n    y = 2\n",  # the tokenizer's IndentationError
    "\tif 1:\n  \tpass\n", "  x = 1\n  y = 2", "x = (1\n     , 2)", "'''\n  doc\n'''",
    "x = 1 \\\n  + 2", ">>> x = 1\n... y", "In [1]: x = 1", "x=1\r\ny=2", "s = 'a\\rb'",
    "%time x", "x?", "x??", "a = !ls", "!ls", ",f a b", ";f a b", "/f a", "a = %who_ls",
    "%%timeit\nx", "print(1)\n%time x", "for i in r:\n    !echo {i}", "await x",
]


def _transform(manager: TransformerManager, cell: str) -> str:
    try:
        return manager.transform_cell(cell)
    except Exception as e:  # the error must be the same too
        return f"{type(e).__name__}: {e}"


@pytest.mark.parametrize("cell", CELLS)
def test_a_cell_is_transformed_as_ipython_does(cell: str) -> None:
    assert _transform(shell.CellTransformer(), cell) == _transform(TransformerManager(), cell)


def test_random_cells_are_transformed_as_ipython_does(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    pieces = ["x", "y = 1", "if x:", "for i in r:", "pass", "(", ")", "[1,", "2]", "'''",
              '"', "'", "#c", "\\", "a", "f(", "  ", "\t", "=", ":", "0", "else:",
              "return 1", "%", "?", "!", ",", ";", "/", "\f", "\r", "\x0b"]
    indents = ["", "", "    ", "        ", "\t", "  ", " \t"]
    fast = 0
    plain = shell._plain_python

    def counted(lines: list[str]) -> bool:
        nonlocal fast
        result = plain(lines)
        fast += result
        return result

    monkeypatch.setattr(shell, "_plain_python", counted)
    ours, ipython = shell.CellTransformer(), TransformerManager()
    rng = random.Random(20)
    for _ in range(3000):
        cell = "\n".join(rng.choice(indents) + "".join(
            rng.choice(pieces) for _ in range(rng.randint(1, 3)))
            for _ in range(rng.randint(1, 6)))
        assert _transform(ours, cell) == _transform(ipython, cell), repr(cell)
    assert fast > 300  # the short way was taken, and gave the same


class _PassToNone(TokenTransformBase):
    """A token transform of a user's: a line ``pass`` becomes ``None``."""

    @classmethod
    def find(cls, tokens_by_line: list[list[Any]]) -> _PassToNone | None:
        for line in tokens_by_line:
            if line and line[0].string == "pass":
                return cls(line[0].start)
        return None

    def transform(self, lines: list[str]) -> list[str]:
        return [*lines[:self.start_line], "None\n", *lines[self.start_line + 1:]]


def test_changed_transforms_take_ipythons_way() -> None:
    manager = shell.CellTransformer()
    manager.token_transformers = [*manager.token_transformers, _PassToNone]
    assert manager.transform_cell("pass") == "None\n"
