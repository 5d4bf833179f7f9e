"""What a process tree holds right now, read from /proc (Linux): memory, open files, sockets and
TCP connections by state, threads, CPU time. The soak benchmark samples the gateway with it.

RSS counts every resident page of each process, so pages shared between a supervisor and its
forked workers are counted once per process; PSS shares them out (the tree's PSS is what it
really costs the machine) and USS is the memory no other process shares (what a leak grows).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

# /proc/net/tcp's state column (include/net/tcp_states.h)
TCP_STATES = {"01": "established", "08": "close_wait", "06": "time_wait", "0A": "listen"}


@dataclass
class TreeSample:
    procs: int = 0
    threads: int = 0
    rss_mb: float = 0.0
    pss_mb: float = 0.0
    uss_mb: float = 0.0
    max_worker_uss_mb: float = 0.0  # the largest single process: a leak in one worker shows here
    fds: int = 0
    sockets: int = 0
    tcp_established: int = 0
    tcp_inbound: int = 0  # established on the listening port: clients' connections
    tcp_close_wait: int = 0  # the peer closed, we never did: a leaked connection stays here
    tcp_listen: int = 0
    cpu_s: float = 0.0

    def row(self) -> dict[str, float]:
        return asdict(self)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _kb_fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in names:
                    values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


def _socket_inodes(pid: int) -> tuple[int, set[str]]:
    """(open fds, inodes of the sockets among them)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0, set()
    inodes = set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed between listdir and readlink
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return len(fds), inodes


def _tcp_states(pid: int, inodes: set[str], port: int) -> dict[str, int]:
    """TCP sockets of ``inodes`` by state, from the network namespace ``pid`` lives in; those
    established on local ``port`` also as "inbound"."""
    counts: dict[str, int] = {}
    suffix = f":{port:04X}"
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and fields[9] in inodes:
                        state = TCP_STATES.get(fields[3], "other")
                        counts[state] = counts.get(state, 0) + 1
                        if state == "established" and fields[1].endswith(suffix):
                            counts["inbound"] = counts.get("inbound", 0) + 1
        except (OSError, StopIteration):
            continue
    return counts


def sample(root: int, port: int = 0) -> TreeSample:
    """The tree under ``root`` now; ``port``: the one it listens on, to tell inbound TCP apart."""
    s = TreeSample()
    inodes: set[str] = set()
    ticks = 0
    for pid in process_tree(root):
        status = _kb_fields(f"/proc/{pid}/status", ("VmRSS", "Threads"))
        if not status:
            continue  # gone
        rollup = _kb_fields(f"/proc/{pid}/smaps_rollup", ("Pss", "Private_Clean", "Private_Dirty"))
        uss = (rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)) / 1024
        s.procs += 1
        s.threads += status.get("Threads", 0)
        s.rss_mb += status.get("VmRSS", 0) / 1024
        s.pss_mb += rollup.get("Pss", 0) / 1024
        s.uss_mb += uss
        s.max_worker_uss_mb = max(s.max_worker_uss_mb, uss)
        fds, socks = _socket_inodes(pid)
        s.fds += fds
        inodes |= socks
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    s.sockets = len(inodes)
    states = _tcp_states(root, inodes, port)
    s.tcp_established = states.get("established", 0)
    s.tcp_inbound = states.get("inbound", 0)
    s.tcp_close_wait = states.get("close_wait", 0)
    s.tcp_listen = states.get("listen", 0)
    s.cpu_s = ticks / os.sysconf("SC_CLK_TCK")
    return s
