"""What the client returns: small dataclasses with Python values and numpy vectors.
Each keeps the message it was made from in `raw` (fields added to the API later are
there before this client names them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

Attributes = Dict[str, Any]


@dataclass
class Hit:
    """One search or recommend result. score: L2 squared distance (smaller is better),
    IP / COSINE similarity (larger is better). vector only when asked (with_vectors)."""
    id: int
    score: float
    attributes: Attributes = field(default_factory=dict)
    vector: Optional[npt.NDArray[np.float32]] = None


@dataclass
class Item:
    """A stored item, from get() or scan(). vector is None when not asked for."""
    id: int
    vector: Optional[npt.NDArray[np.float32]]
    attributes: Attributes = field(default_factory=dict)


class ItemList(List[Item]):
    """get()'s answer: the found items in request order; `missing_ids` the rest."""
    missing_ids: List[int]

    def __init__(self, items: List[Item], missing_ids: List[int]) -> None:
        super().__init__(items)
        self.missing_ids = missing_ids


@dataclass
class IndexInfo:
    """The live index of a collection (see proto IndexInfo)."""
    kind: str
    trained: bool
    count: int
    nlist: int
    default_nprobe: int
    trained_for: int
    rebuilding: bool
    phase: str
    spec: Dict[str, Any]
    covered_seq: int
    recall_table: List[Tuple[float, int]]
    pq_m: int
    pq_nbits: int
    refine: int
    rebuild_done: int
    rebuild_total: int
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass
class CollectionInfo:
    """A collection: metric is "l2", "ip" or "cosine"; count the live items; shards and
    replicas 1 on a single node."""
    name: str
    dim: int
    metric: str
    count: int
    last_seq: int
    index: IndexInfo
    shards: int = 1
    replicas: int = 1
    raw: Any = field(default=None, repr=False, compare=False)


class WriteResult(int):
    """What upsert() and delete() return: the number of items written (or deleted, of
    those that existed) as an int, with the server's write tokens. Pass write_token as
    a read's after_token= to read only once that write is visible (a cluster acknowledges
    ack="logged" writes before every replica applied them). write_token is the token of
    the last call in row order; write_tokens has one per call (upsert sends several)."""
    write_tokens: List[bytes]
    write_token: bytes

    def __new__(cls, n: int, tokens: Optional[List[bytes]] = None) -> "WriteResult":
        self = super().__new__(cls, n)
        self.write_tokens = [t for t in (tokens or []) if t]
        self.write_token = self.write_tokens[-1] if self.write_tokens else b""
        return self


@dataclass
class NodeStatus:
    id: str
    address: str
    alive: bool


@dataclass
class ReplicaStatus:
    """state: "active", "catching_up" or "down"."""
    node: str
    state: str
    applied_seq: int


@dataclass
class ShardStatus:
    collection: str
    shard: int
    log_last_seq: int
    replicas: List[ReplicaStatus]


@dataclass
class ClusterStatus:
    """cluster_status(): clustered False on a single node (no nodes, no shards)."""
    clustered: bool
    nodes: List[NodeStatus]
    shards: List[ShardStatus]
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass
class RebuildProgress:
    """One progress report of rebuild_index: phase is sampling, training, adding,
    saving, catching_up or done (index set on done)."""
    phase: str
    done: int
    total: int
    elapsed_seconds: float
    index: Optional[IndexInfo] = None


@dataclass
class BackupInfo:
    """What backup() wrote: the path, its size and the newest write it holds."""
    path: str
    bytes: int
    last_seq: int
