"""torch tensors over broker memory, and pickling them by reference.

``import shmbroker.torch`` makes multiprocessing (and torch.multiprocessing)
send a CPU tensor whose storage lies in a live shmbroker Buffer as a
reference to that buffer (see shmbroker._pickling); every other tensor goes
through torch.multiprocessing's own reducer as before.

``tensor(buffer, dtype, shape)`` views a Buffer as a tensor, no copy.
"""

import warnings

import torch
import torch.multiprocessing  # its reducers first: ours take their place
from torch.multiprocessing import reductions as _torch_reductions
from multiprocessing.reduction import ForkingPickler

from . import _pickling


def tensor(buffer, dtype=torch.uint8, shape=None, offset=0):
    """A tensor over `buffer`'s pages (no copy), of `dtype` and `shape`
    (default: 1-D over the rest of the buffer from byte `offset`). A
    read-only buffer gives a tensor that must not be written."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    count = (buffer.size - offset) // itemsize
    if shape is not None:
        count = 1
        for n in shape:
            count *= n
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        flat = torch.frombuffer(buffer, dtype=dtype, count=count, offset=offset)
    return flat if shape is None else flat.view(shape)


def _rebuild_tensor(ref, offset, nbytes, dtype, shape, stride, storage_offset,
                    requires_grad):
    buffer = _pickling._rebuild_buffer(ref)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        raw = torch.frombuffer(buffer, dtype=torch.uint8, count=nbytes,
                               offset=offset)
    result = raw.view(dtype).as_strided(shape, stride, storage_offset)
    result.requires_grad_(requires_grad)
    return result


def _reduce_tensor(t):
    if t.device.type == "cpu" and not t.is_sparse and t.grad_fn is None:
        storage = t.storage()
        nbytes = storage.nbytes()
        buffer = _pickling.owner_of(storage.data_ptr(), nbytes) if nbytes else None
        if buffer is not None:
            return _rebuild_tensor, (
                _pickling.reference(buffer), storage.data_ptr() - buffer.address,
                nbytes, t.dtype, tuple(t.shape), t.stride(), t.storage_offset(),
                t.requires_grad)
    return _torch_reductions.reduce_tensor(t)


ForkingPickler.register(torch.Tensor, _reduce_tensor)
