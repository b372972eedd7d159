"""The debugger in one process (a rank, or the hub for ``%%local`` cells): debugpy's
debugger (pydevd) spoken to over a socket pair, with the requests of the Jupyter debugger
protocol that ipykernel answers itself (``inspectVariables``, ``richInspectVariables``,
``copyToGlobals``, ``modules``). The hub's side, which the front end talks to, is
``hpckernel.hub.debugger``.
"""
