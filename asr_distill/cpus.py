"""Who runs where on a GPU machine's CPUs: the vLLM engine server first, the front end (the SDK worker
processes that decode, find speech and cut segments) beside it.

The front end runs at a lower priority (`vllm.front_end_nice`), and it can be kept off a few whole
physical cores (`vllm.engine_cpus`) that the engine server then has to itself. Priority alone does not
keep a busy front-end process off the hyperthread sibling of the core that runs vLLM's engine loop or
its start (import, compile, CUDA graph capture: single-threaded Python), and a sibling takes about half
of that core. The engine server itself is not pinned: it takes back every CPU and its priority when it
starts (`take_machine`), whoever spawned it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

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


def yield_to_engine(nice: int, engine_cpus: int) -> set[int]:
    """This process (and what it starts from now on) runs at `nice` and off `engine_cpus` logical CPUs
    kept for the engine; returns the CPUs it may use."""
    if nice:
        os.nice(nice)
    allowed = os.sched_getaffinity(0)
    if engine_cpus <= 0:
        return allowed
    front = allowed - engine_cpu_set(engine_cpus, allowed)
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
