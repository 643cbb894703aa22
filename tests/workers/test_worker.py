"""The worker loop, through a WorkerPool (workers owned by the test process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import process_gone, wait_for

from omnipkg_hook.errors import (
    InterpreterError,
    RemoteError,
    WorkerCrashedError,
    WorkerError,
    WorkerTimeoutError,
)
from omnipkg_hook.workers import ExecResult, WorkerPool

pytestmark = pytest.mark.timeout(60)


def test_execute_returns_value_stdout_stderr(pool):
    w = pool.get()
    r = w.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)\n40 + 2")
    assert r == ExecResult(42, "out\n", "err\n")


@pytest.mark.parametrize(
    "code, value",
    [
        ("1 + 1", 2),
        ("x = 5", None),
        ("x = 5\nx", 5),
        ("x = 5\nx\ny = 6", None),  # the last statement is not an expression
        ("def f():\n    return 3\nf()", 3),
        ("if True:\n    z = 1", None),
        ("", None),
        ("# just a comment", None),
        ("[i * i for i in range(4)]", [0, 1, 4, 9]),
    ],
)
def test_last_expression_semantics(pool, code, value):
    assert pool.get().execute(code).value == value


def test_namespace_persists_between_calls(pool):
    w = pool.get()
    w.execute("import collections\ncounter = collections.Counter()")
    w.execute("counter['a'] += 1")
    w.execute("counter['a'] += 1")
    assert w.execute("counter['a']").value == 2
    assert w.execute("__name__").value == "__main__"


def test_call_module_target_and_kwargs(pool):
    w = pool.get()
    assert w.call("os:getpid") == w.pid
    assert w.call("builtins:sorted", [3, 1, 2], reverse=True) == [3, 2, 1]
    assert w.call("os.path:join", "a", "b") == os.path.join("a", "b")
    assert w.call("collections:OrderedDict.fromkeys", "ab") == {"a": None, "b": None}


def test_call_namespace_target(pool):
    w = pool.get()
    w.execute("def double(x):\n    return 2 * x\nclass K:\n    @staticmethod\n    def m():\n        return 'm'")
    assert w.call("double", 21) == 42
    assert w.call("K.m") == "m"


def test_call_output_goes_to_the_callers_streams(pool, capsys):
    w = pool.get()
    assert w.call("builtins:print", "printed remotely") is None
    w.call("builtins:print", "to stderr", file=None)
    out, err = capsys.readouterr()
    assert "printed remotely\n" in out


@pytest.mark.parametrize(
    "target, kind, message",
    [
        ("nosuchmodule_xyz:f", "ModuleNotFoundError", "No module named 'nosuchmodule_xyz'"),
        ("os:no_such_function", "AttributeError", "no_such_function"),
        ("undefined_name", "NameError", "name 'undefined_name' is not defined in this session"),
        ("os:", "ValueError", "must look like 'package.module:function'"),
        ("", "TypeError", "call target must be"),
    ],
)
def test_bad_call_targets(pool, target, kind, message):
    with pytest.raises(RemoteError) as info:
        pool.get().call(target)
    assert info.value.remote_type == kind
    assert message in info.value.remote_message


def test_remote_exception_carries_type_message_traceback_and_output(pool):
    w = pool.get()
    with pytest.raises(RemoteError) as info:
        w.execute("print('before')\ndef inner():\n    raise KeyError('missing')\ninner()")
    e = info.value
    assert e.remote_type == "KeyError"
    assert e.remote_message == "'missing'"
    assert "in inner" in e.remote_traceback and "raise KeyError('missing')" in e.remote_traceback
    assert "worker.py" not in e.remote_traceback  # the worker's own frames are left out
    assert e.stdout == "before\n"
    assert str(e) == "KeyError: 'missing'"
    assert "raise KeyError" in str(e.__cause__)  # shown like concurrent.futures' remote traceback
    assert isinstance(e, WorkerError) and isinstance(e, RuntimeError)


def test_exception_class_from_a_module_is_qualified(pool):
    with pytest.raises(RemoteError) as info:
        pool.get().execute("import json\njson.loads('{')")
    assert info.value.remote_type == "json.decoder.JSONDecodeError"


def test_syntax_error(pool):
    with pytest.raises(RemoteError) as info:
        pool.get().execute("def (:")
    assert info.value.remote_type == "SyntaxError"
    assert "<execute-" in info.value.remote_traceback


def test_system_exit_and_keyboard_interrupt_do_not_end_the_worker(pool):
    w = pool.get()
    pid = w.pid
    for code in ("raise SystemExit(3)", "import sys; sys.exit('bye')", "raise KeyboardInterrupt"):
        with pytest.raises(RemoteError):
            w.execute(code)
    assert w.call("os:getpid") == pid


def test_unpicklable_result_is_a_clear_error_and_the_worker_goes_on(pool):
    w = pool.get()
    pid = w.pid
    with pytest.raises(RemoteError) as info:
        w.execute("print('side effect')\nlambda: 1")
    e = info.value
    assert e.remote_type == "PicklingError"
    assert "cannot be pickled" in e.remote_message and "function" in e.remote_message
    assert e.stdout == "side effect\n"
    with pytest.raises(RemoteError, match="cannot be pickled"):
        w.call("threading:Lock")
    assert w.execute("1").value == 1 and w.pid == pid


def test_result_unknown_to_the_client_is_a_clear_local_error(pool):
    w = pool.get()
    w.execute("import types, sys\nm = types.ModuleType('only_in_worker')\nsys.modules['only_in_worker'] = m\n"
              "exec('class C: pass', m.__dict__)\nm.C.__module__ = 'only_in_worker'")
    with pytest.raises(WorkerError, match="cannot be unpickled here"):
        w.execute("m.C()")
    assert w.execute("2").value == 2


def test_unpicklable_arguments_fail_locally(pool):
    w = pool.get()
    with pytest.raises(Exception) as info:
        w.call("builtins:repr", threading.Lock())
    assert not isinstance(info.value, WorkerCrashedError)
    assert w.call("builtins:len", "abc") == 3


def test_ten_megabyte_payloads_both_ways(pool):
    w = pool.get()
    blob = os.urandom(10 * 1024 * 1024)
    w.execute("import hashlib\ndef digest(b):\n    return hashlib.sha256(b).hexdigest()")
    assert w.call("digest", blob) == __import__("hashlib").sha256(blob).hexdigest()
    back = w.call("os:urandom", 10 * 1024 * 1024)
    assert len(back) == 10 * 1024 * 1024
    assert w.call("builtins:len", back) == len(back)


def test_payloads_over_the_frame_limit_are_errors_not_crashes(wstore):
    with WorkerPool(store=wstore, max_frame=1024 * 1024) as pool:
        w = pool.get()
        pid = w.pid
        with pytest.raises(RemoteError, match="over the frame limit"):
            w.call("os:urandom", 2 * 1024 * 1024)
        with pytest.raises(WorkerError, match="over the frame limit of 1048576 bytes; nothing was sent"):
            w.call("builtins:len", b"x" * 2 * 1024 * 1024)
        assert w.call("builtins:len", "ok") == 2 and w.pid == pid


def test_user_output_to_the_file_descriptors_never_reaches_the_protocol(pool):
    w = pool.get()
    r = w.execute("import os\nos.write(1, b'raw fd 1\\n')\nos.write(2, b'raw fd 2\\n')\n"
                  "import sys\nsys.__stdout__.write('dunder stdout\\n'); sys.__stdout__.flush()\n7")
    assert r.value == 7
    assert w.call("builtins:len", "still framed") == 12


def test_stdout_is_restored_after_each_call(pool):
    w = pool.get()
    w.execute("import sys\nsaved = sys.stdout")
    assert w.execute("import sys\nsys.stdout is sys.__stdout__ or type(sys.stdout).__name__").value in (True, "StringIO")
    assert w.execute("print('x')").stdout == "x\n"


def test_pins_and_environment(pool, wstore):
    w = pool.get()
    env = w.call("os:getenv", "OMNIPKG_STORE"), w.call("os:getenv", "OMNIPKG_PINS")
    assert env == (wstore, None)
    assert w.call("os:getcwd") == os.getcwd()  # a pool worker runs where its owner runs


def test_timeout_kills_and_replaces_the_worker(wstore):
    with WorkerPool(store=wstore, timeout=0.5) as pool:
        w = pool.get()
        old = w.pid
        with pytest.raises(WorkerTimeoutError, match="took longer than 0.5 s") as info:
            w.execute("import time; time.sleep(30)")
        assert isinstance(info.value, TimeoutError)
        w.timeout = None
        assert w.call("os:getpid") != old
        assert process_gone(old)


def test_execute_timeout_argument(pool):
    w = pool.get()
    with pytest.raises(WorkerTimeoutError):
        w.execute("while True: pass", timeout=0.3)
    assert w.execute("1 + 1").value == 2


def test_sigkill_mid_call_fails_the_call_and_the_next_call_respawns(pool):
    w = pool.get()
    old = w.pid
    started = threading.Event()
    outcome = []

    def long_call():
        started.set()
        try:
            w.execute("import time; time.sleep(30)")
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=long_call)
    t.start()
    started.wait()
    time.sleep(0.2)
    os.kill(old, signal.SIGKILL)
    t.join(20)
    (e,) = outcome
    assert isinstance(e, WorkerCrashedError)
    assert f"pid {old}" in str(e) and "SIGKILL" in str(e) and "died during execute()" in str(e)
    assert w.call("os:getpid") != old


def test_threads_share_one_worker_serially(pool):
    w = pool.get()
    w.execute("n = 0")
    errors = []

    def bump():
        try:
            for _ in range(50):
                w.execute("n += 1")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert w.execute("n").value == 400


def test_stop_and_close_are_idempotent_and_end_the_processes(wstore):
    pool = WorkerPool(store=wstore)
    w = pool.get()
    pid = w.pid
    assert pool.workers() == [w]
    pool.stop()
    pool.stop()
    assert process_gone(pid)
    w2 = pool.get()
    pid2 = w2.pid
    assert w2 is not w and pid2 != pid
    pool.close()
    pool.close()
    assert process_gone(pid2)
    with pytest.raises(WorkerError, match="closed"):
        pool.get()


def test_workers_leave_when_their_owner_dies(wstore, tmp_path):
    script = (
        "import os, sys\nfrom omnipkg_hook.workers import WorkerPool\n"
        f"p = WorkerPool(store={wstore!r})\nprint(p.get().pid, flush=True)\nos._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    pid = int(out.stdout.split()[0])

    wait_for(lambda: process_gone(pid), 10, what=f"orphaned worker {pid} to exit")


def test_forked_child_gets_its_own_session(pool):
    w = pool.get()
    w.execute("secret = 'parent'")
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child_pid = w.call("os:getpid")
            has = w.execute("'secret' in dir()").value
            os.write(wfd, f"{child_pid} {has}".encode())
        finally:
            os._exit(0)
    os.close(wfd)
    data = os.read(r, 100).decode().split()
    os.waitpid(pid, 0)
    os.close(r)
    assert data[1] == "False"  # a fresh session (and, for a pool, a worker of the child's own)
    assert int(data[0]) != w.pid
    assert w.execute("secret").value == "parent"


def test_another_interpreter_must_be_adopted_first(pool):
    other = "3.12" if sys.version_info[:2] != (3, 12) else "3.11"
    with pytest.raises(InterpreterError, match=rf"python='{other}': Python {other} is not adopted") as info:
        pool.get(python=other)
    assert info.value.hint == f"run `pip-omni python adopt {other}` first"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert pool.get(python=version) is pool.get(python=sys.executable) is pool.get()


def test_ping(pool):
    w = pool.get()
    assert w.ping() == w.pid
