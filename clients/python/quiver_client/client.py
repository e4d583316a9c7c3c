"""The synchronous client: one object per server, thread-safe (one gRPC channel)."""
from __future__ import annotations

import os
import time
from collections import deque
from typing import (Any, BinaryIO, Deque, Iterable, Iterator, List, Literal, Mapping, Optional,
                    Sequence, Tuple, Union, overload)

import grpc
import numpy.typing as npt

from . import _codec as codec
from ._base import (DEFAULT_BATCH_BYTES, DEFAULT_IN_FLIGHT, AttributeRows, BackupFile, Base,
                    FilterArg, Ids, RebuildBase, Scan, Upsert, Vectors, import_requests)
from ._pb import quiver_pb2 as pb
from ._progress import Progress
from .errors import from_rpc_error
from .models import (Attributes, BackupInfo, ClusterStatus, CollectionInfo, Hit, IndexInfo, ItemList, Item,
                     WriteResult,
                    RebuildProgress)


class Rebuild(RebuildBase):
    """A running rebuild_index(wait=False): iterate for RebuildProgress reports, wait()
    for the new IndexInfo, cancel() to stop it (the old index keeps serving)."""

    def __iter__(self) -> Iterator[RebuildProgress]:
        try:
            for m in self._call:
                yield self._report(m)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        finally:
            self._progress.close()

    def wait(self) -> IndexInfo:
        """Blocks until the rebuild is done; returns the new index."""
        for _ in self:
            pass
        return self._result()


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
        retry = self._retry(self._deadline(timeout), idempotent)
        while True:
            try:
                return self._invoke(name, req, retry.left())
            except grpc.RpcError as e:
                self._wait_ready(retry.pause(e))

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
        req = codec.create_request(name, dim, metric, index, kind=kind, nlist=nlist, pq_m=pq_m,
                                   pq_nbits=pq_nbits, refine=refine, shards=shards,
                                   replicas=replicas)
        return codec.collection_of(self._call("create", req, timeout, False))

    def describe_collection(self, name: str, *, timeout: Optional[float] = None) -> CollectionInfo:
        """The collection's dimension, metric, item count and index state. Raises NotFound."""
        return codec.collection_of(self._call("describe", pb.DescribeCollectionRequest(name=name),
                                              timeout, True))

    def list_collections(self, *, timeout: Optional[float] = None) -> List[CollectionInfo]:
        """Every collection (those the API key may see), by name."""
        return codec.collections_of(self._call("list", pb.ListCollectionsRequest(), timeout, True))

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
        up = Upsert(collection, ids, vectors, attributes, batch_bytes, ack, progress)
        pending: Deque[Tuple[int, int, Any]] = deque()
        fn = self._calls["upsert"]
        t = self._deadline(timeout)

        def finish(s: int, e: int, fut: Any) -> None:
            try:
                up.answered(s, e, fut.result())
            except grpc.RpcError as err:
                up.refused(s, e, err)

        try:
            for s, e, payload in up.batches():
                while len(pending) >= max(1, in_flight):
                    finish(*pending.popleft())
                if up.failure is not None:
                    break
                pending.append((s, e, fn.future(payload, timeout=t, metadata=self._metadata)))
        finally:
            while pending:
                finish(*pending.popleft())
            up.close()
        return up.result()

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
        requests = import_requests(collection, batches, batch_bytes, ack, bar)
        try:
            r = self._invoke("import", requests, timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e, 'import into "%s": ' % collection) from None
        finally:
            bar.close()
        return codec.upserted_of(r)

    def get(self, collection: str, ids: Ids, *, with_vectors: bool = True,
            after_token: Optional[bytes] = None,
            timeout: Optional[float] = None) -> ItemList:
        """Items by id, in request order, with their vectors unless with_vectors=False;
        ids not found are left out and listed in the result's .missing_ids. after_token
        (a WriteResult's write_token): read only once that write is visible."""
        req = codec.get_request(collection, ids, with_vectors, after_token)
        return codec.item_list_of(self._call("get", req, timeout, True), with_vectors)

    def delete(self, collection: str, ids: Ids, *, ack: str = "applied",
               timeout: Optional[float] = None) -> WriteResult:
        """Deletes items by id; returns how many existed (a WriteResult, with the write
        token; ack as for upsert). Not retried."""
        req = codec.delete_request(collection, ids, ack)
        return codec.deleted_of(self._call("delete", req, timeout, False))

    def scan(self, collection: str, *, after_id: Optional[int] = None, limit: int = 0,
             with_vectors: bool = True, with_attributes: bool = True,
             timeout: Optional[float] = None) -> Iterator[Item]:
        """Every item in id order (ids greater than after_id when given; at most limit
        items, 0 = all), streamed from one snapshot. A stream broken by UNAVAILABLE is
        resumed after the last item seen (a new snapshot from there). timeout (default:
        none) bounds each stream."""
        scan = Scan(collection, after_id, limit, with_vectors, with_attributes, self.retries)
        while True:
            call = self._invoke("scan", scan.request(), timeout)
            try:
                for r in call:
                    yield from scan.items(r)
                    if scan.done:
                        return
                return
            except grpc.RpcError as e:
                self._wait_ready(scan.retry.pause(e))
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
        req = codec.query_request(collection, query, k, mmr=mmr, fusion=fusion, rrf_k=rrf_k,
                                  filter=filter, exclude_ids=exclude_ids,
                                  score_threshold=score_threshold, group_by=group_by,
                                  group_size=group_size, nprobe=nprobe, min_recall=min_recall,
                                  with_attributes=with_attributes, with_vectors=with_vectors,
                                  after_token=after_token)
        return codec.first_hits_of(self._call("search", req, timeout, True))

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
        return codec.batch_of(self._call("search", req, timeout, True), int(k), with_attributes)

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
        req = codec.recommend_batch_request(collection, requests, defaults)
        return codec.hit_lists_of(self._call("recommend_batch", req, timeout, True))

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
        req = codec.rebuild_request(collection, kind, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits,
                                    refine=refine)
        call = self._invoke("rebuild", req, timeout)
        rb = Rebuild(call, collection, Progress(progress, None, 'rebuild "%s"' % collection))
        return rb.wait() if wait else rb

    def backup(self, path: Union[str, "os.PathLike[str]", BinaryIO], *, progress: bool = False,
               timeout: Optional[float] = None) -> BackupInfo:
        """A hot backup of the whole server (every collection) as one tar archive,
        written to path (through path + ".part", renamed when complete) or to a binary
        file object. Restore: quiverd --restore FILE --data DIR. Retried on UNAVAILABLE
        before the first byte arrives. timeout (default: none) bounds the stream."""
        retry = self._retry(prefix="backup: ")
        while True:
            call = self._invoke("backup", pb.BackupRequest(), timeout)
            out = BackupFile(path, progress)
            try:
                for c in call:
                    out.write(c)
                return out.finish()
            except grpc.RpcError as e:
                out.discard()
                pause = retry.pause(e, out.written == 0)
            except BaseException:
                out.discard()
                raise
            finally:
                out.close()
            self._wait_ready(pause)             # only a retried failure gets here

    def cluster_status(self, *, timeout: Optional[float] = None) -> ClusterStatus:
        """The cluster's nodes, shards and replicas (Admin.ClusterStatus); a single node
        answers clustered=False."""
        return codec.cluster_of(self._call("cluster_status", pb.ClusterStatusRequest(), timeout, True))

    def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """grpc.health.v1 Check: "SERVING", "NOT_SERVING", "UNKNOWN" or "SERVICE_UNKNOWN"
        (service "" is the whole server). Open to callers without a key."""
        return str(self._call("health", codec.health_request(service), timeout, True))

