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


def test_liveplot_widget_carries_the_published_values(kernel: Kernel) -> None:
    comms = Comms(kernel)
    comms.run(PUBLISH)
    comms.run("%liveplot loss")
    plot = comms.find(published="loss")

    def finished() -> bool:
        values = comms.state[plot].get("values", {})
        return all(values.get(str(r), [None])[-1] == r * 100 + 29 for r in range(4))

    comms.wait(finished, what="the last published values in the plot")
    # Pushed as they came: several updates, one line per rank, values in publish order.
    assert len(comms.updates[plot]) > 2
    assert comms.state[plot]["values"]["2"] == [200 + i for i in range(30)]
    kernel.ok("%pxresult")
    text = kernel.ok("%%local\nprint(len(ranks.live['loss'][3]), ranks.live['loss'][3][-1],"
                     " ranks.live.latest('stats')[1], sorted(ranks.live))").text()
    assert text.strip() == "30 329 {'a': 29, 'b': -29} ['loss', 'stats']"


def test_liveplot_from_code_and_bad_use(kernel: Kernel) -> None:
    comms = Comms(kernel)
    comms.run(PUBLISH.replace("--noblock", ""))
    comms.run("%%local\nimport hpckernel\nhpckernel.liveplot('stats')")
    plot = comms.find(published="stats")
    assert comms.state[plot]["values"]["1:a"][-1] == 29
    assert comms.state[plot]["values"]["1:b"][-1] == -29
    # publish outside the ranks, and a name nobody published: clear errors.
    hub = kernel.run("%%local\nhpckernel.publish('x', 1)")
    assert hub.status == "error"
    assert "code that runs on the ranks" in hub.content["evalue"]
    missing = kernel.run("%%local\nranks.live['nope']")
    assert missing.status == "error" and "no rank has published 'nope'" in (
        missing.content["evalue"])
    bad = kernel.run("hpckernel.publish(3, 1)")
    assert bad.status == "error" and "needs a name" in bad.content["evalue"]
