"""gRPC over the daemon's Unix socket, by hand-encoded protobuf (no
generated code; Debian's python3-grpcio only, imported lazily), and raw
fd-channel sessions.
"""

import socket
import struct
import sys

from checks import check, fail


HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING, NOT_SERVING = 1, 2


def encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_fields(data):
    """Decodes one protobuf message into {field: [values]} (varint/len only)."""
    fields, i = {}, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(data, i)
        elif wire == 2:
            ln, i = _read_varint(data, i)
            v, i = data[i:i + ln], i + ln
        elif wire == 1:
            v, i = data[i:i + 8], i + 8
        elif wire == 5:
            v, i = data[i:i + 4], i + 4
        else:
            fail(f"unsupported protobuf wire type {wire} in {data!r}")
        fields.setdefault(field, []).append(v)
    return fields


def _read_varint(data, i):
    shift = result = 0
    while True:
        if i >= len(data):
            fail(f"truncated varint in {data!r}")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def import_grpc():
    try:
        import grpc  # Debian: python3-grpcio
    except ImportError as e:
        fail(f"cannot import grpc ({e}): install Debian's python3-grpcio and run with "
             f"/usr/bin/python3 (this is {sys.executable})")
    return grpc


def grpc_channel(socket_path):
    grpc = import_grpc()
    return grpc.insecure_channel(f"unix:{socket_path}", options=[("grpc.enable_http_proxy", 0)])


def grpc_unary(channel, method, request=b"", metadata=None, timeout=10):
    """Calls method with raw request bytes.

    Returns (status code, response bytes or None, details)."""
    grpc = import_grpc()
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        resp = call(request, timeout=timeout, metadata=metadata)
        return grpc.StatusCode.OK, resp, ""
    except grpc.RpcError as e:
        return e.code(), None, e.details()


def health_status(channel, service=""):
    """grpc.health.v1.Health/Check; returns the status enum (1 SERVING, 2 NOT_SERVING)."""
    grpc = import_grpc()
    raw = service.encode()
    request = b"\x0a" + encode_varint(len(raw)) + raw if raw else b""  # field 1, string
    code, resp, details = grpc_unary(channel, HEALTH_CHECK, request)
    check(code == grpc.StatusCode.OK, f"Health/Check(service={service!r}) failed: {code} {details}")
    fields = decode_fields(resp)
    # proto3: a status of 0 (UNKNOWN) is simply absent.
    return fields.get(1, [0])[-1]


class FdSession:
    """A client connection of our own: the fd channel (PATH.fds) and its token.

    Frame (168 bytes, host order): u32 magic, u16 version, u16 type, u64 id,
    u64 handle, 16-byte token, 128-byte text (common/fd_channel_protocol.h).
    """

    FRAME = struct.Struct("=IHHQQ16s128s")
    HELLO = 1

    def __init__(self, socket_path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        self.sock.connect(socket_path + ".fds")
        data = self.sock.recv(4096)
        check(len(data) == self.FRAME.size,
              f"fd channel hello: expected a {self.FRAME.size}-byte frame, got {len(data)} bytes")
        magic, version, ftype, sid, _handle, token, _text = self.FRAME.unpack(data)
        check(ftype == self.HELLO, f"fd channel: first frame has type {ftype}, expected kHello (1)")
        self.session_id = sid
        self.token_hex = token.hex()

    def metadata(self):
        return (("shmbroker-connection", self.token_hex),)

    def close(self):
        self.sock.close()


def encode_release_request(handle):
    return b"\x08" + encode_varint(handle)  # ReleaseRequest.handle = 1
