"""What Client and AsyncClient share: the channel's settings (TLS, API key, options),
the method table of quiver.v1, deadlines and the retry rule."""
from __future__ import annotations

import os
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import grpc

from . import _codec as codec
from ._pb import quiver_pb2 as pb

PathOrBytes = Union[str, "os.PathLike[str]", bytes]

# (path, kind, request class or None for raw bytes, reply decoder, idempotent)
# kind: uu unary-unary, us unary-stream, su stream-unary. Idempotent calls are retried on
# UNAVAILABLE; writes (Create, Drop, Upsert, Import, Delete, RebuildIndex) never are.
METHODS: Dict[str, Tuple[str, str, Any, Any]] = {
    "create": ("/quiver.v1.Collections/Create", "uu", pb.CreateCollectionRequest, pb.CollectionInfo.FromString),
    "describe": ("/quiver.v1.Collections/Describe", "uu", pb.DescribeCollectionRequest, pb.CollectionInfo.FromString),
    "list": ("/quiver.v1.Collections/List", "uu", pb.ListCollectionsRequest, pb.ListCollectionsResponse.FromString),
    "drop": ("/quiver.v1.Collections/Drop", "uu", pb.DropCollectionRequest, pb.DropCollectionResponse.FromString),
    "upsert": ("/quiver.v1.Items/Upsert", "uu", None, pb.UpsertResponse.FromString),
    "import": ("/quiver.v1.Items/Import", "su", None, pb.UpsertResponse.FromString),
    "get": ("/quiver.v1.Items/Get", "uu", pb.GetItemsRequest, pb.GetItemsResponse.FromString),
    "delete": ("/quiver.v1.Items/Delete", "uu", pb.DeleteItemsRequest, pb.DeleteItemsResponse.FromString),
    "scan": ("/quiver.v1.Items/Scan", "us", pb.ScanRequest, pb.ScanResponse.FromString),
    "search": ("/quiver.v1.Search/Search", "uu", pb.SearchRequest, pb.SearchResponse.FromString),
    "recommend": ("/quiver.v1.Search/Recommend", "uu", pb.RecommendRequest, pb.Hits.FromString),
    "recommend_batch": ("/quiver.v1.Search/RecommendBatch", "uu", pb.RecommendBatchRequest, pb.SearchResponse.FromString),
    "rebuild": ("/quiver.v1.Admin/RebuildIndex", "us", pb.RebuildIndexRequest, pb.RebuildProgress.FromString),
    "backup": ("/quiver.v1.Admin/Backup", "us", pb.BackupRequest, pb.BackupChunk.FromString),
    "cluster_status": ("/quiver.v1.Admin/ClusterStatus", "uu", pb.ClusterStatusRequest, pb.ClusterStatusResponse.FromString),
    "health": ("/grpc.health.v1.Health/Check", "uu", None, codec.health_reply),
}

DEFAULT_BATCH_BYTES = 4 << 20        # an upsert call's size (the server takes 64 MiB by default)
DEFAULT_IN_FLIGHT = 3                # upsert calls in flight at once


def _read(x: Optional[PathOrBytes]) -> Optional[bytes]:
    if x is None or isinstance(x, bytes):
        return x
    with open(x, "rb") as f:
        return f.read()


class Base:
    def __init__(self, address: str, api_key: Optional[str], *, tls: bool, ca: Optional[PathOrBytes],
                 cert: Optional[PathOrBytes], key: Optional[PathOrBytes],
                 tls_server_name: Optional[str], timeout: Optional[float], retries: int,
                 options: Optional[Sequence[Tuple[str, Any]]]) -> None:
        self.address = address
        self.timeout = timeout
        self.retries = retries
        self._metadata: Optional[List[Tuple[str, str]]] = (
            [("authorization", "Bearer " + api_key)] if api_key else None)
        if (cert is None) != (key is None):
            raise ValueError("mTLS needs both cert= and key=")
        self._tls = bool(tls or ca is not None or cert is not None)
        self._creds = (grpc.ssl_channel_credentials(root_certificates=_read(ca),
                                                    private_key=_read(key),
                                                    certificate_chain=_read(cert))
                       if self._tls else None)
        opts: List[Tuple[str, Any]] = [
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
            # a restarted server is found again within a second (retries of reads)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        if tls_server_name:
            opts.append(("grpc.ssl_target_name_override", tls_server_name))
        self._options = opts + list(options or [])

    def _deadline(self, timeout: Optional[float]) -> Optional[float]:
        return self.timeout if timeout is None else timeout

    def _backoff(self, attempt: int) -> float:
        """Seconds before retry number attempt (0-based): 0.1, 0.2, 0.4 ... 2 s, +-20%."""
        return float(min(2.0, 0.1 * (2 ** attempt)) * random.uniform(0.8, 1.2))

    def _make_calls(self, channel: Any) -> Dict[str, Any]:
        calls = {}
        for name, (path, kind, req, dec) in METHODS.items():
            ser = req.SerializeToString if req is not None else None
            make = {"uu": channel.unary_unary, "us": channel.unary_stream,
                    "su": channel.stream_unary}[kind]
            calls[name] = make(path, request_serializer=ser, response_deserializer=dec)
        return calls


def retryable(e: Any) -> bool:
    try:
        return bool(e.code() == grpc.StatusCode.UNAVAILABLE)
    except Exception:
        return False
