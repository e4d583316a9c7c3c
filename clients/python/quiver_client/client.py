"""The synchronous client: one object per server, thread-safe (one gRPC channel)."""
from __future__ import annotations

import os
import time
from collections import deque
from typing import (Any, BinaryIO, Deque, Dict, Iterable, Iterator, List, Literal, Mapping,
                    Optional, Sequence, Tuple, Union, overload)

import grpc
import numpy as np
import numpy.typing as npt

from . import _codec as codec
from ._base import DEFAULT_BATCH_BYTES, DEFAULT_IN_FLIGHT, Base, PathOrBytes, retryable
from ._pb import quiver_pb2 as pb
from ._progress import Progress
from .errors import QuiverError, from_rpc_error
from .models import (Attributes, BackupInfo, ClusterStatus, CollectionInfo, Hit, IndexInfo, ItemList, Item,
                     WriteResult,
                    RebuildProgress)

Vectors = Any          # an (n, dim) array-like of numbers (numpy float16/32/64, lists)
Ids = Any              # a 1-D array-like of ints 0 .. 2^63-1
FilterArg = Any        # an F expression, a dict / JSON string in the proto's JSON mapping, a Filter
AttributeRows = Optional[Sequence[Optional[Mapping[str, Any]]]]


def _upsert_error(e: QuiverError, collection: str, s: int, e_row: int, ids: npt.NDArray[Any],
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


class Rebuild:
    """A running rebuild_index(wait=False): iterate for RebuildProgress reports, wait()
    for the new IndexInfo, cancel() to stop it (the old index keeps serving)."""

    def __init__(self, call: Any, collection: str, progress: Progress) -> None:
        self._call = call
        self._collection = collection
        self._progress = progress
        self.index: Optional[IndexInfo] = None

    def __iter__(self) -> Iterator[RebuildProgress]:
        try:
            for m in self._call:
                p = codec.progress_of(m)
                self._progress.set(p.done, p.total or None, 'rebuild "%s": %s' % (self._collection, p.phase))
                if p.index is not None:
                    self.index = p.index
                yield p
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        finally:
            self._progress.close()

    def wait(self) -> IndexInfo:
        """Blocks until the rebuild is done; returns the new index."""
        for _ in self:
            pass
        if self.index is None:
            raise QuiverError('rebuild of "%s" ended without a "done" report' % self._collection)
        return self.index

    def cancel(self) -> None:
        self._call.cancel()


class Client(Base):
    """A connection to quiverd.

        qv = Client("127.0.0.1:50051")                          # plain text (loopback)
        qv = Client("db:50051", api_key="...", tls=True, ca="ca.pem")  # TLS; cert=/key= for mTLS

    address: host:port. api_key: sent as "authorization: Bearer KEY". tls: use TLS with
    the system's roots (ca= a PEM path or bytes; cert=/key= the client's own for mTLS;
    tls_server_name= the name to check in the server's certificate when it differs from
    the host). timeout: the default deadline of a call in seconds (None: none; every
    method also takes timeout=). retries: how often idempotent calls (reads, Describe,
    List, Get, Scan, Backup, health) are retried on UNAVAILABLE, waiting 0.1 s doubling
    to 2 s (about 9 s in all with the default 8) for the channel to reconnect; writes are
    never retried. options: extra gRPC channel options."""

    def __init__(self, address: str = "127.0.0.1:50051", api_key: Optional[str] = None, *,
                 tls: bool = False, ca: Optional[PathOrBytes] = None,
                 cert: Optional[PathOrBytes] = None, key: Optional[PathOrBytes] = None,
                 tls_server_name: Optional[str] = None, timeout: Optional[float] = 30.0,
                 retries: int = 8, options: Optional[Sequence[Tuple[str, Any]]] = None) -> None:
        super().__init__(address, api_key, tls=tls, ca=ca, cert=cert, key=key,
                         tls_server_name=tls_server_name, timeout=timeout, retries=retries,
                         options=options)
        if self._creds is not None:
            self._channel = grpc.secure_channel(address, self._creds, options=self._options)
        else:
            self._channel = grpc.insecure_channel(address, options=self._options)
        self._calls = self._make_calls(self._channel)

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def _wait_ready(self, seconds: float) -> None:
        """Before a retry: a short pause, then up to `seconds` for the channel to
        (re)connect, so a server back from a restart is used at once."""
        time.sleep(min(seconds, 0.05))
        fut = grpc.channel_ready_future(self._channel)
        try:
            fut.result(timeout=max(0.0, seconds - 0.05))
        except grpc.FutureTimeoutError:
            pass
        finally:
            fut.cancel()

    def _call(self, name: str, req: Any, timeout: Optional[float], idempotent: bool) -> Any:
        t = self._deadline(timeout)
        end = None if t is None else time.monotonic() + t
        attempt = 0
        while True:
            left = None if end is None else max(0.0, end - time.monotonic())
            try:
                return self._calls[name](req, timeout=left, metadata=self._metadata)
            except grpc.RpcError as e:
                if idempotent and retryable(e) and attempt < self.retries:
                    pause = self._backoff(attempt)
                    if end is None or time.monotonic() + pause < end:
                        self._wait_ready(pause)
                        attempt += 1
                        continue
                raise from_rpc_error(e) from None

    # --------------------------------------------------------------- collections
    def create_collection(self, name: str, dim: int, metric: str = "l2", index: Any = "auto", *,
                          kind: Optional[str] = None, nlist: Optional[int] = None,
                          pq_m: Optional[int] = None, pq_nbits: Optional[int] = None,
                          refine: Optional[int] = None, shards: Optional[int] = None,
                          replicas: Optional[int] = None,
                          timeout: Optional[float] = None) -> CollectionInfo:
        """Creates a collection of dim-dimensional vectors. metric: "l2" (squared
        distance), "ip" (inner product) or "cosine". index: "auto" (exact while small,
        IVF once it grows), "flat", "ivf_flat", "ivf_pq", "ivf_sq8", "ivf_pq_fs", or a
        dict of IndexSpec fields; nlist/pq_m/pq_nbits/refine as keywords (0 = chosen).
        shards/replicas: more than 1 needs a cluster (FailedPrecondition on a single
        node). Raises AlreadyExists, InvalidArgument."""
        req = pb.CreateCollectionRequest(name=name, dim=int(dim), metric=codec.metric_of(metric),
                                         shards=int(shards or 0), replicas=int(replicas or 0))
        spec = codec.index_spec(index, kind, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine)
        if spec is not None:
            req.index.CopyFrom(spec)
        return codec.collection_of(self._call("create", req, timeout, False))

    def describe_collection(self, name: str, *, timeout: Optional[float] = None) -> CollectionInfo:
        """The collection's dimension, metric, item count and index state. Raises NotFound."""
        return codec.collection_of(self._call("describe", pb.DescribeCollectionRequest(name=name),
                                              timeout, True))

    def list_collections(self, *, timeout: Optional[float] = None) -> List[CollectionInfo]:
        """Every collection (those the API key may see), by name."""
        r = self._call("list", pb.ListCollectionsRequest(), timeout, True)
        return [codec.collection_of(c) for c in r.collections]

    def drop_collection(self, name: str, *, timeout: Optional[float] = None) -> None:
        """Deletes a collection and its items. Raises NotFound."""
        self._call("drop", pb.DropCollectionRequest(name=name), timeout, False)

    # --------------------------------------------------------------------- items
    def upsert(self, collection: str, ids: Ids, vectors: Vectors,
               attributes: AttributeRows = None, *, batch_bytes: int = DEFAULT_BATCH_BYTES,
               in_flight: int = DEFAULT_IN_FLIGHT, progress: bool = False,
               ack: str = "applied", timeout: Optional[float] = None) -> WriteResult:
        """Writes items: ids (n,) ints, vectors (n, dim) float16/32/64 (sent as float32),
        attributes None or one dict per row (str, int, float, bool, list of str values).
        An existing id is replaced (vector and attributes). Any number of rows: they go
        in calls of at most batch_bytes bytes, in_flight calls at a time, converted a
        batch at a time (memory stays bounded); progress=True draws a bar on stderr.
        timeout is each call's deadline. ack: "applied" (a search that starts after the
        return sees the rows) or "logged" (a cluster's log holds them; read them with
        after_token=result.write_token). Returns a WriteResult: an int, the items
        written, with the calls' write tokens.

        Not retried. On a refusal it waits for the calls in flight and raises the error
        class with the row, e.g. `row 4012 (id 4012): items[12].vector has 3 floats,
        collection "pins" has dim 4` (attributes .row, .id, .rows_acknowledged); calls
        before and beside the failed one may have been applied."""
        plan = codec.UpsertPlan(collection, ids, vectors, attributes, batch_bytes, ack)
        bar = Progress(progress, plan.n, 'upsert "%s"' % collection)
        tokens: Dict[int, bytes] = {}
        pending: Deque[Tuple[int, int, Any]] = deque()
        upserted = acknowledged = 0
        failure: Optional[Tuple[QuiverError, int, int]] = None
        fn = self._calls["upsert"]
        t = self._deadline(timeout)

        def finish(s: int, e: int, fut: Any) -> None:
            nonlocal upserted, acknowledged, failure
            try:
                r = fut.result()
                upserted += r.upserted
                tokens[s] = r.write_token
                acknowledged += e - s
                bar.update(e - s)
            except grpc.RpcError as err:
                if failure is None or s < failure[1]:
                    failure = (from_rpc_error(err), s, e)

        try:
            for s, e, payload in plan.batches():
                while len(pending) >= max(1, in_flight):
                    finish(*pending.popleft())
                if failure is not None:
                    break
                pending.append((s, e, fn.future(payload, timeout=t, metadata=self._metadata)))
        finally:
            while pending:
                finish(*pending.popleft())
            bar.close()
        if failure is not None:
            raise _upsert_error(failure[0], collection, failure[1], failure[2], plan.ids, acknowledged)
        return WriteResult(upserted, [tokens[s] for s in sorted(tokens)])

    def import_items(self, collection: str, batches: Iterable[Any], *,
                     batch_bytes: int = DEFAULT_BATCH_BYTES, progress: bool = False,
                     ack: str = "applied", timeout: Optional[float] = None) -> WriteResult:
        """Bulk load over one Import stream: batches is an iterable of (ids, vectors) or
        (ids, vectors, attributes) tuples or dicts with those keys, read lazily (a
        generator over files keeps memory flat). Each message is applied atomically and
        group-committed. A refused message ends the stream: the messages before it are
        kept, and the error's message says how many were committed. Not retried;
        timeout (default: none) bounds the whole stream; ack as for upsert. Returns a
        WriteResult: the items upserted, with the stream's write token."""
        bar = Progress(progress, None, 'import "%s"' % collection)

        def requests() -> Iterator[bytes]:
            for b in batches:
                if isinstance(b, Mapping):
                    ids, vecs, attrs = b["ids"], b["vectors"], b.get("attributes")
                else:
                    ids, vecs, attrs = (tuple(b) + (None,))[:3]
                plan = codec.UpsertPlan(collection, ids, vecs, attrs, batch_bytes, ack)
                for s, e, payload in plan.batches():
                    yield payload
                    bar.update(e - s)

        try:
            r = self._calls["import"](requests(), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, 'import into "%s": ' % collection) from None
        finally:
            bar.close()
        return WriteResult(r.upserted, [r.write_token])

    def get(self, collection: str, ids: Ids, *, with_vectors: bool = True,
            after_token: Optional[bytes] = None,
            timeout: Optional[float] = None) -> ItemList:
        """Items by id, in request order, with their vectors unless with_vectors=False;
        ids not found are left out and listed in the result's .missing_ids. after_token
        (a WriteResult's write_token): read only once that write is visible."""
        req = pb.GetItemsRequest(collection=collection, ids=codec.as_ids(ids).tolist(),
                                 with_vectors=with_vectors, after_token=after_token or b"")
        r = self._call("get", req, timeout, True)
        return ItemList([codec.item_of(i, with_vectors) for i in r.items], list(r.missing_ids))

    def delete(self, collection: str, ids: Ids, *, ack: str = "applied",
               timeout: Optional[float] = None) -> WriteResult:
        """Deletes items by id; returns how many existed (a WriteResult, with the write
        token; ack as for upsert). Not retried."""
        req = pb.DeleteItemsRequest(collection=collection, ids=codec.as_ids(ids).tolist(),
                                    ack=codec.choose("ack", ack, codec.ACKS))
        r = self._call("delete", req, timeout, False)
        return WriteResult(r.deleted, [r.write_token])

    def scan(self, collection: str, *, after_id: Optional[int] = None, limit: int = 0,
             with_vectors: bool = True, with_attributes: bool = True,
             timeout: Optional[float] = None) -> Iterator[Item]:
        """Every item in id order (ids greater than after_id when given; at most limit
        items, 0 = all), streamed from one snapshot. A stream broken by UNAVAILABLE is
        resumed after the last item seen (a new snapshot from there). timeout (default:
        none) bounds each stream."""
        last = after_id
        sent = 0
        attempt = 0
        while True:
            req = pb.ScanRequest(collection=collection, after_id=last or 0,
                                 limit=max(0, limit - sent) if limit else 0,
                                 with_vectors=with_vectors, without_attributes=not with_attributes)
            call = self._calls["scan"](req, timeout=timeout, metadata=self._metadata)
            try:
                for r in call:
                    for it in r.items:
                        if last is not None and it.id <= last:
                            continue
                        last = it.id
                        sent += 1
                        attempt = 0
                        yield codec.item_of(it, with_vectors)
                        if limit and sent >= limit:
                            return
                return
            except grpc.RpcError as e:
                if retryable(e) and attempt < self.retries:
                    self._wait_ready(self._backoff(attempt))
                    attempt += 1
                    continue
                raise from_rpc_error(e) from None
            finally:
                call.cancel()

    # -------------------------------------------------------------------- search
    def search(self, collection: str, query: Any, k: int = 10, *, filter: FilterArg = None,
               exclude_ids: Optional[Ids] = None, score_threshold: Optional[float] = None,
               group_by: Optional[str] = None, group_size: Optional[int] = None,
               mmr: Any = None, fusion: Optional[str] = None, rrf_k: Optional[int] = None,
               min_recall: Optional[float] = None, nprobe: Optional[int] = None,
               with_attributes: bool = True, with_vectors: bool = False,
               after_token: Optional[bytes] = None,
               timeout: Optional[float] = None) -> List[Hit]:
        """The k nearest items to query: a vector (1-D array-like) or the id of a stored
        item ("more like this": the item itself is left out). With fusion="rrf" or
        "max_score", query is a list of queries (ids and vectors) fused into one list.

        filter: an F expression or a dict in the proto's JSON mapping; exclude_ids: never
        returned; score_threshold: L2 keeps distance <= value, IP/COSINE score >= value;
        group_by/group_size: at most group_size hits per value of that attribute; mmr:
        diversity 0..1, or (diversity, candidates); min_recall / nprobe: the IVF depth;
        after_token: a write token (WriteResult.write_token) the answer must see.
        Returns Hits (id, score, attributes, vector when with_vectors) best first."""
        if fusion is not None and fusion != "none":
            queries = codec.queries_of(query)
        else:
            queries = [codec.query_of(query)]
        req = codec.search_request(collection, queries, k, mmr=mmr, fusion=fusion, rrf_k=rrf_k,
                                   filter=filter, exclude_ids=exclude_ids,
                                   score_threshold=score_threshold, group_by=group_by,
                                   group_size=group_size, nprobe=nprobe, min_recall=min_recall,
                                   with_attributes=with_attributes, with_vectors=with_vectors,
                                   after_token=after_token)
        r = self._call("search", req, timeout, True)
        return codec.hits_of(r.results[0]) if r.results else []

    @overload
    def search_batch(self, collection: str, queries: Any, k: int = ..., *, filter: FilterArg = ...,
                     exclude_ids: Optional[Ids] = ..., score_threshold: Optional[float] = ...,
                     group_by: Optional[str] = ..., group_size: Optional[int] = ...,
                     mmr: Any = ..., fusion: Optional[str] = ..., rrf_k: Optional[int] = ...,
                     min_recall: Optional[float] = ..., nprobe: Optional[int] = ...,
                     with_attributes: Literal[False] = ...,
                     after_token: Optional[bytes] = ...,
                     timeout: Optional[float] = ...) -> Tuple[npt.NDArray[Any], npt.NDArray[Any]]: ...

    @overload
    def search_batch(self, collection: str, queries: Any, k: int = ..., *, filter: FilterArg = ...,
                     exclude_ids: Optional[Ids] = ..., score_threshold: Optional[float] = ...,
                     group_by: Optional[str] = ..., group_size: Optional[int] = ...,
                     mmr: Any = ..., fusion: Optional[str] = ..., rrf_k: Optional[int] = ...,
                     min_recall: Optional[float] = ..., nprobe: Optional[int] = ...,
                     with_attributes: Literal[True],
                     after_token: Optional[bytes] = ...,
                     timeout: Optional[float] = ...
                     ) -> Tuple[npt.NDArray[Any], npt.NDArray[Any], List[List[Attributes]]]: ...

    def search_batch(self, collection: str, queries: Any, k: int = 10, *, filter: FilterArg = None,
                     exclude_ids: Optional[Ids] = None, score_threshold: Optional[float] = None,
                     group_by: Optional[str] = None, group_size: Optional[int] = None,
                     mmr: Any = None, fusion: Optional[str] = None, rrf_k: Optional[int] = None,
                     min_recall: Optional[float] = None, nprobe: Optional[int] = None,
                     with_attributes: bool = False,
                     after_token: Optional[bytes] = None,
                     timeout: Optional[float] = None) -> Any:
        """Many queries in one call: queries is an (nq, dim) array of vectors, a 1-D
        integer array of ids, or a list of ids and vectors. Returns (ids, scores):
        int64 and float32 arrays of shape (nq, k), best first, padded with -1 / nan where
        fewer than k match; with_attributes=True adds a third element, each query's hit
        attributes (a list of lists of dicts). Options as for search (with fusion the
        answer is one row)."""
        req = codec.search_request(collection, codec.queries_of(queries), k, mmr=mmr,
                                   fusion=fusion, rrf_k=rrf_k, filter=filter,
                                   exclude_ids=exclude_ids, score_threshold=score_threshold,
                                   group_by=group_by, group_size=group_size, nprobe=nprobe,
                                   min_recall=min_recall, with_attributes=with_attributes,
                                   with_vectors=False, after_token=after_token)
        ids, scores, attrs = codec.arrays_of(self._call("search", req, timeout, True), int(k),
                                             with_attributes)
        return (ids, scores, attrs) if with_attributes else (ids, scores)

    def recommend(self, collection: str, positive: Sequence[Any],
                  negative: Optional[Sequence[Any]] = None, *, strategy: str = "average_vector",
                  k: int = 10, filter: FilterArg = None, exclude_ids: Optional[Ids] = None,
                  score_threshold: Optional[float] = None, group_by: Optional[str] = None,
                  group_size: Optional[int] = None, min_recall: Optional[float] = None,
                  nprobe: Optional[int] = None, with_attributes: bool = True,
                  with_vectors: bool = False, after_token: Optional[bytes] = None,
                  timeout: Optional[float] = None) -> List[Hit]:
        """Items like the positive examples and unlike the negative ones. An example is
        an id, a vector (list or array), or a tuple (id or vector, weight > 0).
        strategy: "average_vector", "best_score" or "sum_scores" (README "Recommend").
        Example ids are never returned. Options as for search."""
        req = codec.recommend_request(collection, positive, negative, strategy, k, filter=filter,
                                      exclude_ids=exclude_ids, score_threshold=score_threshold,
                                      group_by=group_by, group_size=group_size, nprobe=nprobe,
                                      min_recall=min_recall, with_attributes=with_attributes,
                                      with_vectors=with_vectors, after_token=after_token)
        return codec.hits_of(self._call("recommend", req, timeout, True))

    def recommend_batch(self, collection: str, requests: Sequence[Mapping[str, Any]], *,
                        timeout: Optional[float] = None, **defaults: Any) -> List[List[Hit]]:
        """Several recommendations in one call: requests is a list of dicts of
        recommend()'s keywords (positive=, negative=, strategy=, k=, filter=, ...);
        defaults= keywords apply to every request that does not set them. Returns one
        list of Hits per request, in order."""
        reqs = []
        for i, r in enumerate(requests):
            kw: Dict[str, Any] = dict(_RECOMMEND_DEFAULTS)
            kw.update(defaults)
            kw.update(r)
            unknown = set(kw) - set(_RECOMMEND_DEFAULTS)
            if unknown:
                raise TypeError("requests[%d]: unknown keywords %s" % (i, sorted(unknown)))
            pos, neg, strat, k = kw.pop("positive"), kw.pop("negative"), kw.pop("strategy"), kw.pop("k")
            reqs.append(codec.recommend_request(collection, pos, neg, strat, k, **kw))
        resp = self._call("recommend_batch", pb.RecommendBatchRequest(requests=reqs), timeout, True)
        return [codec.hits_of(h) for h in resp.results]

    # --------------------------------------------------------------------- admin
    @overload
    def rebuild_index(self, collection: str, kind: Optional[str] = ..., *, nlist: Optional[int] = ...,
                      pq_m: Optional[int] = ..., pq_nbits: Optional[int] = ...,
                      refine: Optional[int] = ..., wait: Literal[True] = ..., progress: bool = ...,
                      timeout: Optional[float] = ...) -> IndexInfo: ...

    @overload
    def rebuild_index(self, collection: str, kind: Optional[str] = ..., *, nlist: Optional[int] = ...,
                      pq_m: Optional[int] = ..., pq_nbits: Optional[int] = ...,
                      refine: Optional[int] = ..., wait: Literal[False],
                      progress: bool = ..., timeout: Optional[float] = ...) -> Rebuild: ...

    def rebuild_index(self, collection: str, kind: Optional[str] = None, *,
                      nlist: Optional[int] = None, pq_m: Optional[int] = None,
                      pq_nbits: Optional[int] = None, refine: Optional[int] = None,
                      wait: bool = True, progress: bool = False,
                      timeout: Optional[float] = None) -> Union[IndexInfo, Rebuild]:
        """Rebuilds the collection's index in the background while it keeps serving;
        kind and the IVF/PQ keywords as in create_collection (None: the collection's own
        spec). wait=True blocks until done and returns the new IndexInfo; wait=False
        returns a Rebuild (iterate it for progress, .wait(), .cancel()). Raises
        FailedPrecondition when a rebuild is already running. Not retried; timeout
        (default: none) bounds the rebuild, and cancels it when it passes."""
        req = pb.RebuildIndexRequest(collection=collection)
        spec = codec.index_spec(None, kind, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine)
        if spec is not None:
            req.index.CopyFrom(spec)
        call = self._calls["rebuild"](req, timeout=timeout, metadata=self._metadata)
        rb = Rebuild(call, collection, Progress(progress, None, 'rebuild "%s"' % collection))
        return rb.wait() if wait else rb

    def backup(self, path: Union[str, "os.PathLike[str]", BinaryIO], *, progress: bool = False,
               timeout: Optional[float] = None) -> BackupInfo:
        """A hot backup of the whole server (every collection) as one tar archive,
        written to path (through path + ".part", renamed when complete) or to a binary
        file object. Restore: quiverd --restore FILE --data DIR. Retried on UNAVAILABLE
        before the first byte arrives. timeout (default: none) bounds the stream."""
        attempt = 0
        while True:
            try:
                return self._backup_once(path, progress, timeout)
            except _Retry as r:
                if attempt >= self.retries:
                    raise r.error from None
                self._wait_ready(self._backoff(attempt))
                attempt += 1

    def _backup_once(self, path: Any, progress: bool, timeout: Optional[float]) -> BackupInfo:
        call = self._calls["backup"](pb.BackupRequest(), timeout=timeout, metadata=self._metadata)
        own = not hasattr(path, "write")
        name = os.fspath(path) if own else getattr(path, "name", "<file>")
        tmp = str(name) + ".part"
        f: Any = open(tmp, "wb") if own else path
        bar = Progress(progress, None, "backup", unit="bytes")
        written = last_seq = 0
        try:
            for c in call:
                f.write(c.data)
                written += len(c.data)
                last_seq = c.last_seq
                bar.set(written, c.total_bytes or None)
            if own:
                f.flush()
                os.fsync(f.fileno())
                f.close()
                os.replace(tmp, name)
        except grpc.RpcError as e:
            if own:
                f.close()
                os.unlink(tmp)
            err = from_rpc_error(e, "backup: ")
            if retryable(e) and written == 0:
                raise _Retry(err) from None
            raise err from None
        except BaseException:
            if own:
                f.close()
                if os.path.exists(tmp):
                    os.unlink(tmp)
            raise
        finally:
            bar.close()
        return BackupInfo(str(name), written, last_seq)

    def cluster_status(self, *, timeout: Optional[float] = None) -> ClusterStatus:
        """The cluster's nodes, shards and replicas (Admin.ClusterStatus); a single node
        answers clustered=False."""
        return codec.cluster_of(self._call("cluster_status", pb.ClusterStatusRequest(), timeout, True))

    def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """grpc.health.v1 Check: "SERVING", "NOT_SERVING", "UNKNOWN" or "SERVICE_UNKNOWN"
        (service "" is the whole server). Open to callers without a key."""
        return str(self._call("health", codec.health_request(service), timeout, True))


class _Retry(Exception):
    def __init__(self, error: QuiverError) -> None:
        super().__init__(str(error))
        self.error = error


_RECOMMEND_DEFAULTS: Dict[str, Any] = dict(
    positive=(), negative=None, strategy="average_vector", k=10, filter=None, exclude_ids=None,
    score_threshold=None, group_by=None, group_size=None, min_recall=None, nprobe=None,
    with_attributes=True, with_vectors=False, after_token=None)
