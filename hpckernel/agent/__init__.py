"""The node agent (``python -m hpckernel.agent``): one per node when ``HubKernel.fanin``
uses agents. The hub talks to agents, an agent to its node's ranks, so that the hub's work
per request, per output flush and per heartbeat grows with the nodes, not the ranks.

- ``link.py``: the two sockets (up to the hub, down to the node's ranks) and their wire.
- ``replies.py``: requests open at the node, answered once for the whole node.
- ``output.py``: the ranks' output, merged at the node before it goes up.
- ``flow.py``: output and replies going up under the agent's window of credits.
- ``agent.py``: the loop that joins them; ``__main__.py`` the command.
"""
