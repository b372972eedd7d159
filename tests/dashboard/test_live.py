"""hpckernel.publish on real ranks, %liveplot's widget traffic and ranks.live in the hub."""

from __future__ import annotations

from tests.kernel.harness import Kernel

from .widgets import Comms

PUBLISH = """%%px --noblock
import time, hpckernel
for i in range(30):
    hpckernel.publish("loss", rank * 100 + i)
    hpckernel.publish("stats", {"a": i, "b": -i})
    time.sleep(0.05)
"""

#: 200 points per rank, as fast as the ranks go (the plot shows about 4 updates a second).
MANY = """%%px --noblock
import time, hpckernel
for i in range(200):
    hpckernel.publish("many", rank + i / 200)
    time.sleep(0.005)
"""


def drawn(comms: Comms, plot: str) -> dict[str, dict[str, list[float]]]:
    """The plot as the browser draws it: the lines it opened with, then each change."""
    lines = {label: {"x": list(p["x"]), "y": list(p["y"])}
             for label, p in comms.state[plot].get("lines", {}).items()}
    for change, _size in comms.custom.get(plot, []):
        lines.update(change.get("replace", {}))
        for label, points in change.get("append", {}).items():
            line = lines.setdefault(label, {"x": [], "y": []})
            line["x"] += points["x"]
            line["y"] += points["y"]
    return lines


def test_liveplot_widget_carries_the_published_values(kernel: Kernel) -> None:
    comms = Comms(kernel)
    comms.run(PUBLISH)
    comms.run("%liveplot loss")
    plot = comms.find(published="loss")

    def finished() -> bool:
        lines = drawn(comms, plot)
        return all(lines.get(str(r), {"y": [None]})["y"][-1] == r * 100 + 29 for r in range(4))

    comms.wait(finished, what="the last published values in the plot")
    # Pushed as they came: several updates, one line per rank, values in publish order.
    assert len(comms.custom[plot]) > 2
    assert drawn(comms, plot)["2"] == {"x": list(range(30)), "y": [200 + i for i in range(30)]}
    kernel.ok("%pxresult")
    text = kernel.ok("%%local\nprint(len(ranks.live['loss'][3]), ranks.live['loss'][3][-1],"
                     " ranks.live.latest('stats')[1], sorted(ranks.live))").text()
    assert text.strip() == "30 329 {'a': 29, 'b': -29} ['loss', 'stats']"


def test_liveplot_updates_carry_only_new_points(kernel: Kernel) -> None:
    comms = Comms(kernel)
    comms.run("%liveplot many")  # before anything is published: every point is news
    plot = comms.find(published="many")
    comms.run(MANY)  # --noblock: the updates arrive while comms.wait reads them
    comms.wait(lambda: all(len(drawn(comms, plot).get(str(r), {"x": []})["x"]) == 200
                           for r in range(4)), what="200 points per rank in the plot")
    lines = drawn(comms, plot)
    assert lines["3"]["x"] == list(range(200))
    assert lines["3"]["y"] == [3 + i / 200 for i in range(200)]
    updates = comms.custom[plot]
    # Each point travelled once: the updates together hold exactly the 800 published.
    sent = [sum(len(p["x"]) for p in change["append"].values()) for change, _ in updates]
    assert sum(sent) == 800 and len(updates) >= 3
    # An update's size follows its new points only, not the points already drawn (the
    # last ones would otherwise carry the 800 points: ~20 KB).
    for (change, size), points in zip(updates, sent, strict=True):
        assert size <= 400 + 40 * points, (size, points, change)
    kernel.ok("%pxresult")


def test_liveplot_from_code_and_bad_use(kernel: Kernel) -> None:
    comms = Comms(kernel)
    comms.run(PUBLISH.replace("--noblock", ""))
    comms.run("%%local\nimport hpckernel\nhpckernel.liveplot('stats')")
    plot = comms.find(published="stats")  # opened after the values: all in its state
    assert comms.state[plot]["lines"]["1:a"]["y"][-1] == 29
    assert comms.state[plot]["lines"]["1:b"]["y"][-1] == -29
    # publish outside the ranks, and a name nobody published: clear errors.
    hub = kernel.run("%%local\nhpckernel.publish('x', 1)")
    assert hub.status == "error"
    assert "code that runs on the ranks" in hub.content["evalue"]
    missing = kernel.run("%%local\nranks.live['nope']")
    assert missing.status == "error" and "no rank has published 'nope'" in (
        missing.content["evalue"])
    bad = kernel.run("hpckernel.publish(3, 1)")
    assert bad.status == "error" and "needs a name" in bad.content["evalue"]
