"""The hub's settings (``HubKernel``'s traits: ``c.HubKernel.fanin = "agents"`` in a config
file, ``--HubKernel.fanin=agents`` on a command line), each with its help, default and check,
in one class the kernel inherits them from."""

from __future__ import annotations

import os

from traitlets import (
    Bunch,
    CaselessStrEnum,
    Float,
    Int,
    TraitError,
    Type,
    Unicode,
    default,
    validate,
)
from traitlets.config import Configurable

from ..plane.addresses import node_ip
from ..sizes import parse_size
from .limits import ReplyLimit
from .rank_launchers import LocalLauncher, RankLauncher
from .rank_pool import PoolSettings


class HubSettings(Configurable):
    """Every setting of the hub (see the README's configuration table)."""

    launcher_class = Type(LocalLauncher, klass=RankLauncher,
                          help="How ranks are started: LocalLauncher (mpiexec) or "
                          "SrunLauncher (inside a Slurm allocation).").tag(config=True)
    job_dir_parent = Unicode(
        "", help="Where to create the kernel's 0700 job directory (default: the temp dir; "
        "in a Slurm job, a directory every node can read).").tag(config=True)
    flush_interval = Float(0.1, help="Seconds between merged output messages.").tag(config=True)
    interrupt_grace = Float(3.0, help="Seconds a rank may take to stop after an interrupt "
                            "before it is reported stuck.").tag(config=True)
    start_timeout = Float(120.0, help="Seconds the ranks may take to start.").tag(config=True)
    plane_ip = Unicode("127.0.0.1", help="Address the ranks of other nodes connect to "
                       "(the node's interconnect); 'auto': the address of this node's name."
                       ).tag(config=True)
    client_timeout = Float(0.0, help="End the hub (and so its batch job) after this many "
                           "seconds without a connected client; 0: never.").tag(config=True)
    provenance_log = Unicode(
        "", help="JSON-lines file each cell's provenance record is appended to (default: "
        "NOTEBOOK.provenance.jsonl beside the notebook named by JPY_SESSION_NAME, else "
        "hpckernel-provenance.jsonl in the working directory).").tag(config=True)

    max_reply_size = Unicode(
        "50%", help="Most bytes one request may bring into the hub from its ranks together "
        "(ranks.pull/apply, %%px --out, %pull, %peek): a size ('2GB', '512MiB') or a share of "
        "the memory available to the hub when the request is sent ('50%'). Each rank may "
        "send an equal share; a larger value gives a size error, not a dead hub."
    ).tag(config=True)

    fanin = CaselessStrEnum(
        ["auto", "direct", "agents"], help="How the hub reaches the ranks: 'direct' (each "
        "rank talks to the hub), 'agents' (one agent per node talks to the node's ranks, "
        "the hub to the agents: the hub's work grows with nodes, not ranks), 'auto' "
        "(agents when the ranks span more than one node). Default from $HPCKERNEL_FANIN."
    ).tag(config=True)

    @default("fanin")
    def _default_fanin(self) -> str:
        value = os.environ.get("HPCKERNEL_FANIN", "auto").strip().lower() or "auto"
        if value not in ("auto", "direct", "agents"):
            raise TraitError(f"HPCKERNEL_FANIN={value!r}: use auto, direct or agents")
        return value

    agent_timeout = Float(4.0, help="Seconds a node agent may stay silent before it counts "
                          "as lost (the cells of its ranks say so).").tag(config=True)
    agent_return = Float(10.0, help="Seconds a lost node agent has to come back (rank.sh "
                         "starts it again on its node) before its ranks count as unreachable "
                         "and every rank is ended.").tag(config=True)
    fanout = Int(help="With node agents, the most agents that talk to one peer: above "
                 "this many nodes, the agents of each group of this many nodes talk to the "
                 "group's first agent, which talks to the hub. Default from $HPCKERNEL_FANOUT, "
                 "else 64.").tag(config=True)

    @default("fanout")
    def _default_fanout(self) -> int:
        try:
            return int(os.environ.get("HPCKERNEL_FANOUT") or 64)
        except ValueError:
            raise TraitError("HPCKERNEL_FANOUT must be a number of nodes (at least 2)") from None

    @validate("fanout")
    def _check_fanout(self, proposal: Bunch) -> int:
        if proposal["value"] < 2:
            raise TraitError(f"fanout must be at least 2, not {proposal['value']}")
        return int(proposal["value"])
    output_groups = Int(
        32, help="Most groups of differing output (or kinds of error) a cell shows in the "
        "notebook; the others are summed up in one line, and %pxoutput or _px.output(rank) "
        "show them. 0: no limit.").tag(config=True)
    output_memory = Unicode(
        "256MB", help="Memory the hub may use to keep the ranks' whole output of recent "
        "cells; beyond it, output is kept in files in the job directory.").tag(config=True)
    output_window = Unicode(
        "4MB", help="Flow control of output: the most bytes of output each sender (a rank "
        "talking to the hub, or a node agent; a rank behind an agent, to its agent) may have "
        "on its way that its receiver has not taken in yet. A rank that prints faster than "
        "the hub takes its output in waits in print; the hub's memory for output in transit "
        "is at most this much per sender (plus one message, for a larger display). Read when "
        "the kernel starts.").tag(config=True)
    output_history = Int(
        100, help="How many of the last requests' outputs the hub keeps for %pxoutput and "
        "_px.output(rank).").tag(config=True)
    output_disk = Unicode(
        "1GB", help="Disk the hub may use in the job directory for the ranks' output beyond "
        "output_memory, for all kept cells: the oldest cells' files are removed to make "
        "room for newer output; output beyond it in one cell is not kept, with a notice."
    ).tag(config=True)
    output_page = Unicode(
        "1MB", help="How much output one %pxoutput (or _px.display_outputs(ranks)) shows, "
        "shared by the ranks it shows; its last line says how to see the next page."
    ).tag(config=True)

    @validate("output_memory", "output_disk", "output_page")
    def _check_output_size(self, proposal: Bunch) -> str:
        try:
            parse_size(proposal["value"])
        except ValueError as e:
            raise TraitError(f"{proposal['trait'].name} {e}") from None
        return str(proposal["value"])

    @validate("output_window")
    def _check_output_window(self, proposal: Bunch) -> str:
        try:
            size = parse_size(proposal["value"])
        except ValueError as e:
            raise TraitError(f"output_window {e}") from None
        if size < 64 * 1024:
            raise TraitError(f"output_window {proposal['value']!r} is too small: use at least "
                             "64KB (one message of a rank's text)")
        return str(proposal["value"])

    @validate("output_groups", "output_history")
    def _check_count(self, proposal: Bunch) -> int:
        if proposal["value"] < 0:
            raise TraitError(f"HubKernel.{proposal['trait'].name} must be 0 or more, not "
                             f"{proposal['value']}")
        return int(proposal["value"])

    @validate("max_reply_size")
    def _check_reply_size(self, proposal: Bunch) -> str:
        try:
            ReplyLimit.parse(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None
        return str(proposal["value"])

    def pool_settings(self) -> PoolSettings:
        """What the rank pool takes of these settings."""
        return PoolSettings(flush_interval=self.flush_interval,
                            interrupt_grace=self.interrupt_grace,
                            start_timeout=self.start_timeout, tcp_ip=node_ip(self.plane_ip),
                            fanin=self.fanin, agent_timeout=self.agent_timeout,
                            agent_return=self.agent_return, fanout=self.fanout,
                            output_window=parse_size(self.output_window))
