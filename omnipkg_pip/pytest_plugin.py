"""The ``omnipkg`` pytest plugin: one test session against several versions of a dependency.

    pytest --omnipkg-matrix rich=13.4.2,13.5.3 [--omnipkg-matrix click=7.1.2,8.1.7] [--omnipkg-jobs N]

runs the session once per cell (the product of the axes; a value is an exact version or
``main``), each in a child pytest process under this interpreter with that cell's pins, in
parallel. Every child sends its reports back (as pytest-xdist's workers do: serialised with
``pytest_report_to_serializable``) and this process replays them through
``pytest_runtest_logreport`` with the cell appended to the test id
(``test_x.py::test_a[rich=13.4.2]``), so the terminal, ``-ra``, ``--junitxml`` (one testcase
per test per cell) and the exit status see one result per test per cell. A failure grid
(test × cell) ends the run. Bubbles a cell needs are made on demand, as ``pip-omni run
--matrix`` makes them (``--omnipkg-offline`` refuses).

The ``omnipkg_proxy`` fixture gives a test a warm worker for a pin, for comparing versions
inside one test: ``omnipkg_proxy("rich==13.4.2").call("rich.text:Text", "x")``.

Inert unless used: loading the plugin imports nothing of pip-omni, routes no import and
adds no ``sys.meta_path`` entry; its options and the fixture do their work only when given
or requested.
"""

from __future__ import annotations

import os

import pytest

REPORT_FD = "OMNIPKG_PYTEST_REPORT_FD"
_OURS = ("--omnipkg-matrix", "--omnipkg-jobs", "--omnipkg-offline", "--junitxml", "--junit-xml")
_CACHE_OPTS = ("--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first", "--sw", "--stepwise",
               "--sw-skip", "--stepwise-skip", "--cache-show", "--cache-clear")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("omnipkg", "pip-omni: one session against several versions")
    group.addoption("--omnipkg-matrix", action="append", default=[], metavar="NAME=V1,V2",
                    help="run the session once per version (exact versions, or main); repeatable: "
                    "the cells are the product")
    group.addoption("--omnipkg-jobs", type=int, default=None, metavar="N",
                    help="cells run at once (default: the number of CPUs)")
    group.addoption("--omnipkg-offline", action="store_true",
                    help="never make a bubble; fail and name the command instead")


def pytest_configure(config) -> None:
    fd = os.environ.get(REPORT_FD)
    if fd:  # a child of a matrix session: report back, nothing else
        os.environ.pop(REPORT_FD)
        config.pluginmanager.register(_Child(config, int(fd)), "omnipkg-child")
    elif config.getoption("omnipkg_matrix", None):
        from .run._matrix_session import MatrixSession

        config.pluginmanager.register(MatrixSession(config), "omnipkg-matrix")


class _Child:
    """In a cell's pytest: every report, serialised, one JSON line each on the report pipe."""

    def __init__(self, config, fd: int) -> None:
        self.config = config
        self.out = os.fdopen(fd, "w", encoding="utf-8", buffering=1)

    def _send(self, kind: str, data) -> None:
        import json

        self.out.write(json.dumps([kind, data], default=repr) + "\n")

    def _report(self, report) -> dict:
        return self.config.hook.pytest_report_to_serializable(config=self.config, report=report)

    def pytest_collection_finish(self, session) -> None:
        self._send("collected", len(session.items))

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self._send("collect", self._report(report))

    def pytest_runtest_logreport(self, report) -> None:
        self._send("test", self._report(report))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus) -> None:
        self._send("finish", int(exitstatus))
        self.out.close()


@pytest.fixture(scope="session")
def _omnipkg_pool():
    from omnipkg_hook.workers import WorkerPool

    pool = WorkerPool()
    yield pool
    pool.close()


@pytest.fixture
def omnipkg_proxy(_omnipkg_pool):
    """``omnipkg_proxy("rich==13.4.2", python=None)``: a warm worker with those pins
    (``.call("mod:attr", *args)``, ``.execute(code)``); one per pin set for the session."""

    def get(*pins: str, python: str | None = None):
        return _omnipkg_pool.get(*pins, python=python)

    return get
