"""pip-omni's import side: choose, per process, which stored version of a distribution imports.

    import omnipkg_hook
    omnipkg_hook.pin("rich==13.4.2")          # import rich -> 13.4.2 from the store
    with omnipkg_hook.using("rich==13.5.3"):  # switch inside one block, restored on exit
        ...

Standard library only. Loaded at interpreter start-up by ``omnipkg_hook.pth`` when
``OMNIPKG_PINS`` is set, so importing this package stays cheap: the pin machinery
(:mod:`omnipkg_hook.pins`) is imported on first use of ``pin``, ``using``...

PYTEST_DONT_REWRITE: pytest would otherwise warn, in every `pip-omni run -m pytest`, that
this package (shipped in the dist of its ``omnipkg`` plugin) was imported before it could
rewrite its asserts.
"""

# No ``from __future__ import annotations`` here: it is a real import, and this package is
# imported by every pinned start-up.

__version__ = "0.1.0"

__all__ = [
    "pin",
    "unpin",
    "pins",
    "using",
    "explain",
    "omnipkgLoader",
    "OmnipkgError",
    "InvalidPinError",
    "BubbleNotFoundError",
    "PinConflictError",
    "AlreadyImportedError",
    "StoreError",
    "StoreCorruptError",
]

_fix_umask = False  # set by the pip side (omnipkg_pip/__init__.py): see store.WriteLock

_LAZY = frozenset(("pin", "unpin", "pins", "using", "explain", "omnipkgLoader"))
_ERRORS = frozenset(__all__[6:])


def __getattr__(name: str):
    # Nothing is imported until asked for: the start-up line imports this package, and a
    # pinned start-up must stay within its budget. ``pins`` is both the submodule and the
    # function: the module is callable (``omnipkg_hook.pins()`` lists the pins,
    # ``omnipkg_hook.pins.pin`` still works), so it does not matter which one the import
    # system binds here first.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(".pins", __name__)
        value = module if name == "pins" else getattr(module, name)
    elif name in _ERRORS:
        from . import errors

        value = getattr(errors, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | _LAZY | _ERRORS)
