"""Who runs where on a GPU machine's CPUs: the vLLM engine server first, the front end (the SDK worker
processes that decode, find speech and cut segments) beside it.

The front end runs at a lower priority (`vllm.front_end_nice`), and it can be kept off a few whole
physical cores (`vllm.engine_cpus`) that the engine server then has to itself; on DirectRunner off more
of them (`vllm.engine_start_cpus`) until the engine is ready, and then the launcher moves itself and every
front-end process it started to the wider set (`move_front_end`). Priority alone does not
keep a busy front-end process off the hyperthread sibling of the core that runs vLLM's engine loop or
its start (import, compile, CUDA graph capture: single-threaded Python), and a sibling takes about half
of that core. The engine server itself is not pinned: it takes back every CPU and its priority when it
starts (`take_machine`), whoever spawned it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)


def _parse_list(text: str) -> set[int]:
    """'0-3,8,10-11' -> {0, 1, 2, 3, 8, 10, 11} (the kernel's cpu list format)."""
    cpus = set()
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def siblings(cpu: int) -> set[int]:
    """The logical CPUs that share `cpu`'s physical core (itself included)."""
    try:
        return _parse_list(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text())
    except (OSError, ValueError):
        return {cpu}


def engine_cpu_set(count: int, allowed: set[int]) -> set[int]:
    """At least `count` logical CPUs of `allowed`, as whole physical cores taken from the top; never all
    of them (the front end keeps at least one core)."""
    chosen: set[int] = set()
    for cpu in sorted(allowed, reverse=True):
        if len(chosen) >= count:
            break
        if cpu in chosen:
            continue
        core = siblings(cpu) & allowed
        if len(allowed - chosen - core) == 0:
            break
        chosen |= core
    return chosen


_after_start: Optional[set[int]] = None  # the launcher's front end, once its engines are ready


def front_end_cpus() -> set[int]:
    """The CPUs this process's front end runs on: what it may use now, or, while the engines it started
    are starting, what it will be moved to once they are ready."""
    if _after_start is not None:
        return set(_after_start)
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def yield_to_engine(nice: int, engine_cpus: int, while_starting: int = 0) -> set[int]:
    """This process (and what it starts from now on) runs at `nice` and off `engine_cpus` logical CPUs
    kept for the engine; returns the CPUs it may use. With `while_starting` > engine_cpus, it keeps off
    that many until the caller, its engines ready, calls move_front_end(front_end_cpus())."""
    global _after_start
    if nice:
        os.nice(nice)
    allowed = os.sched_getaffinity(0)
    front = allowed - engine_cpu_set(engine_cpus, allowed) if engine_cpus > 0 else allowed
    if while_starting > engine_cpus:
        _after_start = front
        os.sched_setaffinity(0, allowed - engine_cpu_set(while_starting, allowed))
        return front
    if front != allowed:
        os.sched_setaffinity(0, front)
    return front


def take_machine() -> None:
    """In an engine server: every CPU of the machine (its cgroup allowing) and normal priority, though
    it was spawned by a front-end process that yielded both. Without the privilege to raise its
    priority again it keeps the spawner's."""
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except OSError as err:
        log.info("engine server: CPU affinity left as it was (%s)", err)
    if os.getpriority(os.PRIO_PROCESS, 0) > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except PermissionError:
            log.info("engine server: runs at the niceness of the process that started it (%d)",
                     os.getpriority(os.PRIO_PROCESS, 0))


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            found[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return found


def front_end_processes() -> list[int]:
    """This process and its descendants in its session: on DirectRunner the launcher and its SDK worker
    processes. Engine servers start sessions of their own, so neither they nor their engine cores are
    among them."""
    table = _processes()
    session = os.getsid(0)
    children: dict[int, list[int]] = {}
    for pid, (parent, _sid) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(c for c in children.get(pid, ()) if table[c][1] == session)
    return found


def move_front_end(cpus: set[int]) -> int:
    """Every thread of this process and of the front-end processes it started, onto `cpus` (a thread's
    affinity is its own: a process's threads move one by one). Returns the threads moved."""
    moved = 0
    for pid in front_end_processes():
        try:
            threads = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            continue
        for tid in threads:
            try:
                os.sched_setaffinity(tid, cpus)
                moved += 1
            except OSError:  # ended meanwhile
                pass
    return moved
