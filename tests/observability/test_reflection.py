#!/usr/bin/python3
"""gRPC server reflection on shmbrokerd's socket lists its services.

grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo (a bidi stream)
with one hand-encoded request `list_services: ""` (field 7), over unix:PATH
with Debian's python3-grpcio and no generated code. The answer must name
shmbroker.v1.Broker and grpc.health.v1.Health.

Usage: /usr/bin/python3 test_reflection.py  (env: SHMBROKERD, SHMBROKER_CLI)
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from common import Daemon, check, grpc_channel, run_test

METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
LIST_SERVICES = b"\x3a\x00"  # field 7 (list_services), length-delimited, ""


def body():
    d = Daemon(["--metrics_address=127.0.0.1:0"]).start()
    channel = grpc_channel(d.socket)
    call = channel.stream_stream(METHOD, request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
    responses = list(call(iter([LIST_SERVICES]), timeout=10))
    check(len(responses) == 1, f"want one reflection response, got {responses!r}")
    for service in (b"shmbroker.v1.Broker", b"grpc.health.v1.Health"):
        check(service in responses[0],
              f"reflection does not list {service.decode()}: {responses[0]!r}")
    channel.close()
    d.stop()
    return "lists shmbroker.v1.Broker and grpc.health.v1.Health"


if __name__ == "__main__":
    run_test("observability server reflection", body)
