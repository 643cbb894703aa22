"""Frames, message types and the daemon handshake.

Every connection of this package -- owner <-> worker socketpair, client <-> daemon
AF_UNIX socket, client <-> worker socketpair handed over by the daemon -- carries the
same frames::

    +--------------------------+----------+------------------------------+
    | length: 4 bytes, big-end | type: 1  | body: length - 1 bytes       |
    +--------------------------+----------+------------------------------+

``length`` counts the type byte and the body. A receiver refuses a frame longer than
its limit before reading the body: :data:`PREAUTH_MAX_FRAME` (1 KiB) until the daemon
handshake has succeeded, ``max_frame`` (default :data:`MAX_FRAME`, 256 MiB) after.
Bodies before authentication are raw bytes; after it, a pickle (protocol 5, so 3.8+
peers agree). A socketpair made by the owner needs no handshake: nobody else can
reach it. File descriptors travel with a frame as ``SCM_RIGHTS`` ancillary data.

The daemon handshake (``HMAC-SHA256`` with the per-user key ``k``; the daemon reads
no pickle, and nothing longer than 1 KiB, before step 4)::

    #  from    frame                body
    1  daemon  CHALLENGE  b"h"      MAGIC + nonce_d (32 random bytes)
    2  client  ANSWER     b"a"      HMAC(k, b"client" + nonce_d) + nonce_c (32 random bytes)
    3  daemon  FAILURE    b"f"      reason (utf-8), then the daemon closes   -- wrong MAC
    3  daemon  WELCOME    b"w"      HMAC(k, b"daemon" + nonce_c + nonce_d)   -- right MAC
    4  client  (checks the daemon's MAC with hmac.compare_digest; closes if wrong)

Before step 1 the daemon checks the peer's uid (``SO_PEERCRED``; ``LOCAL_PEERCRED``
on macOS) and closes silently on a mismatch. A wrong type, a wrong size, a frame over
1 KiB, EOF, or silence longer than the handshake timeout (5 s) at any step ends the
connection; nothing else is harmed.

Messages after authentication. The body is the pickle of what is shown; "-" is an
empty body::

    #   type  name      from -> to              body                          answer
    10  E     EXECUTE   client -> worker        (code,)                       R | X | B
    11  C     CALL      client -> worker        (target, args, kwargs)        R | X | B
    12  P     PING      client -> worker        ()                            R (pid, "", "")
                        client -> daemon        ()                            R {pid, store}
    13  R     RESULT    a reply                 from a worker: (value, stdout, stderr)
    14  X     ERROR     a reply                 from a worker: (type, message, traceback,
                                                stdout, stderr); from the daemon: (error
                                                class, message, hint, remote fields)
    15  B     BYE       worker -> client        (reason,): the worker is leaving; the
                                                request it answers was NOT run
    20  Y     READY     worker/zygote -> owner  info dict: the first frame after start
    21  x     BOOTFAIL  worker/zygote -> owner  raw utf-8 traceback: start-up failed
    22  A     ATTACH    owner -> worker         - and 1 fd: serve this client connection
    23  T     STAT      owner -> worker         -                             R stats dict
    24  Q     QUIT      owner -> worker/zygote  (reason,): BYE to every client, then exit
    25  K     FORK      daemon -> zygote        - and 1 fd: the child's control socket
                                                                              R (pid,) | X
                        owner -> cell zygote    cell spec and its fds (see runner)  R (pid,) | X
    26  D     EXITED    cell zygote -> owner    (pid, status): a forked cell ended; status < 0
                                                is the signal that killed it
    27  c     COMPILE   owner -> cell zygote    {"wheels": [path, ...], "cells": n} and each
                                                wheel's file as a descriptor: compile their
                                                .py files ahead for the cells (no answer;
                                                see zygote)
    30  O     OPEN      client -> daemon        (pins, python, options)       F | X
    31  F     FD        daemon -> client        worker info dict and 1 fd: the client's
                                                end of a socketpair whose other end the
                                                worker got as ATTACH
    32  k     KILL      client -> daemon        (worker id, reason)           R True|False
    33  S     STATUS    client -> daemon        ()                            R status dict
    34  s     STOP      client -> daemon        ()                            R {pid}, then
                                                                              the daemon exits

Exceptions are never pickled: a worker's ERROR names the exception class (qualified),
so a client never needs the worker's classes to read an error. A worker whose pins
cannot be satisfied sends ERROR (or BOOTFAIL, if it could not even load the package)
instead of READY; its owner turns that into the error of the client that asked.
"""

from __future__ import annotations

import array
import os
import pickle
import socket
import struct

__all__ = [
    "MAGIC",
    "MAX_FRAME",
    "PREAUTH_MAX_FRAME",
    "HANDSHAKE_TIMEOUT",
    "ProtocolError",
    "AuthenticationError",
    "Connection",
    "dumps",
    "loads",
    "server_handshake",
    "client_handshake",
    "EXECUTE", "CALL", "PING", "RESULT", "ERROR", "BYE",
    "READY", "BOOTFAIL", "ATTACH", "STAT", "QUIT", "FORK", "EXITED", "COMPILE",
    "OPEN", "FD", "KILL", "STATUS", "STOP",
]

MAGIC = b"pip-omni-daemon/1\0"
MAX_FRAME = 256 * 1024 * 1024
PREAUTH_MAX_FRAME = 1024
HANDSHAKE_TIMEOUT = 5.0
PICKLE_PROTOCOL = 5
NONCE_SIZE = 32
MAC_SIZE = 32

# Message types (one byte each; see the table above).
EXECUTE, CALL, PING, RESULT, ERROR, BYE = b"E", b"C", b"P", b"R", b"X", b"B"
READY, BOOTFAIL, ATTACH, STAT, QUIT, FORK = b"Y", b"x", b"A", b"T", b"Q", b"K"
EXITED, COMPILE = b"D", b"c"
OPEN, FD, KILL, STATUS, STOP = b"O", b"F", b"k", b"S", b"s"
CHALLENGE, ANSWER, WELCOME, FAILURE = b"h", b"a", b"w", b"f"

_HEADER = struct.Struct(">I")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from
_BUFSIZE = 64 * 1024
_MAX_FDS = 8  # a cell: stdout, stderr, notice, done, and the pytest plugin's report pipe


class ProtocolError(ConnectionError):
    """The peer broke the protocol: an oversized, truncated or unexpected frame."""


class AuthenticationError(ProtocolError):
    """The handshake failed: the peer does not know the key (or we do not)."""


def dumps(obj) -> bytes:
    return pickle.dumps(obj, PICKLE_PROTOCOL)


loads = pickle.loads


def frame(kind: bytes, body: bytes = b"") -> bytes:
    """One whole frame, ready for ``sendall``."""
    return _pack_header(len(body) + 1) + kind + body


class Connection:
    """Frames over one connected stream socket, with a reusable read buffer.

    ``recv()`` returns ``(type, body)``; it usually costs one ``recv_into`` for a small
    frame. With ``fds=True`` reads use ``recvmsg`` and collect passed descriptors in
    :attr:`fds` (the caller takes them). EOF before a frame starts raises ``EOFError``;
    EOF inside a frame, or a frame over the limit, raises :class:`ProtocolError`.
    """

    __slots__ = ("sock", "max_frame", "fds", "_want_fds", "_buf", "_view", "_start", "_end")

    def __init__(self, sock: socket.socket, max_frame: int = MAX_FRAME, *, fds: bool = False) -> None:
        self.sock = sock
        self.max_frame = max_frame
        self.fds: list[int] = []
        self._want_fds = fds
        self._buf = bytearray(_BUFSIZE)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        for fd in self.fds:
            _close_fd(fd)
        self.fds = []
        try:
            self.sock.close()
        except OSError:
            pass

    # -- sending -------------------------------------------------------------------------

    def send(self, kind: bytes, body: bytes = b"") -> None:
        n = len(body) + 1
        if n > self.max_frame:
            raise ProtocolError(f"frame of {n} bytes is over the limit of {self.max_frame}")
        if n < 65536:
            self.sock.sendall(_pack_header(n) + kind + body)
        else:  # no 10 MB concatenation
            self.sock.sendall(_pack_header(n) + kind)
            self.sock.sendall(body)

    def send_fds(self, kind: bytes, body: bytes, fds: list[int]) -> None:
        """One frame carrying ``fds`` (sent with its first byte, in one ``sendmsg``)."""
        data = _pack_header(len(body) + 1) + kind + body
        sent = self.sock.sendmsg(
            [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        )
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def send_obj(self, kind: bytes, obj) -> None:
        self.send(kind, dumps(obj))

    # -- receiving -----------------------------------------------------------------------

    def _fill(self, start: int) -> int:
        """Read more bytes into the buffer at ``start``; return how many (0 at EOF)."""
        if not self._want_fds:
            return self.sock.recv_into(self._view[start:])
        n, anc, flags, _ = self.sock.recvmsg_into(
            [self._view[start:]], socket.CMSG_SPACE(_MAX_FDS * 4)
        )
        self._take_fds(anc, flags)
        return n

    def _take_fds(self, anc, flags) -> None:
        for level, ctype, data in anc:
            if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(data[: len(data) - (len(data) % a.itemsize)])
                self.fds.extend(a)
        if flags & getattr(socket, "MSG_CTRUNC", 0):
            raise ProtocolError("too many file descriptors in one frame")

    def _need(self, start: int, end: int, want: int) -> tuple[int, int]:
        """Read until ``want`` bytes from ``start`` are buffered (``want`` <= buffer size)."""
        if start + want > _BUFSIZE:
            self._buf[: end - start] = self._buf[start:end]
            start, end = 0, end - start
        while end - start < want:
            n = self._fill(end)
            if not n:
                self._start = self._end = 0
                if end == start:
                    raise EOFError("connection closed")
                raise ProtocolError(f"connection closed inside a frame ({end - start} bytes read)")
            end += n
        return start, end

    def recv(self) -> tuple[bytes, bytes]:
        """The next frame as ``(type, body)``."""
        start, end = self._start, self._end
        if end - start < 4:
            start, end = self._need(start, end, 4)
        (size,) = _unpack_header(self._buf, start)
        if size == 0 or size > self.max_frame:
            self._start = self._end = 0
            raise ProtocolError(f"frame of {size} bytes refused (limit {self.max_frame})")
        stop = start + 4 + size
        if stop > end:
            start, end = self._need(start, end, min(size + 4, _BUFSIZE))
            stop = start + 4 + size
        kind = bytes(self._view[start + 4 : start + 5])
        if stop <= end:  # the whole frame is buffered: the common case
            body = bytes(self._view[start + 5 : stop])
            if stop == end:
                self._start = self._end = 0
            else:
                self._start, self._end = stop, end
            return kind, body
        # a large frame: read straight into its own buffer
        body = bytearray(size - 1)
        have = end - start - 5
        body[:have] = self._view[start + 5 : end]
        self._start = self._end = 0
        self._read_exact(memoryview(body)[have:])
        return kind, body

    def _read_exact(self, view: memoryview) -> None:
        sock = self.sock
        while len(view):
            if self._want_fds:
                n, anc, flags, _ = sock.recvmsg_into([view], socket.CMSG_SPACE(_MAX_FDS * 4))
                self._take_fds(anc, flags)
            else:
                n = sock.recv_into(view)
            if not n:
                raise ProtocolError("connection closed inside a large frame")
            view = view[n:]

    def pending(self) -> bool:
        """Whether a whole or partial frame is already buffered."""
        return self._end > self._start

    def take_fd(self) -> int:
        """The descriptor that came with the frame just read (fds are kept in arrival order)."""
        if not self.fds:
            raise ProtocolError("expected a file descriptor with the frame, got none")
        return self.fds.pop(0)


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# -- the daemon handshake ----------------------------------------------------------------


def _mac(key: bytes, *parts: bytes) -> bytes:
    import hmac  # here: only daemon connections need it (a matrix client does not)

    return hmac.new(key, b"".join(parts), "sha256").digest()


def server_handshake(conn: Connection, key: bytes) -> None:
    """Daemon side, steps 1-3. Raises :class:`AuthenticationError` or ``ProtocolError``."""
    limit, conn.max_frame = conn.max_frame, PREAUTH_MAX_FRAME
    nonce_d = os.urandom(NONCE_SIZE)
    conn.send(CHALLENGE, MAGIC + nonce_d)
    kind, body = conn.recv()
    if kind != ANSWER or len(body) != MAC_SIZE + NONCE_SIZE:
        raise ProtocolError(f"expected ANSWER of {MAC_SIZE + NONCE_SIZE} bytes, got {kind!r}")
    mac, nonce_c = body[:MAC_SIZE], body[MAC_SIZE:]
    from hmac import compare_digest

    if not compare_digest(mac, _mac(key, b"client", nonce_d)):
        try:
            conn.send(FAILURE, b"authentication failed: wrong key")
        except OSError:
            pass
        raise AuthenticationError("client failed the challenge")
    conn.send(WELCOME, _mac(key, b"daemon", nonce_c, nonce_d))
    conn.max_frame = limit


def client_handshake(conn: Connection, key: bytes) -> None:
    """Client side: answer the daemon's challenge, then check the daemon's own answer."""
    limit, conn.max_frame = conn.max_frame, PREAUTH_MAX_FRAME
    kind, body = conn.recv()
    if kind != CHALLENGE or not body.startswith(MAGIC) or len(body) != len(MAGIC) + NONCE_SIZE:
        if kind == CHALLENGE and body[:15] == MAGIC[:15]:
            theirs = bytes(body).split(b"\0", 1)[0].decode("ascii", "replace")
            raise ProtocolError(f"the daemon speaks {theirs!r}, this client {MAGIC[:-1].decode()!r}")
        raise ProtocolError(f"expected CHALLENGE, got {kind!r}")
    nonce_d = body[len(MAGIC) :]
    nonce_c = os.urandom(NONCE_SIZE)
    conn.send(ANSWER, _mac(key, b"client", nonce_d) + nonce_c)
    kind, body = conn.recv()
    if kind == FAILURE:
        raise AuthenticationError(bytes(body).decode("utf-8", "replace"))
    from hmac import compare_digest

    if kind != WELCOME or not compare_digest(bytes(body), _mac(key, b"daemon", nonce_c, nonce_d)):
        raise AuthenticationError("the daemon failed to prove that it knows the key")
    conn.max_frame = limit
