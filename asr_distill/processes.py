"""Processes by pid, read from /proc (Linux): whether one still runs, its resident memory, and the tree
below it; and a guard that ends a process group when its leader is gone
(`python -m asr_distill.processes guard PID`)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Running (a zombie is not); our own exited child is reaped on the way."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def rss(pid: int | str = "self") -> int:
    """Resident memory in bytes now; 0 for a process that is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def children_by_parent() -> dict[int, list[int]]:
    """Every process's pid under its parent's, at one moment."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def subtree(root: int, tree: dict[int, list[int]], skip: frozenset | set = frozenset()) -> list[int]:
    """`root` and everything below it in `tree`, leaving out the branches rooted in `skip`."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in skip:
            continue
        out.append(pid)
        todo += tree.get(pid, [])
    return out


def process_group(pgid: int) -> list[int]:
    """The live (not zombie) processes whose process group is `pgid`."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
                members.append(int(entry.name))
    return members


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), telling it from a later process given the same
    pid; None when there is no such process or it is a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def tcp_connected(pid: int) -> bool:
    """Whether the process holds an established TCP connection (False too where /proc cannot say)."""
    try:
        links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    inodes = {link[len("socket:["):-1] for link in links if link.startswith("socket:[")}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = [r.split() for r in Path(table).read_text().splitlines()[1:]]
        except OSError:
            continue
        if any(r[3] == "01" and r[9] in inodes for r in rows if len(r) > 9):  # 01: ESTABLISHED
            return True
    return False


def guard_group(leader: int, poll_s: float = 0.5) -> None:
    """Wait until `leader` is gone, then SIGKILL whatever is left in this process's group (this guard
    included). Run in the leader's own group, it ends children the leader could not end itself
    because it was killed: a forked engine core that would otherwise hold the GPU with no job left."""
    while alive(leader):
        time.sleep(poll_s)
    os.killpg(os.getpgrp(), signal.SIGKILL)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "guard":
        sys.exit("usage: python -m asr_distill.processes guard PID")
    guard_group(int(sys.argv[2]))
