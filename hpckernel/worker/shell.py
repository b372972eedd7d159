"""The IPython shell each rank runs cells in."""

from __future__ import annotations

import linecache
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from IPython.core.compilerop import CachingCompiler
from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.interactiveshell import InteractiveShell
from traitlets import Instance, Type, default
from traitlets.config import Configurable

from ..plane.headers import PlaneHeader
from .capture import RankDisplayHook, RankDisplayPublisher

if TYPE_CHECKING:  # ≈10 ms of a rank's start: imported when first completing (Completer)
    from IPython.core.completer import IPCompleter

#: An error as ``sys.exc_info()`` gives it, as IPython's ``showtraceback`` takes it.
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

# The file name IPython gives the code of cell In[7].
_CELL = re.compile(r"<ipython-input-(\d+)-[0-9a-f]+>")


class CellCompiler(CachingCompiler):
    """IPython's compiler, naming the next cell as the hub says while the rank is debugged:
    the file the front end sets its breakpoints in (``worker/debugger.py``)."""

    next_name: str | None = None

    def get_code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        """The cell's file name: ``next_name`` once, else IPython's ``<ipython-input-…>``."""
        name, self.next_name = self.next_name, None
        return name or super().get_code_name(raw_code, transformed_code, number)


_K = TypeVar("_K")
_V = TypeVar("_V")


class _Unkept(dict[_K, _V]):
    """A mapping that keeps nothing: what is stored in it, or appended to what it gives,
    is dropped at once."""

    def __missing__(self, key: _K) -> list[object]:
        return []

    def __setitem__(self, key: _K, value: _V) -> None:
        pass


class CellTransformer(TransformerManager):
    """IPython's input transformer, without its token transforms for a cell that cannot hold
    IPython syntax.

    Those transforms (``a = %magic``, ``a = !cmd``, ``%magic``, ``!cmd``, ``obj?``, ``,f a``,
    ``;f a``, ``/f a``) tokenize the cell in Python: for a small cell most of the shell's
    work after compiling it. None of them can apply to a cell without ``%``, ``!`` or ``?``
    and without a line starting with ``,``, ``;`` or ``/``, where it returns the lines as
    they are. The tokenizer can still raise on its own (an unindent that matches no outer
    level, mixed tabs and spaces), which a cell needs two indentations for: such a cell, or
    a manager whose transforms were changed, takes IPython's way, and so gets its error."""

    def do_token_transforms(self, lines: list[str]) -> list[str]:
        """``lines`` as they are if plain Python, else IPython's transforms of them."""
        if self.token_transformers == _TOKEN_TRANSFORMERS and _plain_python(lines):
            return lines
        result: list[str] = super().do_token_transforms(lines)
        return result


_TOKEN_TRANSFORMERS = TransformerManager().token_transformers
_ESCAPES = frozenset("%!?")
_LINE_ESCAPES = (",", ";", "/")
_INDENT = " \t\f"  # what Python's tokenizer reads as indentation


def _plain_python(lines: list[str]) -> bool:
    """Whether none of IPython's token transforms can apply to ``lines``, nor its tokenizer
    raise (see CellTransformer)."""
    text = "".join(lines)
    if not _ESCAPES.isdisjoint(text) or text.count("\n") != len(lines):
        return False  # IPython syntax, or line breaks other than \n that splitlines sees
    indents = set()
    for line in lines:
        body = line.lstrip(_INDENT)
        if body.startswith(_LINE_ESCAPES):
            return False
        if body.strip() and len(body) < len(line):
            indents.add(line[:len(line) - len(body)])
    # One indentation at most (besides none): every unindent goes back to column 0.
    return len(indents) <= 1


class RankShell(InteractiveShell):
    """An InteractiveShell that reports errors and rich output instead of printing them.

    It keeps no copy of what a cell prints, displays or raises: IPython 9 records all of it
    for ``%notebook`` (``HistoryManager.outputs`` and ``.exceptions``, filled by
    ``InteractiveShell._tee``, which wraps ``sys.stdout.write`` and ``sys.stderr.write``
    during every cell, by ``DisplayHook.log_output`` and by ``run_cell``), even with history
    off, so a rank printing in a loop grew by what it printed (1 MB lines: 1.3 GB in 25 s).
    What the user sees is unchanged: the output goes to the hub as before, and ``In``,
    ``Out`` and ``_``/``__`` are kept as in any IPython shell.
    """

    displayhook_class = Type(RankDisplayHook)
    display_pub_class = Type(RankDisplayPublisher)
    compiler_class = Type(CellCompiler)
    compile: CellCompiler

    #: the last error of a cell (``ename``, ``evalue``, ``traceback``), for its reply
    last_error: PlaneHeader | None = None

    input_transformer_manager = Instance(TransformerManager)

    @default("input_transformer_manager")
    def _cell_transformer(self) -> TransformerManager:
        return CellTransformer()

    # Built at first use: IPython's completer module is ≈10 ms of CPU of every rank's start,
    # and most ranks never complete anything.
    _completer: IPCompleter | None = None
    _ready = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._ready = True

    def init_io(self) -> None:
        """Nothing: sys.stdout/sys.stderr are the rank's OutStreams, set up by the runner."""

    def init_history(self) -> None:
        """IPython's history manager, keeping no outputs or exceptions (see the class)."""
        super().init_history()
        history = self.history_manager
        assert history is not None
        # An instance attribute over IPython's class-level defaultdict (shared by all).
        history.outputs = _Unkept()  # type: ignore[assignment]
        history.exceptions = _Unkept()

    @contextmanager
    def _tee(self, channel: str) -> Iterator[None]:
        # IPython's version wraps the stream's write to keep a copy of every write.
        yield

    def init_completer(self) -> None:
        """Nothing yet: the ``Completer`` property builds it when first asked for."""

    @property  # type: ignore[override]
    def Completer(self) -> IPCompleter:
        """IPython's completer, built at the first completion (or ``%config``)."""
        completer = self._completer
        if completer is None:
            super().init_completer()  # sets self.Completer, then adds it to configurables
            completer = self._completer
            assert completer is not None  # stored by the setter
            # Jedi finds nothing in a shell without a frontend; the namespace completer does.
            completer.use_jedi = False
        return completer

    @Completer.setter
    def Completer(self, value: IPCompleter) -> None:
        """Set by IPython's ``init_completer`` (called from the getter above)."""
        self._completer = value

    @property  # type: ignore[override]
    def configurables(self) -> list[Configurable]:
        """What ``%config`` lists and sets: the completer is one of them once the shell is
        up."""
        if self._ready and self._completer is None:
            self.Completer  # noqa: B018 (builds it)
        return self._configurables

    @configurables.setter
    def configurables(self, value: list[Configurable]) -> None:
        """Set by ``InteractiveShell.__init__``."""
        self._configurables = value

    def should_run_async(self, raw_cell: str, *, transformed_cell: str | None = None,
                         preprocessing_exc_tuple: ExcInfo | None = None) -> bool:
        """Whether the cell awaits at top level. IPython compiles the cell an extra time to
        find out; a cell can only if it holds the keyword ``await`` or ``async``."""
        if (transformed_cell is not None and "await" not in transformed_cell
                and "async" not in transformed_cell):
            return False
        result: bool = super().should_run_async(
            raw_cell, transformed_cell=transformed_cell,
            preprocessing_exc_tuple=preprocessing_exc_tuple)
        return result

    def enable_gui(self, gui: str | None = None) -> None:
        """Nothing: ranks have no GUI event loop (matplotlib's inline backend still works)."""

    def showtraceback(self, exc_tuple: ExcInfo | None = None, filename: str | None = None,
                      tb_offset: int | None = None, exception_only: bool = False,
                      running_compiled_code: bool = False) -> None:
        """Record the error for the reply (``_showtraceback``); a KeyboardInterrupt with a
        short traceback: the user interrupted and knows where."""
        # <1 ms of CPU on every rank instead of IPython's verbose formatter (run twice, see
        # below: ≈20-35 ms per interrupt, ≈110-170 ms the first time, which sets up pygments).
        try:
            etype, value, tb = self._get_exc_info(exc_tuple)  # also sets sys.last_* (%tb)
        except ValueError:
            etype = value = tb = None
        if (isinstance(etype, type) and issubclass(etype, KeyboardInterrupt)
                and not exception_only and not self.call_pdb
                and not hasattr(value, "_render_traceback_")):
            self._showtraceback(etype, value, self._short_traceback(etype, value, tb))
            return
        super().showtraceback(exc_tuple, filename, tb_offset, exception_only,
                              running_compiled_code)

    def _format_exception_for_storage(self, exception: BaseException, *args: object,
                                      **kwargs: object) -> dict[str, object]:
        # IPython ≥ 9 formats each error a second time (≈20-35 ms of every rank) for its
        # in-memory history, which keeps nothing here (``init_history``).
        return {}

    def _short_traceback(self, etype: type[BaseException], value: BaseException,
                         tb: TracebackType | None) -> list[str]:
        """The cell's line and the innermost frame, in the layout of IPython's tracebacks."""
        frames: list[tuple[str, int, str]] = []
        while tb is not None:
            code = tb.tb_frame.f_code
            frames.append((code.co_filename, tb.tb_lineno, code.co_name))
            tb = tb.tb_next
        cells = [i for i, (name, _, _) in enumerate(frames) if _CELL.fullmatch(name)]
        shown = sorted({cells[0], len(frames) - 1} if cells else
                       ({len(frames) - 1} if frames else set()))
        if self.colors.lower() == "nocolor":
            red = cyan = green = end = ""
        else:
            red, cyan, green, end = "\x1b[31m", "\x1b[36m", "\x1b[32m", "\x1b[39m"
        name = etype.__name__
        stb = [f"{red}{'-' * 75}{end}",
               f"{red}{name}{end}{' ' * max(1, 42 - len(name))}Traceback (most recent call last)"]
        for n, i in enumerate(shown):
            if n and i > shown[n - 1] + 1:
                stb.append("   [... frames in between not shown]")
            filename, lineno, function = frames[i]
            cell = _CELL.fullmatch(filename)
            where = (f"{cyan}Cell{end} {green}In[{cell[1]}], line {lineno}{end}" if cell else
                     f"{cyan}File{end} {green}{filename}:{lineno}{end}")
            if function != "<module>":
                where += f", in {cyan}{function}{end}()"
            line = linecache.getline(filename, lineno).rstrip()
            arrow = f"{'-' * max(1, 5 - len(str(lineno)))}> "
            stb.append(f"{where}\n{green}{arrow}{lineno}{end} {line}\n" if line else f"{where}\n")
        stb.append(f"{red}{name}{end}: {value}")
        return stb

    def _showtraceback(self, etype: type[BaseException] | None, evalue: BaseException | None,
                       stb: list[str]) -> None:
        # Called by IPython for every error in a cell: keep it for the reply.
        self.last_error = {"ename": getattr(etype, "__name__", str(etype)),
                           "evalue": str(evalue), "traceback": list(stb)}
