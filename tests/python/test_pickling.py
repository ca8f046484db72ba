"""Pickling by reference between real processes: Buffers, numpy arrays and
torch tensors over broker memory cross multiprocessing and
torch.multiprocessing queues as references to the same pages; a reference
outlives its sender; an unpickled-never reference gives its memory back."""

import concurrent.futures
import gc
import multiprocessing
import pickle
import subprocess
import sys
import unittest

import numpy
import torch
import torch.multiprocessing

import shmbroker
import shmbroker.torch
import workers
from harness import DaemonTest, wait_for


class QueueTest(DaemonTest):
    def roundtrip(self, context, obj, handle):
        """Sends obj to a spawned process, which writes through it; returns
        its answer after checking it saw the same buffer."""
        inbox, outbox = context.Queue(), context.Queue()
        child = context.Process(target=workers.answer, args=(inbox, outbox))
        child.start()
        try:
            inbox.put(obj)
            kind, _address, seen_handle, total = outbox.get(timeout=60)
            self.assertEqual(seen_handle, handle, f"{kind} was copied, not shared")
            inbox.put("done")
            child.join(60)
            self.assertEqual(child.exitcode, 0)
            return kind, total
        finally:
            if child.is_alive():
                child.kill()

    def test_buffer_through_a_multiprocessing_queue(self):
        buf = self.client.allocate(4096, kind="dedicated")
        mine = numpy.frombuffer(buf, dtype=numpy.uint8)
        mine[:8] = 1
        kind, total = self.roundtrip(multiprocessing.get_context("spawn"), buf,
                                     buf.handle)
        self.assertEqual((kind, total), ("shmbroker._native.Buffer", 8))
        self.assertEqual(mine[0], 2)  # written by the child, in these pages
        del mine
        buf.release()

    def test_ndarray_view_through_a_multiprocessing_queue(self):
        for kind in ("dedicated", "pooled"):
            with self.subTest(kind=kind):
                buf = self.client.allocate(64 * 8, kind=kind)
                array = numpy.frombuffer(buf, dtype=numpy.int64).reshape(8, 8)
                array[:] = numpy.arange(64).reshape(8, 8)
                view = array[2:, ::2]  # offset and strides survive
                got, total = self.roundtrip(multiprocessing.get_context("spawn"),
                                            view, buf.handle)
                self.assertEqual(got, "numpy.ndarray")
                self.assertEqual(total, int(view.reshape(-1)[:8].sum()) - 1)
                self.assertEqual(array[2, 0], 17)  # 16 + the child's 1
                del array, view
                buf.release()

    def test_tensor_through_a_torch_multiprocessing_queue(self):
        buf = self.client.allocate(16 * 4, kind="dedicated")
        tensor = shmbroker.torch.tensor(buf, torch.float32, (4, 4))
        tensor[:] = 2.0
        got, total = self.roundtrip(torch.multiprocessing.get_context("spawn"),
                                    tensor[1:], buf.handle)
        self.assertEqual((got, total), ("torch.Tensor", 16))
        self.assertEqual(float(tensor[1, 0]), 3.0)
        self.assertEqual(float(tensor[0, 0]), 2.0)
        del tensor
        buf.release()

    def test_other_arrays_and_tensors_still_pickle_as_before(self):
        from multiprocessing.reduction import ForkingPickler
        array = numpy.arange(10)
        self.assertTrue((pickle.loads(ForkingPickler.dumps(array)) == array).all())
        tensor = torch.arange(10)
        context = torch.multiprocessing.get_context("spawn")
        queue = context.Queue()
        queue.put(tensor)
        self.assertTrue(torch.equal(queue.get(timeout=30), tensor))

    def test_buffer_as_a_process_pool_argument(self):
        buf = self.client.allocate(1000)
        memoryview(buf)[:] = b"\x02" * 1000
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            self.assertEqual(pool.submit(workers.total, buf).result(timeout=60),
                             (2000, buf.handle))
        buf.release()


class HandoffTest(DaemonTest):
    def test_the_sender_exits_before_the_receiver_attaches(self):
        # Earlier tests' transfer leases may still run out their TTL, empty.
        leases = self.client.status().detached_leases
        sender = subprocess.run(
            [sys.executable, "-c",
             "import sys, workers; workers.send_and_exit(sys.argv[1])",
             self.daemon.socket],
            capture_output=True, timeout=60, cwd=sys.path[0] or None)
        self.assertEqual(sender.returncode, 0, sender.stderr.decode())
        # The sender is gone; only the transfer lease holds the buffer.
        status = self.client.status()
        self.assertEqual((status.buffers, status.detached_leases),
                         (1, leases + 1))
        buf = pickle.loads(sender.stdout)
        self.assertEqual(bytes(memoryview(buf)[:4]), b"sent")
        self.assertTrue(buf.writable)
        # The receiver holds it on its own: it dropped the transfer hold
        # (one-way, from its own connection, so wait for the daemon to see
        # it); the empty transfer lease ends with its TTL.
        def holders():
            return [b.holders for b in self.client.ls()
                    if b.handle == buf.handle]
        wait_for(lambda: holders() == [1], what="the transfer hold dropped",
                 timeout=30)
        buf.release()

    def test_pickles_share_one_transfer_lease_and_receivers_take_the_holds(self):
        a = self.client.allocate(4096)
        b = self.client.allocate(4096)
        leases = self.client.status().detached_leases
        references = [pickle.dumps(x) for x in (a, b, a)]
        # One round trip per pickle: the transfer lease is granted once.
        self.assertLessEqual(self.client.status().detached_leases, leases + 1)
        received = [pickle.loads(r) for r in references]

        def holders():
            return {x.handle: x.holders for x in self.client.ls()}
        # Ours and the receivers'; no transfer hold is left.
        wait_for(lambda: holders() == {a.handle: 3, b.handle: 2},
                 what="the transfer holds taken over", timeout=30)
        for buffer in received + [a, b]:
            buffer.release()
        self.wait_buffers(0, timeout=30)

    def test_memory_comes_back_when_nobody_unpickles(self):
        shmbroker.set_transfer_ttl(1)
        try:
            buf = self.client.allocate(1 << 20, kind="dedicated")
            reference = pickle.dumps(buf)
            self.assertGreater(len(reference), 0)
            self.assertLess(len(reference), 1000)  # a reference, not 1 MiB
            buf.release()
            # Only the transfer hold keeps it (other tests' empty transfer
            # leases may be running out their TTL too).
            status = self.client.status()
            self.assertEqual(status.buffers, 1)
            self.assertGreaterEqual(status.detached_leases, 1)
            self.wait_buffers(0, timeout=30)  # the transfer lease expired
            with self.assertRaises(shmbroker.NotFound):
                pickle.loads(reference)
        finally:
            shmbroker.set_transfer_ttl(60)


class CollateTest(DaemonTest):
    def test_dataloader_batches_come_by_reference(self):
        import os
        from torch.utils.data import DataLoader
        os.environ["SHMBROKER_SOCKET"] = self.daemon.socket
        try:
            loader = DataLoader(workers.Squares(), batch_size=4, num_workers=2,
                                collate_fn=shmbroker.torch.collate,
                                multiprocessing_context="spawn")
            seen = []
            for images, squares in loader:
                self.assertEqual(tuple(images.shape), (4, 4, 4))
                owner = shmbroker._pickling.owner_of(
                    images.data_ptr(), images.numel() * images.element_size())
                self.assertIsNotNone(owner, "the batch was not in a broker buffer")
                self.assertEqual(owner.address, images.data_ptr())
                # Pooled: the next batch of this size reuses warm pages.
                self.assertEqual(owner.kind, "pooled")
                seen += [float(images[k, 0, 0]) for k in range(4)]
                self.assertEqual(squares.tolist(),
                                 [int(v) ** 2 for v in images[:, 0, 0].tolist()])
                del images, squares, owner
            self.assertEqual(sorted(seen), [float(i) for i in range(12)])
            del loader
        finally:
            del os.environ["SHMBROKER_SOCKET"]

    def test_the_same_batches_as_default_collate(self):
        import os
        from torch.utils.data import DataLoader
        os.environ["SHMBROKER_SOCKET"] = self.daemon.socket
        try:
            loaders = [DataLoader(workers.Squares(), batch_size=5, num_workers=2,
                                  collate_fn=collate,
                                  multiprocessing_context="spawn")
                       for collate in (shmbroker.torch.collate, None)]
            batches = 0
            for ours, theirs in zip(*loaders):
                self.assertEqual(len(ours), len(theirs))
                for a, b in zip(ours, theirs):
                    self.assertEqual((type(a), a.dtype, a.shape),
                                     (type(b), b.dtype, b.shape))
                    self.assertTrue(torch.equal(a, b))
                batches += 1
                del ours
            self.assertEqual(batches, 3)  # 12 items, the last batch short
            del loaders
        finally:
            del os.environ["SHMBROKER_SOCKET"]

    def test_a_worker_killed_mid_epoch_leaks_nothing(self):
        import os
        from torch.utils.data import DataLoader
        # Batches in flight when the worker dies are held by transfer leases
        # (the spawned workers read the TTL from the environment): short, so
        # that the test sees them end.
        os.environ.update(SHMBROKER_SOCKET=self.daemon.socket,
                          SHMBROKER_TRANSFER_TTL="1")
        try:
            loader = DataLoader(workers.DiesAt(6), batch_size=2, num_workers=2,
                                collate_fn=shmbroker.torch.collate,
                                multiprocessing_context="spawn")
            with self.assertRaises(RuntimeError) as died:
                for images, _ in loader:
                    del images
            self.assertIn("DataLoader worker", str(died.exception))
            # Drop the error, as a program that handled it would. When the
            # SIGCHLD lands while this process unpickles a batch, torch's
            # handler raises in that frame, and the traceback of the error
            # it chains (__cause__) keeps the frame, and the batch's buffer,
            # alive: memory a live object holds, not a leak.
            del died, loader
            gc.collect()
            self.wait_buffers(0, timeout=30)
            self.assertEqual(self.client.status().allocated_bytes, 0)
        finally:
            del os.environ["SHMBROKER_SOCKET"]
            del os.environ["SHMBROKER_TRANSFER_TTL"]


if __name__ == "__main__":
    unittest.main()
