"""What Client and AsyncClient share: the channel's settings (TLS, API key, options),
the method table of quiver.v1, deadlines and the retry rule, and the state of the calls
that take more than one request or reply (upsert, import, scan, rebuild, backup); the
clients only make the calls (Client blocking, AsyncClient awaiting)."""
from __future__ import annotations

import os
import random
import time
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import grpc
import numpy.typing as npt

from . import _codec as codec
from ._pb import quiver_pb2 as pb
from ._progress import Progress
from .errors import QuiverError, from_rpc_error
from .models import BackupInfo, IndexInfo, Item, RebuildProgress, WriteResult

PathOrBytes = Union[str, "os.PathLike[str]", bytes]
Vectors = Any          # an (n, dim) array-like of numbers (numpy float16/32/64, lists)
Ids = Any              # a 1-D array-like of ints 0 .. 2^63-1
FilterArg = Any        # an F expression, a dict / JSON string in the proto's JSON mapping, a Filter
AttributeRows = Optional[Sequence[Optional[Mapping[str, Any]]]]

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
    """The channel and its settings; _grpc: the module that makes the channel (grpc, or
    grpc.aio in AsyncClient)."""
    _grpc: Any = grpc

    def __init__(self, address: str = "127.0.0.1:50051", api_key: Optional[str] = None, *,
                 tls: bool = False, ca: Optional[PathOrBytes] = None,
                 cert: Optional[PathOrBytes] = None, key: Optional[PathOrBytes] = None,
                 tls_server_name: Optional[str] = None, timeout: Optional[float] = 30.0,
                 retries: int = 8, options: Optional[Sequence[Tuple[str, Any]]] = None) -> None:
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
        if self._creds is not None:
            self._channel: Any = self._grpc.secure_channel(address, self._creds, options=self._options)
        else:
            self._channel = self._grpc.insecure_channel(address, options=self._options)
        self._calls = self._make_calls(self._channel)

    def _deadline(self, timeout: Optional[float]) -> Optional[float]:
        return self.timeout if timeout is None else timeout

    def _retry(self, timeout: Optional[float] = None, idempotent: bool = True,
               prefix: str = "") -> "Retry":
        return Retry(self.retries, timeout, idempotent, prefix)

    def _invoke(self, name: str, request: Any, timeout: Optional[float]) -> Any:
        """Method name called once with the API key and timeout as given (no default
        deadline, no retries): the reply in Client, what to await in AsyncClient, and a
        stream's call object in both."""
        return self._calls[name](request, timeout=timeout, metadata=self._metadata)

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


def backoff(attempt: int) -> float:
    """Seconds before retry number attempt (0-based): 0.1, 0.2, 0.4 ... 2 s, +-20%."""
    return float(min(2.0, 0.1 * (2 ** attempt)) * random.uniform(0.8, 1.2))


class Retry:
    """The retry rule of one call: an idempotent call that failed with UNAVAILABLE is
    tried again, at most `retries` times, while its deadline (timeout seconds from now;
    None: no deadline) leaves room for the pause before it."""

    def __init__(self, retries: int, timeout: Optional[float] = None, idempotent: bool = True,
                 prefix: str = "") -> None:
        self.retries = retries
        self.idempotent = idempotent
        self.prefix = prefix
        self.end = None if timeout is None else time.monotonic() + timeout
        self.attempt = 0

    def left(self) -> Optional[float]:
        """Seconds to the deadline (None: no deadline)."""
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def pause(self, e: Any, may_retry: bool = True) -> float:
        """After the call failed with e (a grpc.RpcError): the seconds to wait before
        trying again, or raises e as its QuiverError (at once when not may_retry)."""
        if may_retry and self.idempotent and retryable(e) and self.attempt < self.retries:
            seconds = backoff(self.attempt)
            if self.end is None or time.monotonic() + seconds < self.end:
                self.attempt += 1
                return seconds
        raise from_rpc_error(e, self.prefix) from None


# ------------------------------------------------------------------------- upsert
def upsert_error(e: QuiverError, collection: str, s: int, e_row: int, ids: npt.NDArray[Any],
                 acknowledged: int) -> QuiverError:
    """Names the row (and id) a failed upsert batch stopped at."""
    row, msg = codec.split_upsert_error(e.message, s, ids)
    where = ("row %d (id %d)" % (row, int(ids[row])) if row is not None and row < len(ids)
             else "rows %d..%d" % (s, e_row - 1))
    out = type(e)('upsert into "%s": %s: %s (%d rows acknowledged by other calls; '
                  'writes are not retried)' % (collection, where, msg, acknowledged), e.code)
    out.row = row  # type: ignore[attr-defined]
    out.id = int(ids[row]) if row is not None and row < len(ids) else None  # type: ignore[attr-defined]
    out.rows_acknowledged = acknowledged  # type: ignore[attr-defined]
    return out


class Upsert:
    """One upsert: its rows cut into calls (batches()), its progress bar, and what the
    calls answered: items written, rows acknowledged, write tokens, the first refusal."""

    def __init__(self, collection: str, ids: Ids, vectors: Vectors, attributes: AttributeRows,
                 batch_bytes: int, ack: str, progress: bool) -> None:
        self.collection = collection
        self.plan = codec.UpsertPlan(collection, ids, vectors, attributes, batch_bytes, ack)
        self.bar = Progress(progress, self.plan.n, 'upsert "%s"' % collection)
        self.tokens: Dict[int, bytes] = {}
        self.upserted = self.acknowledged = 0
        self.failure: Optional[Tuple[QuiverError, int, int]] = None

    def batches(self) -> Iterator[Tuple[int, int, bytes]]:
        """(first row, end row, UpsertRequest bytes) per call."""
        return self.plan.batches()

    def answered(self, s: int, e: int, reply: Any) -> None:
        """Rows s..e-1 were written (reply: their UpsertResponse)."""
        self.upserted += reply.upserted
        self.tokens[s] = reply.write_token
        self.acknowledged += e - s
        self.bar.update(e - s)

    def refused(self, s: int, e: int, err: Any) -> None:
        """The call of rows s..e-1 failed with err (a grpc.RpcError); the first such
        batch is the one reported."""
        if self.failure is None or s < self.failure[1]:
            self.failure = (from_rpc_error(err), s, e)

    def close(self) -> None:
        self.bar.close()

    def result(self) -> WriteResult:
        """The WriteResult once every call has answered, or raises the refusal."""
        if self.failure is not None:
            err, s, e = self.failure
            raise upsert_error(err, self.collection, s, e, self.plan.ids, self.acknowledged)
        return WriteResult(self.upserted, [self.tokens[s] for s in sorted(self.tokens)])


def import_requests(collection: str, batches: Iterable[Any], batch_bytes: int, ack: str,
                    bar: Progress) -> Iterator[bytes]:
    """import_items()' stream: each of batches ((ids, vectors[, attributes]) or a dict of
    them) as UpsertRequests of at most batch_bytes, read lazily, counted on bar."""
    for b in batches:
        if isinstance(b, Mapping):
            ids, vecs, attrs = b["ids"], b["vectors"], b.get("attributes")
        else:
            ids, vecs, attrs = (tuple(b) + (None,))[:3]
        plan = codec.UpsertPlan(collection, ids, vecs, attrs, batch_bytes, ack)
        for s, e, payload in plan.batches():
            yield payload
            bar.update(e - s)


# --------------------------------------------------------------------------- scan
class Scan:
    """Where a scan stands: request() resumes it after the last item seen (a stream
    broken by UNAVAILABLE is retried, the count of retries reset by every item)."""

    def __init__(self, collection: str, after_id: Optional[int], limit: int,
                 with_vectors: bool, with_attributes: bool, retries: int) -> None:
        self.collection = collection
        self.last = after_id
        self.limit = limit
        self.sent = 0
        self.with_vectors = with_vectors
        self.with_attributes = with_attributes
        self.retry = Retry(retries)

    def request(self) -> pb.ScanRequest:
        return pb.ScanRequest(collection=self.collection, after_id=self.last or 0,
                              limit=max(0, self.limit - self.sent) if self.limit else 0,
                              with_vectors=self.with_vectors,
                              without_attributes=not self.with_attributes)

    @property
    def done(self) -> bool:
        """limit items have been yielded."""
        return bool(self.limit and self.sent >= self.limit)

    def items(self, reply: pb.ScanResponse) -> Iterator[Item]:
        """reply's items not yet yielded, up to the limit."""
        for it in reply.items:
            if self.last is not None and it.id <= self.last:
                continue
            self.last = it.id
            self.sent += 1
            self.retry.attempt = 0
            yield codec.item_of(it, self.with_vectors)
            if self.done:
                return


# ------------------------------------------------------------------------ rebuild
class RebuildBase:
    """What Rebuild and AsyncRebuild share: the call, its progress bar, and the new index
    once the "done" report brings it."""

    def __init__(self, call: Any, collection: str, progress: Progress) -> None:
        self._call = call
        self._collection = collection
        self._progress = progress
        self.index: Optional[IndexInfo] = None

    def _report(self, m: pb.RebuildProgress) -> RebuildProgress:
        """One progress message: drawn on the bar, its index kept."""
        p = codec.progress_of(m)
        self._progress.set(p.done, p.total or None, 'rebuild "%s": %s' % (self._collection, p.phase))
        if p.index is not None:
            self.index = p.index
        return p

    def _result(self) -> IndexInfo:
        if self.index is None:
            raise QuiverError('rebuild of "%s" ended without a "done" report' % self._collection)
        return self.index

    def cancel(self) -> None:
        self._call.cancel()


# ------------------------------------------------------------------------- backup
class BackupFile:
    """Where a backup stream goes: a path (written through path + ".part", renamed when
    complete) or a binary file object; with its progress bar in bytes."""

    def __init__(self, path: Any, progress: bool) -> None:
        self.own = not hasattr(path, "write")
        self.name = os.fspath(path) if self.own else getattr(path, "name", "<file>")
        self.tmp = str(self.name) + ".part"
        self.f: Any = open(self.tmp, "wb") if self.own else path
        self.bar = Progress(progress, None, "backup", unit="bytes")
        self.written = self.last_seq = 0

    def write(self, chunk: pb.BackupChunk) -> None:
        self.f.write(chunk.data)
        self.written += len(chunk.data)
        self.last_seq = chunk.last_seq
        self.bar.set(self.written, chunk.total_bytes or None)

    def finish(self) -> BackupInfo:
        """After the last chunk: the file synced and renamed to path."""
        if self.own:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.name)
        return BackupInfo(str(self.name), self.written, self.last_seq)

    def discard(self) -> None:
        """After a failure: closes the file and removes path + ".part"."""
        if self.own:
            self.f.close()
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)

    def close(self) -> None:
        self.bar.close()
