"""Run a command as a simulated host: set this UTS namespace's hostname, then exec it.

unshare --uts --pid --fork --mount-proc python -m devtools.as_host NAME command ...
"""

from __future__ import annotations

import os
import socket
import sys


def main(argv: list[str]) -> None:
    name, *command = argv
    socket.sethostname(name)  # this namespace's only: the machine keeps its own
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
