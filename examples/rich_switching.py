"""Rich module switching, as a plain script: the scenario of omnipkg's loader docs.

Main has rich 13.7.1; bubbles hold 13.5.3 and 13.4.2. The script checks main in this
process, switches to each bubble with ``using()`` and back, and runs each bubble in a
daemon worker. Needs the package index (it makes the bubbles with ``pip-omni install``).

    python examples/rich_switching.py                 # main must already have rich 13.7.1
    python examples/rich_switching.py --install-main  # pip install rich==13.7.1 here first
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import omnipkg_hook
from omnipkg_hook.workers import DaemonClient, DaemonProxy

MAIN, BUBBLES = "13.7.1", ("13.5.3", "13.4.2")


def check(what: str, ok: bool) -> None:
    print(f"{'ok ' if ok else 'BAD'}  {what}")
    if not ok:
        raise SystemExit(1)


def rich_now() -> tuple[str, str]:
    import rich

    return importlib.metadata.version("rich"), rich.__file__


def main() -> int:
    try:
        have = importlib.metadata.version("rich")
    except importlib.metadata.PackageNotFoundError:
        have = None
    if have != MAIN:
        if "--install-main" not in sys.argv:
            print(f"main has rich {have}; run with --install-main to pip install rich=={MAIN} here first")
            return 2
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"rich=={MAIN}"], check=True)
    for version in BUBBLES:
        subprocess.run([sys.executable, "-m", "omnipkg_pip", "install", "-q", f"rich=={version}"], check=True)

    version, path = rich_now()
    check(f"main: rich {version} from {path}", version == MAIN)
    for wanted in BUBBLES:
        with omnipkg_hook.using(f"rich=={wanted}"):
            version, path = rich_now()
            check(f"using('rich=={wanted}'): rich {version} from {path}", version == wanted and "/dists/" in path)
        version, _ = rich_now()
        check(f"after the block: main's rich {version} again", version == MAIN)

    was_running = subprocess.run([sys.executable, "-m", "omnipkg_pip", "daemon", "status"],
                                 capture_output=True).returncode == 0
    client = DaemonClient()
    try:
        for wanted in BUBBLES:
            r = DaemonProxy(client, f"rich=={wanted}").execute(
                "import rich, importlib.metadata as m; print(rich.__file__); m.version('rich')"
            )
            check(f"daemon worker rich=={wanted}: rich {r.value} from {r.stdout.strip()}", r.value == wanted)
    finally:
        if not was_running:  # the daemon this script started goes with it
            client.stop(timeout=10)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
