# Type stub of shmbroker._native (python/src/*.cc).
from typing import Iterator, Literal, Optional, Sequence, Union

_Lease = Union[None, int, "LeaseInfo"]

class BufferInfo:
    handle: int
    name: str
    size: int
    backing: str
    owner_uid: int
    owner_gid: int
    owner_pid: int
    holders: int
    share: list[str]
    shm_name: str
    charged_bytes: int
    kind: str
    arena_id: int
    offset: int
    sealed: bool
    created: float

class LeaseInfo:
    id: int
    ttl: float
    granted_ttl: float
    granted: float
    detached: bool
    connection_default: bool
    holds: int
    owner_pid: int
    owner_uid: int
    owner_gid: int
    connected: bool
    def __int__(self) -> int: ...

class TenantUsage:
    uid: int
    allocated_bytes: int
    buffers: int

class PoolStatus:
    enabled: bool
    arena_size: int
    pooled_max_size: int
    arenas: int
    arena_bytes: int
    live_buffers: int
    in_use_bytes: int
    free_bytes: int

class DaemonStatus:
    capacity_bytes: int
    allocated_bytes: int
    committed_bytes: int
    buffers: int
    clients: int
    holds: int
    version: str
    tenants: list[TenantUsage]
    leases: int
    detached_leases: int
    waiters: int
    watchers: int
    revision: int
    arenas: PoolStatus
    started: float

class Buffer:
    handle: int
    name: str
    size: int
    sealed: bool
    kind: str
    writable: bool
    released: bool
    exports: int
    address: int
    lease: int
    info: BufferInfo
    def release(self) -> bool: ...
    def seal(self) -> None: ...
    def __enter__(self) -> "Buffer": ...
    def __exit__(self, *args: object) -> bool: ...
    def __buffer__(self, flags: int) -> memoryview: ...

class WatchEvent:
    type: Literal["created", "sealed", "released", "lost"]
    revision: int
    buffer: Optional[BufferInfo]
    reason: Optional[Literal["released", "client_gone", "lease_expired",
                             "lease_revoked", "shutdown", "not_resumed"]]


class Watcher(Iterator[WatchEvent]):
    def __iter__(self) -> "Watcher": ...
    def __next__(self) -> WatchEvent: ...
    def next(self, timeout: Optional[float] = None) -> Optional[WatchEvent]: ...
    def cancel(self) -> None: ...
    def __enter__(self) -> "Watcher": ...
    def __exit__(self, *args: object) -> bool: ...


class Client:
    socket: str
    default_lease: int
    closed: bool
    def __init__(self, socket: Optional[str] = None, timeout: float = 10.0,
                 resume_after_restart: bool = True) -> None: ...
    def allocate(self, size: int, name: Optional[str] = None,
                 kind: Literal["auto", "dedicated", "pooled"] = "auto",
                 share: Union[str, Sequence[str]] = (), lease: _Lease = None,
                 backing: Literal["default", "memfd", "posix"] = "default",
                 uninitialized: bool = False,
                 wait_for_room: Optional[float] = None) -> Buffer: ...
    def attach(self, name: Union[str, int], wait: Optional[float] = None,
               sealed: bool = False, writable: bool = False,
               lease: _Lease = None) -> Buffer: ...
    def release(self, name: Union[str, int]) -> int: ...
    def seal(self, name: str) -> BufferInfo: ...
    def status(self) -> DaemonStatus: ...
    def describe(self, name: str) -> BufferInfo: ...
    def ls(self) -> list[BufferInfo]: ...
    def ping(self) -> None: ...
    def grant_lease(self, ttl: float, detached: bool = False) -> LeaseInfo: ...
    def revoke(self, lease: _Lease) -> int: ...
    def leases(self) -> list[LeaseInfo]: ...
    def lease(self, lease: _Lease = None) -> LeaseInfo: ...
    def watch(self, prefix: str = "", after_revision: int = 0) -> Watcher: ...
    def list_with_revision(self) -> tuple[list[BufferInfo], int]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Client": ...
    def __exit__(self, *args: object) -> bool: ...
