"""Every mapped exception from a real daemon, and bad arguments: clean
Python exceptions with the daemon's message and code, never a crash."""

import os
import unittest

import shmbroker
from harness import DaemonTest


class ErrorsTest(DaemonTest):
    FLAGS = ("--capacity=16MiB",)

    def check(self, error_class, code, pattern, builtin=None):
        context = self.assertRaisesRegex(error_class, pattern)
        return _Checked(self, context, error_class, code, builtin)

    def test_not_found(self):
        with self.check(shmbroker.NotFound, "NOT_FOUND", "missing", LookupError):
            self.client.attach("missing")
        with self.check(shmbroker.NotFound, "NOT_FOUND", "lease", LookupError):
            self.client.revoke(987654)

    def test_already_exists(self):
        buf = self.client.allocate(100, name="twice")
        with self.check(shmbroker.AlreadyExists, "ALREADY_EXISTS", "twice"):
            self.client.allocate(100, name="twice")
        buf.release()

    def test_invalid_argument(self):
        with self.check(shmbroker.InvalidArgument, "INVALID_ARGUMENT", "size",
                        ValueError):
            self.client.allocate(-1)
        with self.check(shmbroker.InvalidArgument, "INVALID_ARGUMENT", "size",
                        ValueError):
            self.client.allocate(0)
        with self.check(shmbroker.InvalidArgument, "INVALID_ARGUMENT", "huge",
                        ValueError):
            self.client.allocate(100, kind="huge")
        with self.check(shmbroker.InvalidArgument, "INVALID_ARGUMENT", "bogus",
                        ValueError):
            self.client.allocate(100, share=["bogus"])
        # The daemon's own refusal: pooled buffers are owner-only.
        with self.check(shmbroker.InvalidArgument, "INVALID_ARGUMENT", "(?i)pooled",
                        ValueError):
            self.client.allocate(100, kind="pooled", share="all")

    def test_resource_exhausted(self):
        with self.check(shmbroker.ResourceExhausted, "RESOURCE_EXHAUSTED",
                        "--capacity"):
            self.client.allocate(64 << 20)

    def test_permission_denied(self):
        other = shmbroker.Client(self.daemon.socket)
        lease = other.grant_lease(30)
        with self.check(shmbroker.PermissionDenied, "PERMISSION_DENIED", "lease",
                        PermissionError):
            self.client.allocate(100, lease=lease)
        other.revoke(lease)
        other.close()

    def test_deadline_exceeded(self):
        with self.check(shmbroker.DeadlineExceeded, "DEADLINE_EXCEEDED", "late",
                        TimeoutError):
            self.client.attach("late", wait=0.2)
        # The uid's quota (half of --capacity) is all taken: a wait for room
        # runs out, naming what it waited on.
        whole_quota = self.client.allocate(8 << 20, kind="dedicated")
        with self.check(shmbroker.DeadlineExceeded, "DEADLINE_EXCEEDED",
                        "waiting for room for 4096 bytes: over the per-uid "
                        "quota", TimeoutError):
            self.client.allocate(4096, kind="dedicated", wait_for_room=0.2)
        with self.assertRaisesRegex(ValueError, "wait_for_room must be"):
            self.client.allocate(4096, wait_for_room=-1)
        whole_quota.release()
        # With room, a wait costs nothing.
        self.client.allocate(4096, wait_for_room=5).release()

    def test_unavailable(self):
        with self.check(shmbroker.Unavailable, "UNAVAILABLE",
                        "no-daemon-here", ConnectionError):
            shmbroker.Client(os.path.join(self.daemon.dir, "no-daemon-here.sock"),
                             timeout=2)

    def test_a_closed_client(self):
        client = shmbroker.Client(self.daemon.socket)
        client.close()
        client.close()  # idempotent
        for call in (lambda: client.allocate(10), lambda: client.status(),
                     lambda: client.attach("x"), lambda: client.ls(),
                     lambda: client.grant_lease(5)):
            with self.check(shmbroker.FailedPrecondition, "FAILED_PRECONDITION",
                            "closed"):
                call()

    def test_wrong_types_raise_type_error(self):
        for call in (lambda: self.client.allocate("big"),
                     lambda: self.client.allocate(1.5),
                     lambda: self.client.allocate(10, name=3),
                     lambda: self.client.allocate(10, lease="mine"),
                     lambda: self.client.attach(2.5),
                     lambda: self.client.attach("x", wait="soon"),
                     lambda: self.client.revoke([1]),
                     lambda: shmbroker.Client(timeout="long")):
            with self.assertRaises(TypeError):
                call()
        with self.assertRaises(ValueError):
            shmbroker.Client(self.daemon.socket, timeout=-1)
        with self.assertRaises(ValueError):
            self.client.grant_lease(float("nan"))
        with self.assertRaises(ValueError):
            self.client.attach(5, sealed=True)


class _Checked:
    """assertRaisesRegex plus: the class's code, message and Python base."""

    def __init__(self, test, context, error_class, code, builtin):
        self.test, self.context = test, context
        self.error_class, self.code, self.builtin = error_class, code, builtin

    def __enter__(self):
        return self.context.__enter__()

    def __exit__(self, *exc):
        result = self.context.__exit__(*exc)
        error = self.context.exception
        self.test.assertIs(type(error), self.error_class)
        self.test.assertIsInstance(error, shmbroker.Error)
        self.test.assertEqual(error.code, self.code)
        self.test.assertTrue(error.message)
        self.test.assertEqual(str(error), f"{self.code}: {error.message}")
        if self.builtin is not None:
            self.test.assertIsInstance(error, self.builtin)
        return result


if __name__ == "__main__":
    unittest.main()
