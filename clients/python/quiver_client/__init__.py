"""quiver_client: the Python client of Quiver (quiverd, gRPC API quiver.v1).

    import numpy as np
    from quiver_client import Client, F

    qv = Client("127.0.0.1:50051")
    qv.create_collection("pins", dim=384, metric="cosine")
    qv.upsert("pins", ids=ids, vectors=X, attributes=rows)
    hits = qv.search("pins", X[0], k=10, filter=(F("lang") == "en") & (F("price") <= 50))
    ids, scores = qv.search_batch("pins", Q, k=10)

Client is synchronous and thread-safe; AsyncClient has the same methods on grpc.aio.
Errors are QuiverError subclasses carrying the server's message."""
from .aio import AsyncClient, AsyncRebuild
from .client import Client, Rebuild
from .errors import (AlreadyExists, Cancelled, DeadlineExceeded, FailedPrecondition, Internal,
                     InvalidArgument, NotFound, PermissionDenied, QuiverError, ResourceExhausted,
                     Unauthenticated, Unavailable, Unimplemented)
from .filters import Expr, F
from .models import (BackupInfo, ClusterStatus, CollectionInfo, Hit, IndexInfo, Item, ItemList,
                     NodeStatus, RebuildProgress, ReplicaStatus, ShardStatus, WriteResult)

__version__ = "0.1.0"

__all__ = [
    "Client", "AsyncClient", "Rebuild", "AsyncRebuild", "F", "Expr",
    "Hit", "Item", "ItemList", "CollectionInfo", "IndexInfo", "RebuildProgress", "BackupInfo",
    "WriteResult", "ClusterStatus", "NodeStatus", "ShardStatus", "ReplicaStatus",
    "QuiverError", "NotFound", "InvalidArgument", "AlreadyExists", "FailedPrecondition",
    "ResourceExhausted", "Unauthenticated", "PermissionDenied", "Unavailable",
    "DeadlineExceeded", "Internal", "Cancelled", "Unimplemented",
]
