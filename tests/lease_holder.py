"""A lease holder in a process of its own, for the lease tests: ``python -m
tests.lease_holder NAME [--pid P]`` holds lease NAME (POSTGRES_* from the environment),
prints ``held <holder>``, and gives it back when its standard input closes.

``--pid P``: run as the first process of a new PID namespace (``unshare --pid --fork
--mount-proc``), it makes the holder's pid P there, a pid of the test's choice that no
process has in the test's own namespace.
"""

from __future__ import annotations

import argparse
import os
import sys


def hold(name: str) -> None:
    from aperag_pg.manager import PostgreSQLSyncConnectionManager
    from aperag_pg.settings import PostgresSettings
    from aperag_pg.stores.leases import hold_lease

    PostgreSQLSyncConnectionManager.initialize(PostgresSettings.from_env())
    with hold_lease(name, ttl=60) as lease:
        print(f"held {lease.holder}", flush=True)
        sys.stdin.read()
    print("released", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--pid", type=int)
    args = parser.parse_args()
    if args.pid is None:
        hold(args.name)
        return 0
    with open("/proc/sys/kernel/ns_last_pid", "w", encoding="ascii") as file:
        file.write(str(args.pid - 1))  # the next process of this namespace gets args.pid
    child = os.fork()
    if child == 0:
        try:
            hold(args.name)
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
