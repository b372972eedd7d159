"""Large buffers of a local rank's reply reach the hub through shared memory (/dev/shm):
intact, for any dtype or layout, mapped by the hub's arrays, and no segment is left behind;
small values and malformed segment names take the socket or are refused."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpckernel.plane import pack, shm, unpack
from hpckernel.plane.wire import to_shm

from .conftest import _close
from .harness import Kernel

# Run on the ranks and in the hub: a digest of every value that any change of bytes, dtype,
# shape or memory order would alter (a non-contiguous array arrives as a C-ordered copy).
DIGEST = """
import hashlib, numpy as np
def _digest(v):
    if isinstance(v, np.ndarray):
        order = "F" if v.flags.f_contiguous and not v.flags.c_contiguous else "C"
        return [str(v.dtype), list(v.shape), order,
                hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()]
    if isinstance(v, (list, tuple)):
        return [_digest(x) for x in v]
    if isinstance(v, dict):
        return {k: _digest(x) for k, x in sorted(v.items())}
    return hashlib.sha256(bytes(v) if isinstance(v, (bytes, bytearray)) else repr(v).encode()
                          ).hexdigest()
def _backing(a):
    # what the array's memory belongs to: a mapped segment ('mmap') or a ZMQ frame
    while isinstance(a, np.ndarray):
        a = a.base
    return type(a.obj if isinstance(a, memoryview) else a).__name__
"""

VALUES = """
rng = np.random.default_rng(rank)
grid = rng.random((64, 128, 64), dtype=np.float32)
values = {
    'f32_3d': grid,
    'c128': (rng.random(100_000) + 1j * rng.random(100_000)).astype(np.complex128),
    'i8': rng.integers(-128, 127, 3_000_000, dtype=np.int8),
    'bool': rng.random(2_000_000) > 0.5,
    'fortran': np.asfortranarray(rng.random((700, 300))),
    'transposed': rng.random((500, 400)).T,
    'strided': rng.random(1_000_000)[::3],
    'column': rng.random((2000, 300))[:, 7],
    'sliced_3d': grid[::2, 5:100, ::3],
    'records': np.zeros(100_000, dtype=[('x', 'f8'), ('n', 'i4'), ('tag', 'S5')]),
    'u16_big': np.arange(1_500_000, dtype=np.uint16),
    'small': np.arange(10.0) * rank,
    'empty': np.zeros((0, 5)),
    'blob': bytearray(rng.bytes(1_500_000)),
    'several': [rng.random(300_000) for _ in range(3)],
}
values['records']['x'] = rng.random(100_000)
"""


def _segments(prefix: str) -> list[str]:
    return sorted(n for n in os.listdir(shm.SHM_DIR) if n.startswith(prefix + "-"))


def _prefix(kernel: Kernel) -> str:
    """The kernel's segment prefix, as its rank 0 computes it from the plane file."""
    text = kernel.ok("%%px --targets 0\nimport sys\nfrom hpckernel.plane import "
                     "read_plane_info\nfrom hpckernel.plane.shm import prefix_for\n"
                     "print(prefix_for(read_plane_info(sys.argv[1])))").text()
    prefix = text.split()[-1]
    assert shm.PREFIX.match(prefix), text
    return prefix


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(tmp_path_factory.mktemp("shm"), ranks=2)
    k.ok(f"%%local\n{DIGEST}")
    k.ok(DIGEST)
    yield k
    _close(k)


def _free_shm() -> int:
    try:
        fs = os.statvfs(shm.SHM_DIR)
    except OSError:
        return 0
    return fs.f_bavail * fs.f_frsize


# The values below are moved through /dev/shm only where it has room to spare (shm.KEEP_FREE).
pytestmark = pytest.mark.skipif(_free_shm() < 1 << 30, reason="no /dev/shm with 1 GiB free")


def test_a_large_pull_arrives_intact_in_a_mapped_segment(kernel: Kernel) -> None:
    prefix = _prefix(kernel)
    kernel.ok("import numpy as np\nbig = np.random.default_rng(rank).random(2**21)\n"
              "big_digest = _digest(big)")
    for _ in range(3):  # and again: nothing accumulates in /dev/shm
        result = kernel.ok(
            "%%local\npulled = ranks.pull('big')\n"
            "print(ranks.pull('big_digest') == [_digest(a) for a in pulled])\n"
            "print([a.nbytes for a in pulled], {_backing(a) for a in pulled})\n"
            "pulled[0][:3] = -1.0\nprint(pulled[0][:4].tolist().count(-1.0))\n"
            "del pulled")
        assert result.text() == "True\n[16777216, 16777216] {'mmap'}\n3\n"
        assert _segments(prefix) == []


def test_many_dtypes_and_layouts_round_trip(kernel: Kernel) -> None:
    prefix = _prefix(kernel)
    kernel.ok(f"{VALUES}\nvalues_digest = _digest(values)")
    result = kernel.ok(
        "%%local\nimport numpy as np\nvalues = ranks.pull('values')\n"
        "print(ranks.pull('values_digest') == [_digest(v) for v in values])\n"
        "print(_backing(values[0]['f32_3d']), _backing(values[1]['u16_big']))\n"
        "print(values[1]['records']['tag'][:2].tolist(), values[0]['transposed'].flags"
        ".f_contiguous)")
    assert result.text() == "True\nmmap mmap\n[b'', b''] True\n"
    assert _segments(prefix) == []


def test_a_small_value_still_goes_through_the_socket(kernel: Kernel) -> None:
    kernel.ok("import numpy as np\nsmall = np.arange(1000.0) + rank\n"
              "under = np.ones((1 << 17) - 1)  # just under 1 MiB")
    result = kernel.ok("%%local\nsmall, under = ranks.pull('small'), ranks.pull('under')\n"
                       "print(small[1][:2].tolist(), {_backing(a) for a in small + under})\n"
                       "print(under[0].nbytes, under[0].sum())")
    assert result.text() == "[1.0, 2.0] {'Frame'}\n1048568 131071.0\n"


def test_no_segment_remains_after_shutdown(tmp_path: Path) -> None:
    k = Kernel(tmp_path, ranks=2)
    try:
        prefix = _prefix(k)
        k.ok("import numpy as np\nbig = np.ones(2**21)")
        k.ok("%%local\nkept = ranks.pull('big')\nprint(sum(a.sum() for a in kept))")
        assert _segments(prefix) == []
    finally:
        _close(k)
    assert _segments(prefix) == []


# The decoding side of the hub, with real segments in /dev/shm.

PREFIX = "hpckernel-" + os.urandom(8).hex()


def _frames(msg_type: str, segments: object) -> list[bytes]:
    return [msg_type.encode(), json.dumps({"id": "r", "shm": segments}).encode(), b""]


@pytest.fixture
def own_prefix() -> Iterator[None]:
    """Segments under :data:`PREFIX` that a failed test leaves are removed after it."""
    yield
    shm.remove_leftovers(PREFIX)


def _made(size: int = shm.MIN_SIZE) -> str:
    name = shm.create(PREFIX, memoryview(bytes(size)))
    assert name is not None
    return name


@pytest.mark.parametrize("segments", [
    [[0, f"{PREFIX}-{'0' * 32}", 1 << 20]],  # no such segment
    [[0, "../../etc/passwd", 10]],
    [[0, f"/dev/shm/{PREFIX}-{'0' * 32}", 10]],
    [[0, "psm_shm.1234", 10]],
    [[1, f"{PREFIX}-{'1' * 32}", 10]],  # index beyond the buffers
    [[0, f"{PREFIX}-{'1' * 32}", True]],
    "not a list",
    [],
    [[0, 1, 2]],
])
def test_malformed_segment_lists_are_value_errors(segments: object, own_prefix: None) -> None:
    with pytest.raises(ValueError):
        unpack(_frames("reply", segments))


def test_a_refused_message_removes_its_segments(own_prefix: None) -> None:
    # wrong size: the named segment is opened, unlinked and refused
    with pytest.raises(ValueError, match="bytes"):
        unpack(_frames("reply", [[0, _made(), 100]]))
    assert _segments(PREFIX) == []
    # only replies may name segments
    with pytest.raises(ValueError, match="stream"):
        unpack(_frames("stream", [[0, _made(), shm.MIN_SIZE]]))
    assert _segments(PREFIX) == []
    # the second of two is missing: the first is mapped, then dropped
    with pytest.raises(ValueError, match="No such file"):
        unpack(_frames("reply", [[0, _made(), shm.MIN_SIZE],
                                 [1, f"{PREFIX}-{'2' * 32}", 10]]))
    assert _segments(PREFIX) == []
    # another kernel's prefix, when the receiver knows its own: refused and left alone
    with pytest.raises(ValueError, match="name"):
        unpack(_frames("reply", [[0, _made(), shm.MIN_SIZE]]),
               shm_prefix="hpckernel-" + "0" * 16)
    assert len(_segments(PREFIX)) == 1
    assert shm.remove_leftovers(PREFIX) == 1
    assert _segments(PREFIX) == []


def test_to_shm_moves_only_large_buffers_and_unpack_restores_them(own_prefix: None) -> None:
    np = pytest.importorskip("numpy")
    value = {"big": np.arange(2**18, dtype=np.float64), "small": np.arange(5),
             "mid": np.ones(2**17)}
    frames = pack("reply", {"id": "r"}, value)
    moved = to_shm(frames, PREFIX)
    assert len(frames) == 6 and len(moved) == 4  # big and mid moved, small still a frame
    assert len(_segments(PREFIX)) == 2
    assert to_shm(pack("reply", {"id": "r"}, np.arange(5)), PREFIX)[1] == b'{"id": "r"}'
    # a segment that cannot be made: the buffer stays a frame
    assert to_shm(frames, f"{PREFIX}/no-such-dir") == frames
    raw = [f.raw() if hasattr(f, "raw") else f for f in moved]
    msg = unpack(raw)
    assert _segments(PREFIX) == [] and msg.header == {"id": "r"}
    got = msg.value()
    assert all(np.array_equal(got[k], v) for k, v in value.items())
