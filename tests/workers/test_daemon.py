"""The daemon's pool: sessions, crashes, timeouts, idle expiry, the cap, zygotes, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import linux_only, process_gone, wait_for

from omnipkg_hook.errors import (
    InterpreterError,
    RemoteError,
    WorkerCrashedError,
    WorkerTimeoutError,
)
from omnipkg_hook.workers import DaemonClient, DaemonProxy

pytestmark = pytest.mark.timeout(60)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _workers(client) -> list[dict]:
    return client.status()["workers"]


def test_proxies_are_sessions_of_one_shared_worker(daemons):
    client = daemons.client()
    a, b = DaemonProxy(client), DaemonProxy(client)
    assert a.pid == b.pid
    a.execute("x = 'a'")
    b.execute("x = 'b'")
    assert (a.execute("x").value, b.execute("x").value) == ("a", "b")
    a.execute("import json")
    assert b.execute("import sys; 'json' in sys.modules").value  # modules are per worker
    r = a.execute("print('hi')\nimport sys\nprint('oops', file=sys.stderr)\n3 * 14")
    assert (r.value, r.stdout, r.stderr) == (42, "hi\n", "oops\n")
    assert a.call("builtins:divmod", 7, 2) == (3, 1)
    with pytest.raises(RemoteError) as info:
        a.execute("1 / 0")
    assert info.value.remote_type == "ZeroDivisionError"
    assert "1 / 0" in info.value.remote_traceback


def test_worker_environment_in_the_daemon(daemons):
    p = DaemonProxy(daemons.client())
    assert p.call("os:getcwd") == "/"
    assert p.call("os:getenv", "OMNIPKG_STORE") == daemons.store
    assert p.call("os:getenv", "OMNIPKG_PINS") is None
    assert p.execute("import sys; sys.flags.ignore_environment").value == 1


def test_unpicklable_results_and_ten_megabytes_through_the_daemon(daemons):
    p = DaemonProxy(daemons.client())
    pid = p.pid
    with pytest.raises(RemoteError, match="cannot be pickled"):
        p.execute("(x for x in range(3))")
    blob = os.urandom(10 * 1024 * 1024)
    p.execute("def echo(b):\n    return b")
    assert p.call("echo", blob) == blob
    assert len(p.execute("b'y' * (10 * 1024 * 1024)").value) == 10 * 1024 * 1024
    assert p.pid == pid


@linux_only
def test_status_describes_workers_and_zygotes(daemons):
    client = daemons.client()
    p = DaemonProxy(client)
    p.execute("1")
    wait_for(lambda: _workers(client)[0]["calls"] >= 1, what="a STAT poll")
    s = client.status()
    assert s["running"] and s["pid"] == daemons.pid() and s["store"] == daemons.store
    (w,) = s["workers"]
    assert w["pid"] == p.pid and w["pins"] == [] and w["python"] == sys.executable
    assert w["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert w["state"] == "ready" and w["clients"] == 1 and w["via"] == "zygote"
    assert w["idle_seconds"] >= 0 and w["rss_bytes"] > 1_000_000
    (z,) = s["zygotes"]
    assert z["forks"] == 1 and _ppid(p.pid) == z["pid"]
    assert set(s["config"]) == {"idle_timeout", "exit_timeout", "max_workers", "zygotes"}


@linux_only
def test_sigkill_mid_call_then_respawn_from_the_zygote(daemons):
    client = daemons.client()
    p = DaemonProxy(client)
    other = DaemonProxy(client)
    old = p.pid
    zygote = _ppid(old)
    outcome = []
    t = threading.Thread(target=lambda: outcome.append(_catch(p.execute, "import time; time.sleep(30)")))
    t.start()
    wait_for(lambda: _workers(client)[0]["state"] == "busy", what="the worker to be busy")
    os.kill(old, signal.SIGKILL)
    t.join(20)
    (e,) = outcome
    assert isinstance(e, WorkerCrashedError) and f"pid {old}" in str(e) and "died during execute()" in str(e)
    assert p.call("os:getpid") != old  # respawned on next use ...
    assert _ppid(p.pid) == zygote  # ... by forking the zygote
    assert other.call("os:getpid") == p.pid  # an idle session reconnects by itself


def _catch(fn, *args):
    try:
        return fn(*args)
    except BaseException as e:
        return e


def test_timeout_kills_and_replaces_the_worker(daemons):
    client = daemons.client()
    slow = DaemonProxy(client, timeout=0.5)
    bystander = DaemonProxy(client)
    old = slow.pid
    with pytest.raises(WorkerTimeoutError, match="took longer than 0.5 s; the worker was killed"):
        slow.execute("import time; time.sleep(30)")
    wait_for(lambda: process_gone(old), what="the timed-out worker to die")
    slow.timeout = None
    assert slow.call("os:getpid") != old
    assert bystander.call("os:getpid") == slow.pid  # a stateless session moves on by itself
    assert [w["pid"] for w in _workers(client)] == [slow.pid]


def test_client_killed_mid_call_harms_neither_daemon_nor_worker(daemons):
    client = daemons.client()
    p = DaemonProxy(client)
    worker = p.pid
    script = textwrap.dedent("""
        from omnipkg_hook.workers import DaemonClient, DaemonProxy
        p = DaemonProxy(DaemonClient(start=False))
        print(p.pid, flush=True)
        p.execute("import time; time.sleep(1.5)")
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert int(child.stdout.readline()) == worker
    wait_for(lambda: _workers(client)[0]["state"] == "busy", what="the worker to run the child's call")
    child.kill()
    child.wait()
    child.stdout.close()
    assert p.call("os:getpid") == worker  # answered once the orphaned call has finished
    assert client.status()["running"]


def test_idle_workers_expire_held_ones_do_not(daemons):
    client = daemons.client(idle_timeout=0.4)
    held = DaemonProxy(client)
    held.execute("state = 1")
    time.sleep(1.5)  # several idle timeouts
    assert held.execute("state").value == 1  # a worker with an open session stays
    pid = held.pid
    held.close()
    wait_for(lambda: not _workers(client), what="the idle worker to expire")
    wait_for(lambda: process_gone(pid), what="the expired worker's process to end")
    wait_for(lambda: not client.status()["zygotes"], what="the zygote to expire")
    assert DaemonProxy(client).execute("2").value == 2  # and a new one comes on demand


def test_stateless_session_reconnects_after_expiry(daemons):
    client = daemons.client(idle_timeout=0.3)
    p = DaemonProxy(client)
    first = p.call("os:getpid")
    client.kill_worker(p.info["id"], "test")  # gone between calls
    wait_for(lambda: process_gone(first), what="the worker to die")
    assert p.call("os:getpid") != first


def test_stateful_session_says_its_namespace_is_gone_once(daemons):
    client = daemons.client()
    p = DaemonProxy(client)
    p.execute("x = 1")
    first = p.pid
    client.kill_worker(p.info["id"], "test")
    wait_for(lambda: process_gone(first), what="the worker to die")
    with pytest.raises(WorkerCrashedError, match="namespace from earlier execute\\(\\) calls is gone.*did not run"):
        p.execute("x")
    with pytest.raises(RemoteError, match="NameError"):
        p.execute("x")  # a fresh session: it runs, and x is not there
    assert p.pid != first


def test_daemon_restart_while_clients_hold_proxies(daemons):
    client = daemons.client()
    stateless = DaemonProxy(client)
    stateful = DaemonProxy(client)
    stateful.execute("x = 1")
    old_daemon, old_worker = daemons.pid(), stateless.pid
    client.stop()
    assert daemons.pid() is None and process_gone(old_worker)
    assert stateless.call("os:getpid") not in (old_worker, None)  # restarted the daemon, transparently
    assert daemons.pid() not in (old_daemon, None)
    with pytest.raises(WorkerCrashedError, match="the daemon stopped"):
        stateful.execute("x")
    assert stateful.execute("1 + 1").value == 2


def test_a_call_in_flight_finishes_when_the_daemon_stops(daemons):
    client = daemons.client()
    p = DaemonProxy(client)
    p.call("os:getpid")
    outcome = []
    t = threading.Thread(target=lambda: outcome.append(_catch(p.execute, "import time; time.sleep(0.8); 'done'")))
    t.start()
    wait_for(lambda: _workers(client)[0]["state"] == "busy", what="the call to start")
    DaemonClient(daemons.store, runtime_dir=daemons.runtime, start=False).stop()
    t.join(20)
    assert outcome[0].value == "done"


@linux_only
def test_zygotes_off_spawns_workers(daemons):
    client = daemons.client(zygotes=False)
    p = DaemonProxy(client)
    assert _ppid(p.pid) == daemons.pid()
    s = client.status()
    assert s["workers"][0]["via"] == "spawn" and s["zygotes"] == []


def test_another_interpreter_must_be_adopted_first(daemons):
    client = daemons.client()
    other = "3.12" if sys.version_info[:2] != (3, 12) else "3.11"
    with pytest.raises(InterpreterError, match=f"Python {other} is not adopted") as info:
        DaemonProxy(client, python=other)
    assert f"pip-omni python adopt {other}" in str(info.value)
    assert DaemonProxy(client, python=f"{sys.version_info[0]}.{sys.version_info[1]}").execute("1").value == 1


def test_forked_client_gets_its_own_sessions(daemons):
    client = daemons.client()
    p = DaemonProxy(client)
    p.execute("secret = 'parent'")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, repr(p.execute("'secret' in dir()").value).encode())
        except BaseException as e:
            os.write(w, repr(e).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1000).decode()
    os.waitpid(pid, 0)
    os.close(r)
    assert got == "False"
    assert p.execute("secret").value == "parent"


def test_start_is_race_safe(daemons):
    daemons.paths.prepare()
    script = textwrap.dedent("""
        import sys
        from omnipkg_hook.workers import DaemonClient, DaemonProxy
        from omnipkg_hook.workers.daemon import DaemonConfig
        c = DaemonClient(config=DaemonConfig(quit_grace=1.0))
        print(c.ping()["pid"], DaemonProxy(c).pid, flush=True)
    """)
    children = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [c.communicate(timeout=40)[0].split() for c in children]
    assert all(c.returncode == 0 for c in children)
    assert len({o[0] for o in outs}) == 1 and int(outs[0][0]) == daemons.pid()
    assert len({o[1] for o in outs}) == 1  # one worker too


def test_kill_of_an_unknown_worker_is_a_no_op(daemons):
    assert daemons.client().kill_worker("w999", "nothing") is False


def test_daemon_leaves_when_its_socket_file_is_removed(daemons):
    client = daemons.client()
    worker = DaemonProxy(client).pid
    pid = daemons.pid()
    os.unlink(daemons.paths.socket)  # e.g. the runtime dir was cleaned at logout
    wait_for(lambda: process_gone(pid), what="the daemon to notice and stop")
    wait_for(lambda: process_gone(worker), what="its worker to leave")
    with open(daemons.paths.log) as f:
        assert "stopping: the socket file was removed" in f.read()


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _ppid(int(entry)) == pid and not process_gone(int(entry)):
                    out.add(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


@linux_only
def test_zygote_hands_out_its_spare_and_forks_the_next(daemons):
    client = daemons.client()
    p = DaemonProxy(client)
    first = p.pid
    zygote = client.status()["zygotes"][0]["pid"]
    spares = wait_for(lambda: _children(zygote) - {first}, what="the zygote to fork a spare")
    (spare,) = spares
    client.kill_worker(p.info["id"], "test")
    assert p.call("os:getpid") == spare  # the new worker is the spare, handed over
    wait_for(lambda: _children(zygote) - {spare, first}, what="the next spare")
    client.stop()
    assert all(process_gone(pid) for pid in (zygote, spare, *_children(zygote)))
