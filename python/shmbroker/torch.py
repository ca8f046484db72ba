"""torch tensors over broker memory, and pickling them by reference.

``import shmbroker.torch`` makes multiprocessing (and torch.multiprocessing)
send a CPU tensor whose storage lies in a live shmbroker Buffer as a
reference to that buffer (see shmbroker._pickling); every other tensor goes
through torch.multiprocessing's own reducer as before.

``tensor(buffer, dtype, shape)`` views a Buffer as a tensor, no copy.

``collate`` is a DataLoader ``collate_fn``: torch's default collation, but
each batched tensor is stacked into a broker buffer (pooled, so that the
next batch of that size reuses warm pages), and a worker process hands the
batch to the main process by reference (the pages), not through torch's own
shared-memory files:

    loader = DataLoader(dataset, batch_size=64, num_workers=4,
                        collate_fn=shmbroker.torch.collate,
                        multiprocessing_context="spawn")
"""

import os
import warnings

import torch
import torch.multiprocessing  # its reducers first: ours take their place
from torch.multiprocessing import reductions as _torch_reductions
from multiprocessing.reduction import ForkingPickler

from . import _pickling
from . import errors as _errors


def _batch_buffer(owner, nbytes):
    # Pooled: a batch of the size of an earlier one reuses its memory with
    # the pages still mapped in this worker and in the main process (for a
    # large batch, an arena of its own: docs/api.md, "Pooled buffers"), so
    # steady state costs no page faults. Uninitialized: torch.stack writes
    # every byte, and the memory is this uid's own. A daemon that cannot
    # pool it (--pooling=false, or above --pooled_large_max_size) gives a
    # dedicated buffer instead.
    try:
        return owner.allocate(nbytes, kind="pooled", uninitialized=True)
    except (_errors.FailedPrecondition, _errors.InvalidArgument):
        return owner.allocate(nbytes)


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


def collate(batch, client=None):
    """torch.utils.data.default_collate, with every batched tensor in a new
    broker buffer of `client` (default: this process's Client for
    $SHMBROKER_SOCKET, or the default socket)."""
    from torch.utils.data._utils import collate as torch_collate

    def collate_tensor(tensors, *, collate_fn_map=None):
        first = tensors[0]
        shape = (len(tensors),) + tuple(first.shape)
        nbytes = first.element_size() * first.numel() * len(tensors)
        if nbytes == 0:
            return torch.stack(tensors, 0)
        owner = client or _pickling.process_client(
            os.environ.get("SHMBROKER_SOCKET") or None)
        buffer = _pickling.track(_batch_buffer(owner, nbytes))
        out = tensor(buffer, first.dtype, shape)
        torch.stack(tensors, 0, out=out)
        return out

    fn_map = dict(torch_collate.default_collate_fn_map)
    fn_map[torch.Tensor] = collate_tensor
    return torch_collate.collate(batch, collate_fn_map=fn_map)


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
