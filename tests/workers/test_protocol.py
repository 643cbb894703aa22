"""Frames and the handshake, over socketpairs (no processes)."""

from __future__ import annotations

import os
import re
import socket
import struct
import threading

import pytest

from omnipkg_hook.workers import protocol as P

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield P.Connection(a), P.Connection(b)
    a.close()
    b.close()


def test_frame_round_trip(pair):
    a, b = pair
    a.send(P.CALL, b"hello")
    assert b.recv() == (P.CALL, b"hello")


def test_empty_body(pair):
    a, b = pair
    a.send(P.PING)
    assert b.recv() == (P.PING, b"")


def test_several_frames_in_one_read(pair):
    a, b = pair
    a.sock.sendall(P.frame(P.CALL, b"one") + P.frame(P.EXECUTE, b"two") + P.frame(P.PING))
    assert b.recv() == (P.CALL, b"one")
    assert b.pending()
    assert b.recv() == (P.EXECUTE, b"two")
    assert b.recv() == (P.PING, b"")
    assert not b.pending()


def test_frame_split_across_reads(pair):
    a, b = pair
    data = P.frame(P.CALL, b"x" * 1000)
    got = []
    t = threading.Thread(target=lambda: got.append(b.recv()))
    t.start()
    for i in range(0, len(data), 7):
        a.sock.sendall(data[i : i + 7])
    t.join(10)
    assert got == [(P.CALL, b"x" * 1000)]


@pytest.mark.parametrize("size", [60_000, 65_531, 65_532, 70_000, 10 * 1024 * 1024 + 17])
def test_sizes_around_the_buffer_and_10mb(pair, size):
    a, b = pair
    body = os.urandom(1024) * (size // 1024) + b"z" * (size % 1024)
    t = threading.Thread(target=a.send, args=(P.RESULT, body))
    t.start()
    kind, got = b.recv()
    t.join(10)
    assert kind == P.RESULT and bytes(got) == body


def test_buffer_compaction_keeps_frames_intact(pair):
    a, b = pair
    bodies = [os.urandom(n) for n in (40_000, 30_000, 20_000, 65_000, 5)]
    t = threading.Thread(target=lambda: [a.send(P.CALL, x) for x in bodies])
    t.start()
    assert [bytes(b.recv()[1]) for _ in bodies] == bodies
    t.join(10)


def test_eof_between_frames_is_eoferror(pair):
    a, b = pair
    a.sock.close()
    with pytest.raises(EOFError):
        b.recv()


@pytest.mark.parametrize("data", [b"\x00\x00", b"\x00\x00\x00\x10E", b"\x00\x00\x00\x10Eabc"])
def test_eof_inside_a_frame_is_protocol_error(pair, data):
    a, b = pair
    a.sock.sendall(data)
    a.sock.close()
    with pytest.raises(P.ProtocolError, match="closed inside a frame"):
        b.recv()


def test_oversized_frame_refused_before_its_body_is_read(pair):
    a, b = pair
    b.max_frame = 1024
    a.sock.sendall(struct.pack(">I", 1025) + b"E")
    with pytest.raises(P.ProtocolError, match="frame of 1025 bytes refused"):
        b.recv()


def test_zero_length_frame_refused(pair):
    a, b = pair
    a.sock.sendall(b"\x00\x00\x00\x00")
    with pytest.raises(P.ProtocolError):
        b.recv()


def test_send_over_limit_refused_locally(pair):
    a, _ = pair
    a.max_frame = 100
    with pytest.raises(P.ProtocolError, match="over the limit"):
        a.send(P.CALL, b"x" * 100)


def test_fd_passing_keeps_order():
    a, b = socket.socketpair()
    ca, cb = P.Connection(a), P.Connection(b, fds=True)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    ca.send_fds(P.ATTACH, b"", [w1])
    ca.send(P.PING)
    ca.send_fds(P.ATTACH, b"", [w2])
    assert cb.recv()[0] == P.ATTACH
    fd1 = cb.take_fd()
    assert cb.recv()[0] == P.PING
    assert cb.recv()[0] == P.ATTACH
    fd2 = cb.take_fd()
    os.write(fd1, b"1")
    os.write(fd2, b"2")
    assert os.read(r1, 1) == b"1" and os.read(r2, 1) == b"2"
    for fd in (r1, w1, r2, w2, fd1, fd2):
        os.close(fd)
    a.close()
    b.close()


# -- handshake ---------------------------------------------------------------------------


def _handshake(server_key: bytes, client_key: bytes):
    a, b = socket.socketpair()
    server, client = P.Connection(a), P.Connection(b)
    errors = {}

    def serve():
        try:
            P.server_handshake(server, server_key)
        except Exception as e:
            errors["server"] = e

    t = threading.Thread(target=serve)
    t.start()
    try:
        P.client_handshake(client, client_key)
    except Exception as e:
        errors["client"] = e
    t.join(10)
    a.close()
    b.close()
    return errors


def test_handshake_succeeds_with_the_same_key():
    assert _handshake(b"k" * 32, b"k" * 32) == {}


def test_handshake_wrong_key_refused_by_the_server():
    errors = _handshake(b"k" * 32, b"x" * 32)
    assert isinstance(errors["server"], P.AuthenticationError)
    assert isinstance(errors["client"], P.AuthenticationError)
    assert "wrong key" in str(errors["client"])


def test_handshake_refuses_big_frames_then_restores_the_limit():
    a, b = socket.socketpair()
    server, client = P.Connection(a), P.Connection(b, max_frame=10**6)

    def serve():
        server.send(P.CHALLENGE, P.MAGIC + b"n" * 32)
        a.sendall(struct.pack(">I", 2000) + b"a")  # 2000 bytes before authentication: refused

    t = threading.Thread(target=serve)
    t.start()
    with pytest.raises(P.ProtocolError, match=f"refused \\(limit {P.PREAUTH_MAX_FRAME}\\)"):
        P.client_handshake(client, b"k" * 32)
    t.join(10)
    a.close()
    b.close()

    a, b = socket.socketpair()
    server, client = P.Connection(a, max_frame=12345), P.Connection(b, max_frame=10**6)
    t = threading.Thread(target=P.server_handshake, args=(server, b"k" * 32))
    t.start()
    P.client_handshake(client, b"k" * 32)
    t.join(10)
    assert (server.max_frame, client.max_frame) == (12345, 10**6)
    a.close()
    b.close()


def test_client_refuses_a_daemon_that_does_not_know_the_key():
    """A fake daemon that accepts any answer but cannot compute its own MAC."""
    a, b = socket.socketpair()
    server, client = P.Connection(a), P.Connection(b)

    def fake():
        server.send(P.CHALLENGE, P.MAGIC + os.urandom(32))
        server.recv()
        server.send(P.WELCOME, os.urandom(32))

    t = threading.Thread(target=fake)
    t.start()
    with pytest.raises(P.AuthenticationError, match="failed to prove"):
        P.client_handshake(client, b"k" * 32)
    t.join(10)
    a.close()
    b.close()


def test_client_names_a_daemon_of_another_protocol_version():
    a, b = socket.socketpair()
    P.Connection(a).send(P.CHALLENGE, b"pip-omni-daemon/9\0" + os.urandom(32))
    with pytest.raises(P.ProtocolError, match="pip-omni-daemon/9"):
        P.client_handshake(P.Connection(b), b"k" * 32)
    a.close()
    b.close()


def test_every_message_type_is_in_the_documented_table():
    doc = P.__doc__
    for name in P.__all__:
        value = getattr(P, name)
        if isinstance(value, bytes) and len(value) == 1:
            assert re.search(rf"\b{value.decode()}\s+{name}\b", doc), f"{name} ({value!r}) is not in the table"
