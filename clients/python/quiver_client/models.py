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
    """A collection: metric is "l2", "ip" or "cosine"; count the live items."""
    name: str
    dim: int
    metric: str
    count: int
    last_seq: int
    index: IndexInfo
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
