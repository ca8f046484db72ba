"""shmbroker: shared memory from shmbrokerd, for Python.

    import numpy, shmbroker
    with shmbroker.Client() as client:
        buf = client.allocate(1 << 20, name="frames")
        frame = numpy.frombuffer(buf, dtype=numpy.uint8)   # no copy
        frame[:] = 7

A Buffer exports the buffer protocol (memoryview, numpy, torch see its
pages). Errors are shmbroker.Error subclasses (NotFound, PermissionDenied,
...). Buffers and the arrays over them pickle by reference across
processes (shmbroker._pickling); ``import shmbroker.torch`` for tensors.
"""

from . import _native, _pickling
from ._native import (Buffer, BufferInfo, DaemonStatus, LeaseInfo,
                      PoolStatus, TenantUsage, WatchEvent, Watcher)
from ._pickling import set_transfer_ttl, transfer_ttl
from .errors import *  # noqa: F401,F403 - the exception classes
from .errors import __all__ as _error_names


class Client(_native.Client):
    __doc__ = _native.Client.__doc__

    def allocate(self, size, name=None, kind="auto", share=(), lease=None,
                 backing="default", uninitialized=False, wait_for_room=None):
        return _pickling.track(super().allocate(
            size, name=name, kind=kind,
            share=[share] if isinstance(share, str) else list(share), lease=lease,
            backing=backing, uninitialized=uninitialized,
            wait_for_room=wait_for_room))
    allocate.__doc__ = _native.Client.allocate.__doc__

    def attach(self, name, wait=None, sealed=False, writable=False, lease=None):
        return _pickling.track(super().attach(
            name, wait=wait, sealed=sealed, writable=writable, lease=lease))
    attach.__doc__ = _native.Client.attach.__doc__


_pickling.install()

__all__ = ["Client", "Buffer", "BufferInfo", "LeaseInfo", "DaemonStatus",
           "PoolStatus", "TenantUsage", "WatchEvent", "Watcher",
           "transfer_ttl", "set_transfer_ttl"] + list(_error_names)
