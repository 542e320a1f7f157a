"""Leases (``aperag_pg.stores.leases``): one holder at a time across processes and hosts, renewed
while held, given back at the end, taken over when expired or when the holder's process
on this host is gone, and no connection held in between."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid

import pytest

from aperag_pg.errors import LeaseLost, LeaseTimeout
from aperag_pg.stores.leases import Holder, current_holder, ensure_lease_table, hold_lease

from .polling import wait_until


def _name() -> str:
    return f"test-lease:{uuid.uuid4().hex[:8]}"


def _holder(pid: int, **changes: str) -> str:
    """A holder as a process ``pid`` of this machine and PID namespace would write it."""
    here = Holder.of_this_process()
    return str(Holder(**{**here.__dict__, "pid": pid, "nonce": "planted", **changes}))


def _plant(admin_conn, name: str, holder: str, seconds_left: float) -> None:
    """A lease row as another process would leave it."""
    with admin_conn.cursor() as cur:
        cur.execute(
            "INSERT INTO aperag_pg_leases VALUES (%s, %s, clock_timestamp() + "
            "make_interval(secs => %s))",
            (name, holder, seconds_left),
        )


def _a_finished_pid() -> int:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(finished.stdout)


def _expires_at(admin_conn, name: str):
    with admin_conn.cursor() as cur:
        cur.execute("SELECT expires_at FROM aperag_pg_leases WHERE name = %s", (name,))
        row = cur.fetchone()
    return None if row is None else row[0]


def test_held_while_the_block_runs_then_given_back(manager):
    name = _name()
    with hold_lease(name) as lease:
        assert current_holder(name) == lease.holder
        assert lease.holder.startswith(f"{socket.gethostname()}:{os.getpid()}:")
        assert Holder.parse(lease.holder).pid == os.getpid()
        assert manager.stats()["pool_size"] - manager.stats()["pool_available"] == 0
    assert current_holder(name) is None


def test_a_second_holder_waits_until_the_first_gives_it_back(manager):
    name = _name()
    order: list[str] = []
    first = hold_lease(name)
    first_lease = first.__enter__()

    def second() -> None:
        with hold_lease(name) as lease:
            order.append(lease.holder)

    waiter = threading.Thread(target=second)
    waiter.start()
    with pytest.raises(LeaseTimeout, match="still held"):
        with hold_lease(name, timeout=0.3):
            pass
    assert order == [] and current_holder(name) == first_lease.holder
    first.__exit__(None, None, None)
    waiter.join(30)
    assert len(order) == 1 and order[0] != first_lease.holder
    assert current_holder(name) is None


def test_renewed_while_held(manager, admin_conn):
    name = _name()
    with hold_lease(name, ttl=0.9) as lease:
        first = _expires_at(admin_conn, name)
        wait_until(lambda: _expires_at(admin_conn, name) > first, "the lease is renewed", 10)
        assert current_holder(name) == lease.holder and not lease.lost


def test_an_expired_lease_of_another_host_is_taken(manager, admin_conn):
    ensure_lease_table()
    name = _name()
    _plant(admin_conn, name, "elsewhere:123:abcd", seconds_left=-1)
    with hold_lease(name, timeout=5) as lease:
        assert current_holder(name) == lease.holder


def test_a_live_lease_of_another_host_is_waited_for(manager, admin_conn):
    ensure_lease_table()
    name = _name()
    _plant(admin_conn, name, "elsewhere:123:abcd", seconds_left=60)
    with pytest.raises(LeaseTimeout, match="elsewhere:123:abcd"):
        with hold_lease(name, timeout=0.3):
            pass


def test_the_lease_of_a_dead_process_on_this_host_is_taken_at_once(manager, admin_conn):
    """kill -9 leaves the row; its holder's pid is gone, so no one waits for expiry."""
    ensure_lease_table()
    dead_pid = _a_finished_pid()
    name = _name()
    _plant(admin_conn, name, _holder(dead_pid), seconds_left=3600)
    with hold_lease(name, timeout=5) as lease:
        assert current_holder(name) == lease.holder


def test_a_lease_taken_over_after_expiry_is_reported_lost(manager, admin_conn):
    name = _name()
    with pytest.raises(LeaseLost, match="no longer held"):
        with hold_lease(name, ttl=0.9) as lease:
            with admin_conn.cursor() as cur:  # as if it expired and another holder came
                cur.execute(
                    "UPDATE aperag_pg_leases SET holder = 'elsewhere:1:x' WHERE name = %s",
                    (name,),
                )
            wait_until(lambda: lease.lost, "the renewer finds the lease taken", 10)
    assert current_holder(name) == "elsewhere:1:x"  # not deleted by the one who lost it


def test_a_block_whose_lease_was_taken_fails_even_before_a_renewal_notices(manager, admin_conn):
    name = _name()
    with pytest.raises(LeaseLost):
        with hold_lease(name, ttl=600):
            with admin_conn.cursor() as cur:
                cur.execute(
                    "UPDATE aperag_pg_leases SET holder = 'elsewhere:1:x' WHERE name = %s",
                    (name,),
                )
    assert current_holder(name) == "elsewhere:1:x"


@pytest.mark.parametrize(
    "changed",
    [{"boot_id": "another-boot"}, {"pid_namespace": "1"}, {"boot_id": ""}],
    ids=["another machine with this hostname", "another PID namespace", "unknown machine"],
)
def test_a_holder_not_certainly_gone_is_waited_for_even_if_its_pid_is_free_here(
    manager, admin_conn, changed
):
    """Same hostname, and no process with its pid here: still waited for unless it is of
    this boot and PID namespace (containers with one hostname, or host networking)."""
    ensure_lease_table()
    dead_pid = _a_finished_pid()
    name = _name()
    planted = _holder(dead_pid, **changed)
    _plant(admin_conn, name, planted, seconds_left=60)
    with pytest.raises(LeaseTimeout, match=planted):
        with hold_lease(name, timeout=0.5):
            pass


def test_a_lease_of_this_process_it_could_not_give_back_is_taken_at_once(manager, admin_conn):
    """The database was away when the holder tried to give it back: the next hold in the
    same process (the task's retry) does not wait for the lease to expire."""
    ensure_lease_table()
    name = _name()
    _plant(admin_conn, name, _holder(os.getpid()), seconds_left=3600)
    with hold_lease(name, timeout=5) as lease:
        assert current_holder(name) == lease.holder


def _pid_free_here() -> int:
    """A pid that no process of this PID namespace has."""
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    for pid in range(pid_max - 1, pid_max // 2, -1):
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    raise AssertionError("no free pid found")


def test_a_holder_in_another_pid_namespace_with_this_hostname_is_waited_for(manager, base_settings):
    """A container with host networking, or with the same ``hostname:``: its pid means
    nothing here. The waiter must not take the lease over while that holder lives, even
    though no process here has its pid."""
    from .conftest import REPO_ROOT, worker_environment

    name = _name()
    pid = _pid_free_here()
    env = worker_environment(os.environ, base_settings, "redis://127.0.0.1:1/0")
    holder = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            sys.executable,
            "-m",
            "tests.lease_holder",
        ]
        + [name, "--pid", str(pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        line = holder.stdout.readline()
        assert line.startswith("held "), line
        held_by = Holder.parse(line.split()[1])
        assert held_by.host == socket.gethostname() and held_by.pid == pid
        assert not os.path.exists(f"/proc/{pid}")  # here, that pid is nobody's
        with pytest.raises(LeaseTimeout, match="still held"):
            with hold_lease(name, timeout=1.0):
                pass
        assert current_holder(name) == str(held_by)
        holder.stdin.close()  # the holder gives it back
        assert holder.stdout.readline().strip() == "released"
        with hold_lease(name, timeout=5) as lease:
            assert current_holder(name) == lease.holder
    finally:
        holder.kill()
        holder.wait(10)
