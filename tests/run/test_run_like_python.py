"""`pip-omni run` behaves like `python`: arguments, stdin, terminal, exit status, tracebacks.

Each test runs the installed `pip-omni` of a fresh venv as a subprocess and, where it can,
compares with what that venv's own `python` does with the same program, byte for byte.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from test_interpreters import need  # noqa: E402

PROBE = """\
import json, sys
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__,
                  "file": globals().get("__file__"), "tty": sys.stdout.isatty()}))
"""


def _both(omni_venv, cwd, *argv, **kw):
    ours = omni_venv.run("run", *argv, check=False, cwd=cwd, **kw)
    theirs = subprocess.run([str(omni_venv.python), *argv], capture_output=True, text=True, cwd=cwd,
                            env=omni_venv.env, **kw)
    return ours, theirs


def test_everything_after_the_script_is_the_scripts(omni_venv, tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    ours, theirs = _both(omni_venv, tmp_path, "probe.py", "--help", "-m", "x", "--python", "3.9", "--")
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)
    assert json.loads(ours.stdout)["argv"] == ["probe.py", "--help", "-m", "x", "--python", "3.9", "--"]
    assert ours.stderr == ""


def test_dash_m_and_dash_c_take_the_rest(omni_venv, tmp_path):
    (tmp_path / "probemod.py").write_text(PROBE)
    ours, theirs = _both(omni_venv, tmp_path, "-m", "probemod", "-q", "--json", "x")
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)
    assert json.loads(ours.stdout)["argv"][1:] == ["-q", "--json", "x"]
    ours, theirs = _both(omni_venv, tmp_path, "-c", PROBE, "-m", "y")
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)
    assert json.loads(ours.stdout)["argv"] == ["-c", "-m", "y"]
    # and `--` before the program, as the README writes it
    proc = omni_venv.run("run", "--", "-m", "probemod", "a", cwd=tmp_path)
    assert json.loads(proc.stdout)["argv"][1:] == ["a"]


def test_stdin_and_exact_exit_status(omni_venv, tmp_path):
    (tmp_path / "echo.py").write_text("import sys\nline = input()\nprint('got', line)\nsys.exit(int(line))\n")
    proc = omni_venv.run("run", "echo.py", check=False, cwd=tmp_path, input="7\n")
    assert (proc.returncode, proc.stdout) == (7, "got 7\n")
    proc = omni_venv.run("run", "-", check=False, cwd=tmp_path, input="import sys; print(sys.argv); sys.exit(3)\n")
    assert (proc.returncode, proc.stdout) == (3, "['-']\n")


def _on_a_terminal(cmd, env, cwd) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    chunks = []
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(60), b"".join(chunks).decode().replace("\r\n", "\n")


def test_one_interpreter_gets_the_real_terminal_and_nothing_added(omni_venv, tmp_path):
    (tmp_path / "probe.py").write_text(PROBE + "import sys; sys.exit(4)\n")
    code, out = _on_a_terminal([str(omni_venv.path / "bin" / "pip-omni"), "run", "probe.py"], omni_venv.env, tmp_path)
    assert code == 4
    (line,) = out.strip().splitlines()  # no prefix, no table
    assert json.loads(line)["tty"] is True


TRACEBACK = """\
def inner():
    raise ValueError("boom")

def outer():
    inner()

outer()
"""


def test_traceback_is_the_users_only(omni_venv, tmp_path):
    (tmp_path / "fails.py").write_text(TRACEBACK)
    ours, theirs = _both(omni_venv, tmp_path, "fails.py")
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == theirs.stderr
    assert "runner.py" not in ours.stderr and "_boot.py" not in ours.stderr and "runpy" not in ours.stderr
    (tmp_path / "bad.py").write_text("def (\n")
    ours, theirs = _both(omni_venv, tmp_path, "bad.py")
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)
    ours, theirs = _both(omni_venv, tmp_path, "-c", "1/0")
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)


def test_traceback_under_another_interpreter_is_the_users_only(omni_venv, tmp_path):
    other = need("3.12") if sys.version_info[:2] != (3, 12) else need("3.13")
    version = "3.12" if sys.version_info[:2] != (3, 12) else "3.13"
    omni_venv.cli("python", "adopt", version)
    (tmp_path / "fails.py").write_text(TRACEBACK)
    ours = omni_venv.run("run", "--python", version, "fails.py", check=False, cwd=tmp_path)
    theirs = subprocess.run([other, "fails.py"], capture_output=True, text=True, cwd=tmp_path)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == theirs.stderr


def test_missing_script_and_module_are_pythons_own_one_line_errors(omni_venv, tmp_path):
    ours, theirs = _both(omni_venv, tmp_path, "nosuch.py")
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr) == (2, theirs.stderr)
    assert len(ours.stderr.splitlines()) == 1 and "can't open file" in ours.stderr
    ours, theirs = _both(omni_venv, tmp_path, "-m", "nosuchmodule")
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)


def test_bad_run_options_are_usage_errors(omni_venv, tmp_path):
    proc = omni_venv.run("run", "--bogus", "x.py", check=False)
    assert proc.returncode == 2 and "'--bogus'" in proc.stderr
    proc = omni_venv.run("run", check=False)
    assert proc.returncode == 2 and "nothing to run" in proc.stderr
    assert omni_venv.run("run", "--help").stdout.startswith("usage: pip-omni run")


def test_several_interpreters_prefix_and_table_exit_is_the_first_failure(omni_venv, tmp_path):
    version = "3.12" if sys.version_info[:2] != (3, 12) else "3.13"
    need(version)
    omni_venv.cli("python", "adopt", version)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    code = "import sys; print('on', sys.version_info[:2]); sys.exit(3 if sys.version_info[:2] == (3, 12) else 5)"
    proc = omni_venv.run("run", "--python", f"{version},{here}", "-c", code, check=False, cwd=tmp_path)
    first = 3 if version == "3.12" else 5
    assert proc.returncode == first, proc.stderr
    assert f"[{version}] on (3, {version.split('.')[1]})" in proc.stdout
    assert f"[{here}] on {tuple(sys.version_info[:2])}" in proc.stdout
    assert "Exit" in proc.stdout and "FAILED" in proc.stdout


def test_install_makes_the_missing_bubble_with_progress(omni_venv, wheel, wheelhouse, tmp_path):
    wheel("tinydep", "1.0", files={"tinydep/__init__.py": "V = '1.0'\n"})
    proc = omni_venv.run("run", "--pin", "tinydep==1.0", "--offline", "-c", "import tinydep", check=False)
    assert proc.returncode == 1
    assert "--offline" in proc.stderr and "pip-omni install --bubble" in proc.stderr
    proc = omni_venv.run("run", "--pin", "tinydep==1.0", "--install", "--no-index", "-f", str(wheelhouse),
                         "-c", "import tinydep; print(tinydep.V)", cwd=tmp_path)
    assert proc.stdout == "1.0\n"
    assert "pip-omni: fetch tinydep==1.0" in proc.stderr  # the install's progress, on stderr
    assert not list(omni_venv.site.glob("tinydep*"))  # a bubble, never main


FINALIZED = """\
import atexit, gc, sys

class Cycle:
    def __del__(self):
        sys.stdout.write("cycle finalized\\n")

c = Cycle()
c.me = c  # cyclic garbage once dropped: only the interpreter's last collection finalizes it
del c
gc.disable()
atexit.register(lambda: sys.stdout.write(f"frozen at exit: {gc.get_freeze_count() > 0}\\n"))
"""


def test_a_program_run_here_ends_as_under_python_and_a_command_skips_the_last_collection(omni_venv, tmp_path):
    """`pip-omni run` in its own process exits as `python` does (cyclic garbage finalized by the
    last collection); a command that runs no program of the user's puts the heap out of that
    last collection's reach (cli.console: gc.freeze), which only saves time."""
    (tmp_path / "fin.py").write_text(FINALIZED)
    ours, theirs = _both(omni_venv, tmp_path, "fin.py")
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout == "frozen at exit: False\ncycle finalized\n"
    probe = ("import atexit, gc, sys; atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0)); "
             "sys.argv = ['pip-omni', 'list']; from omnipkg_pip.cli import console; console()")
    proc = subprocess.run([str(omni_venv.python), "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                          env=omni_venv.env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "frozen at exit: True"
