"""Everything that writes the store: a wheel into a dist (:mod:`.ingest`), bytecode
(:mod:`.bytecode`), bubbles (:mod:`.bubbles`), archives in and out (:mod:`.archive`),
garbage collection (:mod:`.collect`), and the dist directory's format they all check
(:mod:`.layout`). Every write here is staged under ``<store>/tmp`` and renamed into place
under the store's writer lock; reading the store is :mod:`omnipkg_hook.store`."""

# Told of each wheel file a command has in hand while it makes bubbles (downloaded with its
# sha256 checked, or a local file the plan chose): ``pip-omni run --matrix`` hands those of
# its axes to its cell zygotes, which compile their sources ahead (``run/matrix.py``).
WHEEL_WATCHERS: list = []


def wheel_ready(path: str) -> None:
    """Tell :data:`WHEEL_WATCHERS` of ``path``; what a watcher raises is its own business."""
    for watcher in list(WHEEL_WATCHERS):
        try:
            watcher(path)
        except Exception:
            pass
