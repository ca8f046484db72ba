"""A daemon restart under a Python process (issue 14): its Buffers, and the
numpy and torch views of them, keep their pages and their holds; the
library reconnects, presents them and resumes by itself."""

import signal
import unittest

import numpy
import torch

import shmbroker
from harness import Daemon, wait_for


class RestartTest(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon("--restart_grace=60s")

    def tearDown(self):
        self.daemon.stop()

    def check_survives(self, sig):
        client = shmbroker.Client(self.daemon.socket)
        pooled = client.allocate(4096, kind="pooled", name="pooled")
        dedicated = client.allocate(1 << 20, kind="dedicated", name="dedicated")
        a = numpy.frombuffer(pooled, dtype=numpy.uint8)
        t = torch.frombuffer(dedicated, dtype=torch.int32)
        a[:] = numpy.arange(4096) % 251
        t[:] = torch.arange(t.numel(), dtype=torch.int32)

        self.daemon.restart(sig)
        # The new daemon has them live again (Describe sees only those) once
        # this process presented them: nothing here asks it to.
        wait_for(lambda: client.describe("pooled") and client.describe("dedicated"),
                 what="both buffers re-adopted")
        self.assertEqual(client.status().holds, 2)
        self.assertTrue((a == numpy.arange(4096) % 251).all())
        self.assertTrue(torch.equal(t, torch.arange(t.numel(), dtype=torch.int32)))
        # Another process sees the same pages by name.
        other = shmbroker.Client(self.daemon.socket)
        seen = numpy.frombuffer(other.attach("dedicated"), dtype=numpy.int32)
        self.assertEqual(int(seen[12345]), 12345)
        del seen
        other.close()
        # And the old Buffers still work: released (once they and their views
        # are gone, as they were exported), the daemon frees them.
        del a, t
        pooled.release()
        dedicated.release()
        del pooled, dedicated
        fresh = client.allocate(4096)
        fresh.release()
        wait_for(lambda: client.status().buffers == 0,
                 what=f"everything released ({client.ls()})")
        client.close()

    def test_sigkill(self):
        self.check_survives(signal.SIGKILL)

    def test_sigterm(self):
        self.check_survives(signal.SIGTERM)


if __name__ == "__main__":
    unittest.main()
