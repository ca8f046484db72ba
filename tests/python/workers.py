"""Functions that tests/python run in other processes (spawned: they import
this module by name). Each checks what it received and answers on a queue."""

import pickle
import sys


def describe(obj):
    """What a received object is, and whether its memory is a broker
    Buffer's (found by address among this process's live Buffers)."""
    from shmbroker import _pickling
    kind = type(obj).__module__ + "." + type(obj).__name__
    if kind == "shmbroker._native.Buffer":
        return kind, obj.address, obj.handle
    if kind == "numpy.ndarray":
        address = obj.__array_interface__["data"][0]
    else:
        address = obj.data_ptr()
    owner = _pickling.owner_of(address, 1)
    return kind, address, owner.handle if owner is not None else None


def answer(inbox, outbox):
    """Takes one object, answers (kind, address, handle, sum of its first
    eight bytes) and writes 1 + that into its first element."""
    import numpy
    obj = inbox.get(timeout=60)
    kind, address, handle = describe(obj)
    if kind == "shmbroker._native.Buffer":
        first = numpy.frombuffer(obj, dtype=numpy.uint8, count=8)
    elif kind == "numpy.ndarray":
        first = obj.reshape(-1)[:8]
    else:
        first = obj.reshape(-1)[:8].numpy()
    total = int(first.sum())
    first[0] = first[0] + 1
    outbox.put((kind, address, handle, total))
    # Hold the memory until the parent has looked.
    inbox.get(timeout=60)


def total(buffer):
    import numpy
    return int(numpy.frombuffer(buffer, dtype=numpy.uint8).sum()), buffer.handle


def send_and_exit(socket):
    """A sender that pickles a Buffer to stdout and exits before anyone
    unpickles it."""
    import shmbroker
    client = shmbroker.Client(socket)
    buf = client.allocate(4096, kind="dedicated")
    memoryview(buf)[:4] = b"sent"
    sys.stdout.buffer.write(pickle.dumps(buf))


class Squares:
    """A map-style dataset: item i is (a 4x4 float tensor of i, i * i)."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        import torch
        return torch.full((4, 4), float(i)), i * i


class DiesAt(Squares):
    """Squares whose worker SIGKILLs itself when asked for item `at`."""

    def __init__(self, at):
        self.at = at

    def __getitem__(self, i):
        if i == self.at:
            import os
            import signal
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(i)
