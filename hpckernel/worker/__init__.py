"""One IPython shell per MPI rank, driven by the hub over the internal plane.

Threads of a rank process:
- main thread: runs cells (``runner.RankRunner``) — user code may block in MPI here;
- I/O thread (``channel.HubChannel``): owns the ZMQ socket, forwards output while the main
  thread is busy, answers heartbeats, completion and interrupts.
"""
