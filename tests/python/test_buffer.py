"""A Buffer's memory seen through memoryview, numpy and torch with no copy,
across real processes; and its lifetime: views outliving release() and the
Client never touch unmapped memory."""

import gc
import unittest

import numpy
import torch

import shmbroker
from harness import DaemonTest, python, wait_for

WRITER = """
import sys, numpy, shmbroker
client = shmbroker.Client(sys.argv[1])
buf = client.attach(sys.argv[2], writable=True)
a = numpy.frombuffer(buf, dtype=numpy.uint32)
assert a[0] == 41, a[0]
a[0] = 42
print(buf.handle)
"""


class ZeroCopyTest(DaemonTest):
    def test_views_have_the_mappings_address(self):
        for kind in ("dedicated", "pooled"):
            with self.subTest(kind=kind):
                buf = self.client.allocate(8192, kind=kind)
                self.assertEqual(buf.kind, kind)
                self.assertNotEqual(buf.address, 0)
                view = memoryview(buf)
                self.assertEqual(view.nbytes, 8192)
                self.assertFalse(view.readonly)
                array = numpy.frombuffer(buf, dtype=numpy.uint8)
                self.assertEqual(array.__array_interface__["data"][0], buf.address)
                tensor = torch.frombuffer(buf, dtype=torch.uint8)
                self.assertEqual(tensor.data_ptr(), buf.address)
                array[10] = 99
                self.assertEqual(view[10], 99)
                self.assertEqual(int(tensor[10]), 99)
                # memoryview and torch hold exports; numpy holds the Buffer.
                self.assertEqual(buf.exports, 2)
                self.assertIs(array.base, buf)
                self.assertIs(view.obj.buffer, buf)
                del view, array, tensor
                self.assertEqual(buf.exports, 0)
                self.assertTrue(buf.exported)
                self.assertFalse(buf.release())  # deferred to the object's end
                del buf
                self.wait_buffers(0)

    def test_a_write_in_another_process_is_seen_here(self):
        for kind in ("dedicated", "pooled"):
            with self.subTest(kind=kind):
                name = f"zero-copy-{kind}"
                buf = self.client.allocate(4096, name=name, kind=kind)
                mine = numpy.frombuffer(buf, dtype=numpy.uint32)
                mine[0] = 41
                out = python(WRITER, self.daemon.socket, name).stdout
                self.assertEqual(int(out), buf.handle)
                self.assertEqual(mine[0], 42)  # the same pages, no copy back
                del mine
                buf.release()

    def test_read_only_attach_gives_read_only_views(self):
        with self.client.allocate(4096, name="ro") as buf:
            ro = self.client.attach("ro")
            self.assertFalse(ro.writable)
            self.assertTrue(memoryview(ro).readonly)
            self.assertFalse(numpy.frombuffer(ro, dtype=numpy.uint8).flags.writeable)
            with self.assertRaises(TypeError):
                memoryview(ro)[0] = 1
            with self.assertRaisesRegex(TypeError, "not writable"):
                import ctypes
                ctypes.c_char.from_buffer(ro)  # asks for a writable buffer
            ro.release()


class LifetimeTest(DaemonTest):
    def test_release_with_views_alive_is_deferred(self):
        buf = self.client.allocate(1 << 16, name="deferred", kind="dedicated")
        array = numpy.frombuffer(buf, dtype=numpy.uint8)
        tensor = torch.frombuffer(buf, dtype=torch.uint8)
        array[:] = 5
        self.assertFalse(buf.release())  # deferred: views alive
        self.assertTrue(buf.released)
        with self.assertRaisesRegex(ValueError, "released"):
            memoryview(buf)
        with self.assertRaisesRegex(ValueError, "released"):
            buf.seal()
        # Still mapped and still held: the views read and write real pages.
        self.assertEqual(int(array.sum()), 5 << 16)
        tensor[0] = 7
        self.assertEqual(array[0], 7)
        self.assertEqual(self.client.status().buffers, 1)
        self.assertFalse(buf.release())  # idempotent
        address = buf.address
        del buf  # the numpy array still holds the Buffer object
        self.assertEqual(array.base.address, address)
        self.assertEqual(self.client.status().buffers, 1)
        del array
        self.assertEqual(self.client.status().buffers, 1)
        del tensor  # the last view: now unmapped and released
        self.wait_buffers(0)

    def test_release_before_any_view_is_immediate(self):
        buf = self.client.allocate(4096, name="now")
        self.assertTrue(buf.release())
        self.assertEqual((buf.address, buf.exports), (0, 0))
        self.assertEqual(self.client.status().buffers, 0)
        with self.assertRaisesRegex(ValueError, "released"):
            memoryview(buf)

    def test_views_outlive_the_client_and_the_buffer_object(self):
        client = shmbroker.Client(self.daemon.socket)
        buf = client.allocate(4096, kind="dedicated")
        array = numpy.frombuffer(buf, dtype=numpy.uint8)
        tensor = torch.frombuffer(buf, dtype=torch.uint8)
        del buf
        client.close()
        self.assertTrue(client.closed)
        gc.collect()
        array[:] = 3                      # would crash if unmapped
        self.assertEqual(int(tensor.sum()), 3 * 4096)
        self.assertEqual(self.client.status().buffers, 1)
        del array, tensor
        self.wait_buffers(0)

    def test_context_manager_releases(self):
        with self.client.allocate(4096) as buf:
            self.assertEqual(self.client.status().buffers, 1)
        self.assertTrue(buf.released)
        self.assertEqual(buf.address, 0)
        self.wait_buffers(0)
        with shmbroker.Client(self.daemon.socket) as client:
            pass
        self.assertTrue(client.closed)

    def test_seal_refused_once_a_writable_dedicated_buffer_exported(self):
        exported = self.client.allocate(4096, kind="dedicated")
        array = numpy.frombuffer(exported, dtype=numpy.uint8)
        array[:] = 1
        del array
        with self.assertRaisesRegex(BufferError, "exported"):
            exported.seal()
        self.assertFalse(exported.sealed)
        self.assertEqual(exported.address and 1, 1)  # still mapped as it was
        exported.release()
        del exported

        buf = self.client.allocate(4096, name="sealme", kind="dedicated")
        buf.write(numpy.ones(4096, dtype=numpy.uint8))  # no export
        with self.assertRaisesRegex(ValueError, "4097 bytes"):
            buf.write(b"x" * 4097)
        buf.seal()
        self.assertTrue(buf.sealed)
        self.assertFalse(buf.writable)
        self.assertTrue(memoryview(buf).readonly)
        self.assertEqual(bytes(memoryview(buf)[:2]), b"\x01\x01")
        reader = self.client.attach("sealme", sealed=True, wait=5)
        self.assertTrue(reader.sealed)
        reader.release()
        buf.release()

    def test_pooled_seal_keeps_views(self):
        buf = self.client.allocate(256, kind="pooled")
        array = numpy.frombuffer(buf, dtype=numpy.uint8)
        address = buf.address
        buf.seal()
        self.assertEqual(buf.address, address)
        self.assertEqual(array.__array_interface__["data"][0], address)
        del array
        buf.release()
        del buf

    def test_info_and_listing(self):
        buf = self.client.allocate(1000, name="listed", kind="dedicated")
        self.assertEqual((buf.name, buf.size, buf.kind, buf.sealed),
                         ("listed", 1000, "dedicated", False))
        self.assertIn("listed", [b.name for b in self.client.ls()])
        info = self.client.describe("listed")
        self.assertEqual((info.handle, info.holders), (buf.handle, 1))
        self.assertIn("handle=", repr(buf))
        buf.release()


class GilTest(DaemonTest):
    def test_a_blocked_attach_lets_other_threads_run(self):
        # The waiter blocks in the daemon until "later" exists; the producer
        # can only create it if the waiter released the GIL.
        import threading
        got = []
        waiter = threading.Thread(
            target=lambda: got.append(self.client.attach("later", wait=30)))
        waiter.start()
        wait_for(lambda: self.client.status().waiters == 1,
                 what="the attach to wait in the daemon")
        producer = shmbroker.Client(self.daemon.socket)
        buf = producer.allocate(4096, name="later")
        waiter.join(30)
        self.assertFalse(waiter.is_alive())
        self.assertEqual(got[0].handle, buf.handle)
        got[0].release()
        buf.release()
        producer.close()


if __name__ == "__main__":
    unittest.main()
