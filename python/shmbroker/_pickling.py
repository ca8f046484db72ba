"""Pickling by reference: a broker buffer crosses to another process on the
same host as a reference, and the receiver maps the same pages.

The sender's half (Buffer._transfer): a second hold on the buffer under a
detached *transfer lease* that nobody renews. So the reference stays good if
the sender drops its buffer (or exits) before the receiver attaches, and the
memory comes back when the lease runs out if nobody ever unpickles it. A
process reuses one transfer lease per socket for half its TTL, then takes a
new one: a pickle costs one round trip (the hold), not two. The receiver's
half (_rebuild_buffer): attach the handle under its own connection's default
lease, then drop the transfer hold with a one-way message (no round trip);
the empty lease ends with its TTL.

What pickles by reference:
- ``Buffer``: always (copyreg), with any pickler;
- a numpy array whose memory lies in a live Buffer of this process: when
  sent through multiprocessing (ForkingPickler: Queue, Pipe, Pool,
  concurrent.futures.ProcessPoolExecutor). Other arrays pickle as usual;
- a torch tensor likewise, once ``shmbroker.torch`` is imported (it takes
  the place of torch.multiprocessing's reducer for CPU tensors and hands
  every other tensor back to it).

Each pickle is one transfer hold, to be unpickled once: unpickling the same
bytes again attaches the buffer if it still exists, but also drops another
transfer hold on it if there is one, which another pickle of the same
buffer may still need. A reference stays good for at least half of
``transfer_ttl()``. Use the "spawn" or
"forkserver" start method: a fork()ed child must not use its parent's gRPC
connection.
"""

import copyreg
import os
import threading
import time
import weakref
from multiprocessing.reduction import ForkingPickler

from . import _native

_transfer_ttl = float(os.environ.get("SHMBROKER_TRANSFER_TTL", "60"))
_lock = threading.Lock()
_clients = {}          # socket path -> Client, for this pid
_clients_pid = os.getpid()
_transfer_leases = {}  # socket path -> (lease id, reused until), this pid
_live = weakref.WeakValueDictionary()   # id(buffer) -> Buffer of this process


def transfer_ttl():
    """Seconds a transfer lease lives: a pickled reference that nobody
    unpickles stays good for between half of this and all of it."""
    return _transfer_ttl


def set_transfer_ttl(seconds):
    """Sets transfer_ttl() (default 60, or $SHMBROKER_TRANSFER_TTL); the
    daemon clamps it to [--lease_min_ttl, --lease_max_ttl]."""
    global _transfer_ttl
    if not seconds > 0:
        raise ValueError("the transfer TTL must be positive")
    with _lock:
        _transfer_ttl = float(seconds)
        _transfer_leases.clear()  # later pickles get leases of the new TTL


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


def _forget_parent_locked():
    """In a fork()ed child, the parent's clients and leases are not ours."""
    global _clients_pid
    if _clients_pid != os.getpid():
        _clients.clear()
        _transfer_leases.clear()
        _clients_pid = os.getpid()


def process_client(socket):
    """This process's Client for `socket` (one per socket, made on demand)."""
    with _lock:
        _forget_parent_locked()
        client = _clients.get(socket)
        if client is None:
            from . import Client
            client = _clients[socket] = Client(socket)
        return client


def reference(buffer):
    """The picklable reference to `buffer`: a transfer (see above)."""
    socket = buffer._socket
    now = time.monotonic()
    with _lock:
        _forget_parent_locked()
        lease, until = _transfer_leases.get(socket, (0, 0.0))
        ttl = _transfer_ttl
    ref, granted = buffer._transfer(ttl, lease if now < until else 0)
    if granted > 0:  # a new lease (of the TTL the daemon granted)
        with _lock:
            _transfer_leases[socket] = (ref[2], now + granted / 2)
    return ref


def _rebuild_buffer(ref):
    socket, handle, lease, writable, _size, sender_uid = ref
    client = process_client(socket)
    return track(client._attach_transfer(handle, lease, writable, sender_uid))


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
