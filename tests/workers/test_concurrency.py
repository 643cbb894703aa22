"""Many client threads and processes calling the same and different workers at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from omnipkg_hook.workers import DaemonClient, DaemonProxy

pytestmark = pytest.mark.timeout(90)


def _run_threads(target, n):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_threads_on_one_shared_proxy(daemons):
    p = DaemonProxy(daemons.client())
    p.execute("hits = []")

    def work(i):
        for _ in range(100):
            assert p.call("builtins:pow", i, 2) == i * i
            p.execute(f"hits.append({i})")

    _run_threads(work, 8)
    assert sorted(p.execute("hits").value) == sorted(i for i in range(8) for _ in range(100))


def test_threads_with_their_own_proxies_on_same_and_different_workers(daemons, bubble):
    pins = [bubble("foo", "1.0"), bubble("foo", "2.0")]
    client = daemons.client()

    def work(i):
        pin = pins[i % 2]
        p = DaemonProxy(client, pin)  # proxies made concurrently share one client connection
        p.execute(f"mine = {i}")
        for _ in range(50):
            assert p.execute("import foo; (foo.VERSION, mine)").value == (pin.split("==")[1], i)
        p.close()

    _run_threads(work, 8)
    assert sorted(tuple(w["pins"]) for w in client.status()["workers"]) == [(pins[0],), (pins[1],)]


def test_processes_and_threads_together(daemons, bubble):
    pins = [bubble("foo", "1.0"), bubble("foo", "2.0")]
    client = daemons.client()
    DaemonProxy(client, pins[0]).ping()
    script = textwrap.dedent(f"""
        import sys, threading
        from omnipkg_hook.workers import DaemonClient, DaemonProxy
        client = DaemonClient(start=False)
        pins = {pins!r}
        bad = []
        def work(k):
            pin = pins[k % 2]
            p = DaemonProxy(client, pin)
            p.execute("n = 0")
            for _ in range(100):
                p.execute("n += 1")
                if p.execute("import foo; foo.VERSION").value != pin.split("==")[1]:
                    bad.append(pin)
            if p.execute("n").value != 100:
                bad.append("namespace")
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("ok" if not bad else bad)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    local = DaemonProxy(client, pins[1])
    for _ in range(200):
        assert local.execute("import foo; foo.VERSION").value == "2.0"
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.strip() == "ok", err
    assert client.status()["running"]


def test_several_clients_in_one_process(daemons):
    first = daemons.client()
    clients = [first] + [DaemonClient(daemons.store, runtime_dir=daemons.runtime, start=False) for _ in range(3)]
    try:
        def work(i):
            p = DaemonProxy(clients[i % 4])
            for _ in range(50):
                assert p.call("builtins:abs", -i) == i

        _run_threads(work, 8)
        assert first.status()["clients"] >= 4
    finally:
        for c in clients[1:]:
            c.close()
