"""Workers with real pins: bubbles built from local wheels in each test's own store."""

from __future__ import annotations

import pytest
from conftest import linux_only, process_gone, wait_for

from omnipkg_hook.errors import RemoteError
from omnipkg_hook.workers import DaemonProxy

pytestmark = pytest.mark.timeout(60)


def test_pool_workers_import_their_pinned_versions(pool, bubble, wstore):
    one, two = bubble("foo", "1.0"), bubble("foo", "2.0")
    a, b = pool.get(one), pool.get(two)
    assert a.execute("import foo; foo.VERSION").value == "1.0"
    assert b.execute("import foo; foo.VERSION").value == "2.0"
    path = a.execute("foo.__file__").value
    assert path.startswith(wstore) and "/1.0/" in path
    assert a.execute("import importlib.metadata as m; m.version('foo')").value == "1.0"
    assert a.call("os:getenv", "OMNIPKG_PINS") == "foo==1.0"  # children of the worker inherit it


@linux_only
def test_daemon_workers_import_their_pinned_versions(daemons, bubble):
    one, two = bubble("foo", "1.0"), bubble("foo", "2.0")
    client = daemons.client()
    a, b = DaemonProxy(client, one), DaemonProxy(client, [two])
    assert a.execute("import foo; foo.VERSION").value == "1.0"
    assert b.execute("import foo; foo.VERSION").value == "2.0"
    assert a.pid != b.pid
    status = client.status()
    assert sorted(tuple(w["pins"]) for w in status["workers"]) == [("foo==1.0",), ("foo==2.0",)]
    assert all(z["preloaded"] == ["foo"] for z in status["zygotes"])  # imported before the fork


def test_several_pins_in_one_worker(daemons, bubble):
    foo, bar = bubble("foo", "1.0"), bubble("bar", "3.0")
    p = DaemonProxy(daemons.client(), foo, bar)
    assert p.execute("import foo, bar; (foo.VERSION, bar.VERSION)").value == ("1.0", "3.0")
    assert DaemonProxy(daemons.client(), bar, foo).pid == p.pid  # same pin set, same worker


def test_an_unsatisfiable_pin_is_a_clear_error_at_the_proxy(daemons, bubble):
    bubble("foo", "1.0")
    client = daemons.client()
    with pytest.raises(RemoteError) as info:
        DaemonProxy(client, "foo==3.0")
    e = info.value
    assert e.remote_type == "omnipkg_hook.errors.BubbleNotFoundError"
    assert "worker for foo==3.0 could not start" in str(e)
    assert "no stored version of 'foo' satisfies 'foo==3.0'" in str(e)
    assert "pip-omni install" in e.remote_message  # the hook's own hint comes along
    assert DaemonProxy(client, "foo==1.0").execute("import foo; foo.VERSION").value == "1.0"
    assert [w["pins"] for w in client.status()["workers"]] == [["foo==1.0"]]


def test_an_unsatisfiable_pin_is_a_clear_error_in_the_pool(pool, bubble):
    bubble("foo", "1.0")
    with pytest.raises(RemoteError, match="worker for foo==3.0 could not start: .*BubbleNotFoundError"):
        pool.get("foo==3.0")
    with pytest.raises(RemoteError, match="InvalidPinError"):
        pool.get("foo==")


def test_lru_cap_evicts_the_least_recently_used_worker(daemons, bubble):
    pins = [bubble("foo", v) for v in ("1.0", "2.0", "3.0")]
    client = daemons.client(max_workers=2)
    first = DaemonProxy(client, pins[0])
    first_pid = first.call("os:getpid")
    second = DaemonProxy(client, pins[1])
    second.call("os:getpid")
    first.close()  # no session left on the first worker: it is the one to go
    wait_for(lambda: [w["clients"] for w in client.status()["workers"]] == [0, 1], what="a poll to see that")
    third = DaemonProxy(client, pins[2])
    assert third.execute("import foo; foo.VERSION").value == "3.0"
    wait_for(lambda: process_gone(first_pid), what="the evicted worker to exit")
    live = sorted(tuple(w["pins"]) for w in client.status()["workers"])
    assert live == [(pins[1],), (pins[2],)]
    with open(daemons.paths.log) as f:
        assert "evicted: the daemon's cap of 2 workers was reached" in f.read()


def test_evicted_worker_with_a_stateless_session_comes_back_transparently(daemons, bubble):
    pins = [bubble("foo", v) for v in ("1.0", "2.0")]
    client = daemons.client(max_workers=1)
    a = DaemonProxy(client, pins[0])
    old = a.call("os:getpid")
    b = DaemonProxy(client, pins[1])  # evicts a's worker (the cap is 1)
    assert b.execute("import foo; foo.VERSION").value == "2.0"
    wait_for(lambda: process_gone(old), what="eviction")
    assert a.call("os:getpid") != old  # ... and a's next call brings it back (evicting b's)


@linux_only
def test_a_package_that_starts_a_thread_on_import_gets_no_zygote(daemons, bubble):
    pin = bubble("threaded", "1.0", files={
        "threaded/__init__.py": "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\nVERSION = '1.0'\n",
    })
    client = daemons.client()
    p = DaemonProxy(client, pin)
    assert p.execute("import threaded; threaded.VERSION").value == "1.0"
    s = client.status()
    assert s["workers"][0]["via"] == "spawn"
    assert s["zygotes"] == []
    assert "forking would be unsafe" in s["no_zygote"]["threaded==1.0"]


def test_a_failing_preload_is_reported_and_the_worker_fails_the_same_way(daemons, bubble):
    pin = bubble("broken", "1.0", files={"broken/__init__.py": "raise RuntimeError('broken at import')\n"})
    client = daemons.client()
    p = DaemonProxy(client, pin)
    with pytest.raises(RemoteError, match="broken at import"):
        p.execute("import broken")
    assert p.execute("1").value == 1
    with open(daemons.paths.log) as f:
        assert "preloading 'broken' failed" in f.read()
