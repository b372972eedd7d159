"""`Engine`: the async core of a workflow — submit, refresh from Slurm, gates, resubmit, wait.

Runs on one event loop (the private loop of `hpckernel.slurm.sync` behind the sync `Workflow`), and
every operation takes `self._lock`, so a background refresh never interleaves with a
submission. Slurm is reached only through `hpckernel.slurm.Slurm`; state comes from Slurm at
each refresh and is written, with provenance, to the workflow file (`fileformat`). Jobs are
followed through the process's `hpckernel.slurm.Poller`: an explicit refresh (every call of
the user: submit, approve, status...) looks at once; the widget and `wait` get the poller's
rounds, which back off while nothing changes.

Submitting is all or nothing (`submission.py`): the planned steps are checked (files,
dependencies, partition limits) before the first `sbatch`, and if Slurm refuses a step, the
steps queued before it in the same call are cancelled again.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..slurm import JobInfo, Poller, Slurm, SlurmError, Snapshot, Watch
from ..timestamps import now
from . import call, fileformat, graph, submission
from .errors import DefinitionError, GateError, StepFailed, StepStateError, WorkflowTimeout
from .fileformat import Document
from .provenance import Run
from .spec import Step, check_step
from .states import (
    CANCELLED,
    COMPLETED,
    HELD,
    NOT_SUBMITTED,
    PENDING,
    RUNNING,
    UNSUCCESSFUL,
    WAITING,
    StepStatus,
    classify,
    describe,
)

log = logging.getLogger(__name__)
Listener = Callable[[], None]


class Engine:
    """Drives one workflow `doc` on Slurm. Create and call it on a single event loop."""

    def __init__(self, doc: Document, slurm: Slurm, *, poll_interval: float | None = None
                 ) -> None:
        self.doc = doc
        self.slurm = slurm
        self.poller = Poller.of(slurm)
        # The first pause between looks at Slurm while a step is active; it doubles while
        # nothing changes, up to 30 times as long (the slurm's own pauses by default).
        self.poll_interval = poll_interval or slurm.poll_interval
        self.max_poll_interval = 30 * poll_interval if poll_interval else slurm.max_poll_interval
        self.statuses: dict[str, StepStatus] = {}
        self.listeners: list[Listener] = []
        """Called on the engine's loop after every refresh (the widget redraws)."""
        self._lock = asyncio.Lock()
        self._watch: Watch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.refresh_error: str | None = None
        """Why the last background refresh failed, and when the next try comes (None if it
        worked), for the views: "Slurm busy (Socket timed out ...), retrying in 8 s"."""
        for name in doc.steps:
            self._set_unrefreshed(name)

    # ---------------------------------------------------------------- definition

    async def add(self, step: Step, call_data: bytes | None = None) -> Step:
        """Add a checked step; `call_data` is a function step's pickled call, written to
        its `step.call` file only once the name is known to be free."""
        async with self._lock:
            if step.name in self.doc.steps:
                raise DefinitionError(f"workflow {self.doc.name!r} has a step named "
                                      f"{step.name!r} already: choose another name")
            base = self.doc.layout.base
            if call_data is not None and step.call:
                await asyncio.to_thread(_write_bytes, base / step.call, call_data)
            check_step(step, list(self.doc.steps), base)
            self.doc.steps[step.name] = step
            self._set_unrefreshed(step.name)
        self._notify()
        return step

    def _set_unrefreshed(self, name: str) -> None:
        run, step = self.doc.current(name), self.doc.steps[name]
        state = run.state if run and run.state else NOT_SUBMITTED
        self.statuses[name] = StepStatus(name, step.kind, state, run.job_id if run else None)

    def step(self, name: str) -> Step:
        """The step named ``name``; DefinitionError naming the steps there are."""
        try:
            return self.doc.steps[name]
        except KeyError:
            raise DefinitionError(f"workflow {self.doc.name!r} has no step {name!r}; its steps: "
                                  f"{', '.join(self.doc.steps) or 'none'}") from None

    # ---------------------------------------------------------------- state

    async def refresh(self) -> dict[str, StepStatus]:
        """Read every step's job from Slurm; save the file if anything changed."""
        async with self._lock:
            await self._refresh()
        return dict(self.statuses)

    async def _refresh(self) -> None:
        ids = [run.job_id for name in self.doc.steps if (run := self.doc.current(name))]
        await self._apply((await self.poller.fetch(ids)).jobs)
        self.refresh_error = None

    async def _apply(self, infos: Mapping[str, JobInfo | None]) -> None:
        """Classify every step from what Slurm said of its job (steps whose job is not in
        `infos` keep their state); save the file if anything changed."""
        changed = False
        for name in self.doc.steps:
            run = self.doc.current(name)
            if run is None or run.job_id in infos:
                changed |= self._classify(name, run, infos.get(run.job_id) if run else None)
        for name in self._gates_that_cannot_open():
            changed |= await self._release_dead_gate(name)
        if changed:
            await self._save()
        self._notify()

    def _classify(self, name: str, run: Run | None, info: JobInfo | None) -> bool:
        step = self.doc.steps[name]
        if run is None:
            self.statuses[name] = StepStatus(name, step.kind, NOT_SUBMITTED)
            return False
        if info is not None and not run.matches(info):
            log.warning("job %s is now %r, not step %s's %r: Slurm reused the id (its state "
                        "was reset?); treating step %s's job as forgotten", run.job_id,
                        info.name, name, run.job_name, name)
            info = None
        state = classify(info, run.state or None, run.slurm_state)
        changed = run.update(state, info)
        waiting_for = ", ".join(up for up in step.after if self.statuses.get(up) is None
                                or self.statuses[up].state != COMPLETED)
        detail = describe(state, info, note=step.note, waiting_for=waiting_for)
        if run.rejected and state == CANCELLED:
            detail = f"rejected {run.rejected}"
        elif run.approved and state in (WAITING, PENDING):
            detail = f"approved {run.approved}; {detail}"
        self.statuses[name] = StepStatus(name, step.kind, state, run.job_id, info, detail)
        return changed

    def _gates_that_cannot_open(self) -> list[str]:
        return [name for name, st in self.statuses.items()
                if st.state == HELD and self.doc.steps[name].kind == "gate"
                and any(self.statuses[up].state in UNSUCCESSFUL
                        for up in self.doc.steps[name].after)]

    async def _release_dead_gate(self, name: str) -> bool:
        """A held job is not checked for failed dependencies: Slurm would keep a gate after a
        failed step queued forever. Releasing it lets Slurm cancel it itself
        (DependencyNeverSatisfied), and its state is read back from Slurm."""
        run = self.doc.current(name)
        assert run is not None
        failed = [up for up in self.doc.steps[name].after
                  if self.statuses[up].state in UNSUCCESSFUL]
        log.info("gate %s (job %s) can never open (%s did not complete): releasing it so "
                 "Slurm ends it", name, run.job_id, ", ".join(failed))
        try:
            await self.slurm.release(run.job_id)
        except SlurmError as err:
            log.warning("could not release gate %s (job %s): %s", name, run.job_id, err)
            return False
        run.note = f"released by hpckernel at {now()}: {', '.join(failed)} did not complete"
        self._classify(name, run, await self.slurm.job(run.job_id))
        return True

    async def _save(self) -> None:
        text = fileformat.dump(self.doc)
        await asyncio.to_thread(fileformat.write, self.doc.path, text)

    async def save(self, path: Path | None = None) -> Path:
        """Write the workflow file (to ``path``, in the same directory, if given); its path."""
        async with self._lock:
            if path is not None:
                if path.parent != self.doc.path.parent:
                    raise DefinitionError(
                        f"save the workflow in {self.doc.path.parent} (its steps' paths and "
                        f"its jobs' output are relative to it), not in {path.parent}; to start "
                        f"elsewhere, create it there: Workflow({self.doc.name!r}, path=...)")
                self.doc.path = path
            await self._save()
            return self.doc.path

    def _notify(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # a broken view must not stop the workflow
                log.exception("workflow listener failed")

    # ---------------------------------------------------------------- watching

    def _active_jobs(self) -> list[str]:
        return [st.job_id for st in self.statuses.values() if st.active and st.job_id]

    def _follow(self, job_ids: Sequence[str], callback: Callable[[Snapshot], None] | None = None
                ) -> Watch:
        return self.poller.watch(job_ids, callback=callback, interval=self.poll_interval,
                                 max_interval=self.max_poll_interval)

    def watch(self) -> None:
        """Follow the active steps' jobs through the poller while someone listens; call on
        the engine's loop (after every change of the steps). Stops once every step ended."""
        self._loop = asyncio.get_running_loop()
        active = self._active_jobs()
        if not self.listeners or not active:
            self._unwatch()
        elif self._watch is None:
            self._watch = self._follow(active, self._on_snapshot)
        else:
            self._watch.update(active)

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        """The poller's round (on its thread): apply it on the engine's loop."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._take(snapshot), self._loop)

    async def _take(self, snapshot: Snapshot) -> None:
        if self._lock.locked():
            return  # a submit/approve/refresh is under way and reads Slurm itself
        async with self._lock:
            self.refresh_error = snapshot.trouble or None
            try:
                await self._apply(snapshot.jobs)
            except Exception as err:  # keep following: the next round may do better
                log.warning("workflow %s: refresh failed: %s", self.doc.name, err,
                            exc_info=not isinstance(err, SlurmError))
                self.refresh_error = f"refresh failed: {type(err).__name__}: {err}"
                self._notify()
        self.watch()

    async def stop_watching(self) -> None:
        """Stop following the active steps' jobs (the widget went away)."""
        self._unwatch()

    # ---------------------------------------------------------------- submitting

    async def submit(self) -> list[str]:
        """Submit every step that was never submitted; returns their names."""
        async with self._lock:
            await self._refresh()
            targets = [n for n in self.doc.steps if self.statuses[n].state == NOT_SUBMITTED]
            if not targets:
                raise StepStateError(
                    f"every step of {self.doc.name!r} was submitted already: "
                    "wf.resubmit(step) re-runs a step and the steps after it")
            await self._submit(targets)
            await self._refresh()
        self.watch()
        return targets

    async def resubmit(self, names: Sequence[str]) -> list[str]:
        """Run `names` again, and every step after them; returns the steps submitted.

        Steps after them that are still held or queued are cancelled once the new jobs are
        in (they wait for the old jobs); a running one is an error.
        """
        async with self._lock:
            for name in names:
                self.step(name)
            await self._refresh()
            for name in names:
                st = self.statuses[name]
                if st.active:
                    raise StepStateError(f"step {name!r} is {st.state} (job {st.job_id}): only an "
                                         f"ended step can be resubmitted; wf.cancel({name!r}) "
                                         "first to re-run it")
            after = graph.descendants(self.doc.steps, names)
            for name in after:
                if self.statuses[name].state == RUNNING:
                    raise StepStateError(
                        f"step {name!r}, which comes after {', '.join(names)}, is running (job "
                        f"{self.statuses[name].job_id}): wait for it or wf.cancel({name!r})")
            targets = [n for n in self.doc.steps if n in after or n in names]
            superseded = [(n, self.statuses[n].job_id) for n in targets if self.statuses[n].active]
            await self._submit(targets)
            for name, job_id in superseded:
                assert job_id is not None
                log.info("cancelling job %s of step %s: superseded by the resubmit", job_id, name)
                await self.slurm.cancel(job_id)
            await self._refresh()
        self.watch()
        return targets

    async def _submit(self, targets: list[str]) -> None:
        order = submission.plan(self.doc, self.statuses, targets)
        await submission.check_partitions(self.slurm, self.doc, targets)
        await self._save()  # an unwritable workflow file fails here, before any sbatch
        runs = await submission.submit_steps(self.slurm, self.doc, order)
        for name, run in runs.items():
            self.doc.runs.setdefault(name, []).append(run)
        await self._save()

    # ---------------------------------------------------------------- gates and cancelling

    def _gate(self, name: str) -> Step:
        step = self.step(name)
        if step.kind != "gate":
            raise GateError(f"step {name!r} is a {step.kind} step, not a gate")
        return step

    async def approve(self, name: str) -> None:
        """Release the held gate `name`: the steps after it run once it has ended."""
        step = self._gate(name)
        async with self._lock:
            await self._refresh()
            st, run = self.statuses[name], self.doc.current(name)
            if st.state == NOT_SUBMITTED or run is None:
                raise GateError(f"gate {name!r} is not submitted yet: wf.submit() first")
            if st.state != HELD:
                if run.approved:
                    raise GateError(f"gate {name!r} was approved already ({run.approved}); it "
                                    f"is {st.state} now")
                if run.rejected:
                    raise GateError(f"gate {name!r} was rejected ({run.rejected}): "
                                    f"wf.resubmit({name!r}) asks again")
                raise GateError(f"gate {name!r} is {st.state} ({st.detail}), not waiting for "
                                "approval")
            failed = [up for up in step.after if self.statuses[up].state in UNSUCCESSFUL]
            if failed:
                raise GateError(f"gate {name!r} can never open: {', '.join(failed)} did not "
                                f"complete; wf.resubmit({failed[0]!r}) re-runs it and the gate")
            await self.slurm.release(run.job_id)
            run.approved = f"{now()} by {getpass.getuser()}"
            log.info("workflow %s: gate %s approved (job %s released)", self.doc.name, name,
                     run.job_id)
            await self._refresh()
            await self._save()
        self.watch()

    async def reject(self, name: str) -> list[str]:
        """Cancel the gate `name` and every step after it; returns the steps cancelled."""
        self._gate(name)
        async with self._lock:
            await self._refresh()
            st, run = self.statuses[name], self.doc.current(name)
            if run is None or st.state not in (HELD, WAITING):
                raise GateError(f"gate {name!r} is {st.state}: only a gate that has not opened "
                                "can be rejected")
            after = graph.descendants(self.doc.steps, [name])
            doomed = [n for n in self.doc.steps
                      if (n == name or n in after) and self.statuses[n].active]
            await submission.cancel_jobs(self.slurm,
                                         [j for n in doomed if (j := self.statuses[n].job_id)])
            run.rejected = f"{now()} by {getpass.getuser()}"
            await self._refresh()
            await self._save()
        return doomed

    async def cancel(self, names: Sequence[str] = ()) -> list[str]:
        """scancel the named steps (all active steps if none are named); the steps after a
        cancelled step end too (Slurm's DependencyNeverSatisfied)."""
        for name in names:
            self.step(name)
        async with self._lock:
            await self._refresh()
            chosen = [n for n in (names or self.doc.steps) if self.statuses[n].active]
            await submission.cancel_jobs(self.slurm,
                                         [j for n in chosen if (j := self.statuses[n].job_id)])
            await self._refresh()
        self.watch()
        return chosen

    # ---------------------------------------------------------------- waiting and results

    async def wait(self, names: Sequence[str] = (), timeout: float | None = None
                   ) -> dict[str, StepStatus]:
        """Follow the jobs until the named steps (default: all) have ended; the statuses."""
        for name in names:
            self.step(name)
        chosen = list(names or self.doc.steps)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        statuses = await self.refresh()
        watch: Watch | None = None
        try:
            while True:
                left = [statuses[n] for n in chosen if not statuses[n].ended]
                if not left:
                    return statuses
                unsubmitted = [st.name for st in left if st.state == NOT_SUBMITTED]
                if unsubmitted:
                    raise StepStateError(f"steps not submitted: {', '.join(unsubmitted)}: "
                                         "wf.submit() first")
                if deadline is not None and loop.time() >= deadline:
                    held = [st.name for st in statuses.values() if st.state == HELD]
                    hint = "".join(f"; gate {g!r} waits for wf.approve({g!r})" for g in held)
                    states = ", ".join(f"{st.name}: {st.state}" for st in left)
                    raise WorkflowTimeout(f"after {timeout:g} s still not ended: {states}{hint}")
                if watch is None:
                    watch = self._follow(self._active_jobs())
                else:
                    watch.update(self._active_jobs())
                try:
                    snapshot = await watch.next(None if deadline is None
                                                else max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    continue
                async with self._lock:
                    await self._apply(snapshot.jobs)
                statuses = dict(self.statuses)
        finally:
            if watch is not None:
                watch.close()

    async def result(self, name: str, timeout: float | None = None) -> object:
        """The return value of function step `name` (a list, one per rank, if it ran on
        ranks); raises `StepFailed` with the remote traceback if it raised."""
        step = self.step(name)
        if step.kind != "function":
            raise StepStateError(f"step {name!r} is a {step.kind} step: only function steps "
                                 "have a result (wf.logs() shows the output of others)")
        if timeout is not None:
            await self.wait([name], timeout)
        st = (await self.refresh())[name]
        if not st.ended:
            raise StepStateError(f"step {name!r} is {st.state}: no result yet; "
                                 f"wf.result({name!r}, timeout=...) waits for it")
        assert st.job_id is not None
        ranks = step.ranks or 1
        outcomes = await asyncio.to_thread(
            call.read_results, self.doc.layout.result_prefix(name), st.job_id, ranks)
        for outcome in outcomes:
            if not outcome["ok"]:
                on = f" on rank {outcome['rank']} of {ranks}" if step.ranks else ""
                raise StepFailed(
                    f"function step {name!r} (job {st.job_id}) failed{on} on host "
                    f"{outcome['host']} ({st.detail}):\n{outcome['traceback']}"
                ) from outcome.get("error")
        if st.state != COMPLETED:
            raise StepFailed(f"function step {name!r} (job {st.job_id}) is {st.state}: "
                             f"{st.detail}")
        values = [outcome["value"] for outcome in outcomes]
        return values if step.ranks else values[0]

    def log_path(self, name: str) -> Path | None:
        """Where the current job of `name` writes its output (Slurm's StdOut if known)."""
        self.step(name)
        run = self.doc.current(name)
        if run is None:
            return None
        return Path(run.stdout) if run.stdout else self.doc.layout.log(name, run.job_id)

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last `lines` lines of the output of the current job of `name` (read at once:
        a small file, also from the widget on the engine's loop)."""
        path = self.log_path(name)
        if path is None:
            return f"step {name!r} has not been submitted"
        try:
            with path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 256 * lines))
                tail = f.read().decode("utf-8", errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            st = self.statuses[name]
            return f"no output yet ({path} does not exist; step {name!r} is {st.state})"
        return "\n".join(tail)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
