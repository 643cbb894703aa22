"""The standard library's top-level module names, for every Python pip-omni supports.

A bubble must never shadow the standard library: :mod:`omnipkg_pip.writers.bubbles` leaves out of a
bubble's routes every top-level name of a dist that is a standard-library module of the
bubble's interpreter (``json/``, ``typing.py``), as Python itself does for a plain install
(the standard library comes first on ``sys.path``). The interpreter may be another one
than the running one, so the names are kept here per version:

- 3.10 and later: ``sys.stdlib_module_names`` of that version (taken from each of 3.10 to
  3.13 and written down below as 3.10's list and the changes of each later version);
- 3.9, which has no ``sys.stdlib_module_names``: 3.10's list plus the five modules 3.10
  removed (``formatter``, ``parser``, ``symbol``, ``_peg_parser``, ``_bootlocale``). Every
  module of a 3.9 installation (``pkgutil.iter_modules`` over its stdlib and
  ``lib-dynload``, and ``sys.builtin_module_names``) is in it, except the test modules
  (``test``, ``_testcapi``, ``xx*``...) that 3.10's list leaves out too.

For the running interpreter (3.10+) ``sys.stdlib_module_names`` itself is used; for a
version newer than this table, the newest list here with the running one's names added.
Standard library only.
"""

from __future__ import annotations

import sys

__all__ = ["stdlib_module_names"]

_PY310 = frozenset("""
__future__ _abc _aix_support _ast _asyncio _bisect _blake2 _bootsubprocess _bz2 _codecs
_codecs_cn _codecs_hk _codecs_iso2022 _codecs_jp _codecs_kr _codecs_tw _collections
_collections_abc _compat_pickle _compression _contextvars _crypt _csv _ctypes _curses
_curses_panel _datetime _dbm _decimal _elementtree _frozen_importlib
_frozen_importlib_external _functools _gdbm _hashlib _heapq _imp _io _json _locale _lsprof
_lzma _markupbase _md5 _msi _multibytecodec _multiprocessing _opcode _operator _osx_support
_overlapped _pickle _posixshmem _posixsubprocess _py_abc _pydecimal _pyio _queue _random
_scproxy _sha1 _sha256 _sha3 _sha512 _signal _sitebuiltins _socket _sqlite3 _sre _ssl _stat
_statistics _string _strptime _struct _symtable _thread _threading_local _tkinter
_tracemalloc _uuid _warnings _weakref _weakrefset _winapi _zoneinfo abc aifc antigravity
argparse array ast asynchat asyncio asyncore atexit audioop base64 bdb binascii binhex
bisect builtins bz2 cProfile calendar cgi cgitb chunk cmath cmd code codecs codeop
collections colorsys compileall concurrent configparser contextlib contextvars copy copyreg
crypt csv ctypes curses dataclasses datetime dbm decimal difflib dis distutils doctest email
encodings ensurepip enum errno faulthandler fcntl filecmp fileinput fnmatch fractions ftplib
functools gc genericpath getopt getpass gettext glob graphlib grp gzip hashlib heapq hmac
html http idlelib imaplib imghdr imp importlib inspect io ipaddress itertools json keyword
lib2to3 linecache locale logging lzma mailbox mailcap marshal math mimetypes mmap
modulefinder msilib msvcrt multiprocessing netrc nis nntplib nt ntpath nturl2path numbers
opcode operator optparse os ossaudiodev pathlib pdb pickle pickletools pipes pkgutil
platform plistlib poplib posix posixpath pprint profile pstats pty pwd py_compile pyclbr
pydoc pydoc_data pyexpat queue quopri random re readline reprlib resource rlcompleter runpy
sched secrets select selectors shelve shlex shutil signal site smtpd smtplib sndhdr socket
socketserver spwd sqlite3 sre_compile sre_constants sre_parse ssl stat statistics string
stringprep struct subprocess sunau symtable sys sysconfig syslog tabnanny tarfile telnetlib
tempfile termios textwrap this threading time timeit tkinter token tokenize trace traceback
tracemalloc tty turtle turtledemo types typing unicodedata unittest urllib uu uuid venv
warnings wave weakref webbrowser winreg winsound wsgiref xdrlib xml xmlrpc zipapp zipfile
zipimport zlib zoneinfo
""".split())

# version: (added, removed) relative to the version before it
_CHANGES = {
    (3, 9): ([], ['_bootlocale', '_peg_parser', 'formatter', 'parser', 'symbol']),  # 3.9 -> 3.10
    (3, 11): (['_tokenize', '_typing', 'tomllib'], ['binhex']),
    (3, 12): (['_pydatetime', '_pylong', '_sha2'], ['_bootsubprocess', '_sha256', '_sha512', 'asynchat', 'asyncore', 'distutils', 'imp', 'smtpd']),
    (3, 13): (['_android_support', '_colorize', '_interpchannels', '_interpqueues', '_interpreters', '_ios_support', '_opcode_metadata', '_pyrepl', '_suggestions', '_sysconfig', '_wmi'], ['_crypt', '_msi', 'aifc', 'audioop', 'cgi', 'cgitb', 'chunk', 'crypt', 'imghdr', 'lib2to3', 'mailcap', 'msilib', 'nis', 'nntplib', 'ossaudiodev', 'pipes', 'sndhdr', 'spwd', 'sunau', 'telnetlib', 'uu', 'xdrlib']),
}


def stdlib_module_names(version_info=None) -> frozenset:
    """Top-level module names of the standard library of Python ``version_info`` (major, minor)."""
    here = tuple(sys.version_info[:2])
    version = tuple(version_info[:2]) if version_info else here
    if version == here and hasattr(sys, "stdlib_module_names"):
        return frozenset(sys.stdlib_module_names)
    names = set(_PY310)
    if version < (3, 10):
        added_in_310, removed_in_310 = _CHANGES[(3, 9)]
        return frozenset(names - set(added_in_310) | set(removed_in_310))
    for v in sorted(k for k in _CHANGES if k > (3, 10)):
        if v > version:
            break
        added, removed = _CHANGES[v]
        names = names - set(removed) | set(added)
    if version > max(_CHANGES) and hasattr(sys, "stdlib_module_names"):
        names |= set(sys.stdlib_module_names)
    return frozenset(names)
