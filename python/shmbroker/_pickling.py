"""Pickling by reference: a broker buffer crosses to another process on the
same host as a reference, and the receiver maps the same pages.

The sender's half (Buffer._transfer): a new detached lease of
``transfer_ttl()`` seconds that nobody renews, and a second hold on the
buffer under it. So the reference stays good if the sender drops its buffer
(or exits) before the receiver attaches, and the memory comes back when the
lease runs out if nobody ever unpickles it. The receiver's half
(_rebuild_buffer): attach the handle under its own connection's default
lease, then revoke the transfer lease.

What pickles by reference:
- ``Buffer``: always (copyreg), with any pickler;
- a numpy array whose memory lies in a live Buffer of this process: when
  sent through multiprocessing (ForkingPickler: Queue, Pipe, Pool,
  concurrent.futures.ProcessPoolExecutor). Other arrays pickle as usual;
- a torch tensor likewise, once ``shmbroker.torch`` is imported (it takes
  the place of torch.multiprocessing's reducer for CPU tensors and hands
  every other tensor back to it).

Each pickle is one transfer; an unpickled reference cannot be unpickled
twice (its lease is gone). Use the "spawn" or "forkserver" start method: a
fork()ed child must not use its parent's gRPC connection.
"""

import copyreg
import os
import threading
import weakref
from multiprocessing.reduction import ForkingPickler

from . import _native

_transfer_ttl = float(os.environ.get("SHMBROKER_TRANSFER_TTL", "60"))
_lock = threading.Lock()
_clients = {}          # socket path -> Client, for this pid
_clients_pid = os.getpid()
_live = weakref.WeakValueDictionary()   # id(buffer) -> Buffer of this process


def transfer_ttl():
    """Seconds a pickled reference stays good if nobody unpickles it."""
    return _transfer_ttl


def set_transfer_ttl(seconds):
    """Sets transfer_ttl() (default 60, or $SHMBROKER_TRANSFER_TTL); the
    daemon clamps it to [--lease_min_ttl, --lease_max_ttl]."""
    global _transfer_ttl
    if not seconds > 0:
        raise ValueError("the transfer TTL must be positive")
    _transfer_ttl = float(seconds)


def track(buffer):
    """Remembers a Buffer so that arrays and tensors over it are found."""
    _live[id(buffer)] = buffer
    return buffer


def owner_of(address, length):
    """The live Buffer of this process whose mapping holds
    [address, address + length), or None."""
    for buffer in list(_live.values()):
        start = buffer.address
        if start and start <= address and address + length <= start + buffer.size:
            return buffer
    return None


def process_client(socket):
    """This process's Client for `socket` (one per socket, made on demand)."""
    global _clients_pid
    with _lock:
        if _clients_pid != os.getpid():  # a fork()ed child: not the parent's
            _clients.clear()
            _clients_pid = os.getpid()
        client = _clients.get(socket)
        if client is None:
            from . import Client
            client = _clients[socket] = Client(socket)
        return client


def reference(buffer):
    """The picklable reference to `buffer`: a transfer (see above)."""
    return buffer._transfer(_transfer_ttl)


def _rebuild_buffer(ref):
    socket, handle, lease, writable, _size = ref
    return track(process_client(socket)._attach_transfer(handle, lease, writable))


def _reduce_buffer(buffer):
    return _rebuild_buffer, (reference(buffer),)


def _rebuild_ndarray(ref, offset, dtype, shape, strides):
    import numpy
    return numpy.ndarray(shape, dtype, buffer=_rebuild_buffer(ref),
                         offset=offset, strides=strides)


def _reduce_ndarray(array):
    import numpy
    if type(array) is numpy.ndarray and array.size > 0:
        low, high = numpy.byte_bounds(array)
        buffer = owner_of(low, high - low)
        if buffer is not None:
            offset = array.__array_interface__["data"][0] - buffer.address
            return _rebuild_ndarray, (reference(buffer), offset, array.dtype,
                                      array.shape, array.strides)
    return array.__reduce__()


def install():
    """Registers the reducers (done by ``import shmbroker``)."""
    copyreg.pickle(_native.Buffer, _reduce_buffer)
    ForkingPickler.register(_native.Buffer, _reduce_buffer)
    try:
        import numpy
    except ImportError:
        return
    ForkingPickler.register(numpy.ndarray, _reduce_ndarray)
