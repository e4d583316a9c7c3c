"""AsyncClient: the same methods as Client on grpc.aio, as coroutines (scan is an async
iterator). Create it inside the running event loop."""
from __future__ import annotations

import asyncio
import os
import time
from typing import (Any, AsyncIterator, Dict, Iterable, List, Literal, Mapping, Optional,
                    Sequence, Set, Tuple, Union, overload)

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt

from . import _codec as codec
from ._base import DEFAULT_BATCH_BYTES, DEFAULT_IN_FLIGHT, Base, PathOrBytes, retryable
from ._pb import quiver_pb2 as pb
from ._progress import Progress
from .client import _RECOMMEND_DEFAULTS, AttributeRows, FilterArg, Ids, _upsert_error
from .errors import QuiverError, from_rpc_error
from .models import (BackupInfo, ClusterStatus, CollectionInfo, Hit, IndexInfo, ItemList, Item,
                     RebuildProgress, WriteResult)


class AsyncRebuild:
    """A running AsyncClient.rebuild_index(wait=False): `async for` its RebuildProgress
    reports, `await wait()` for the new IndexInfo, cancel() to stop it."""

    def __init__(self, call: Any, collection: str, progress: Progress) -> None:
        self._call = call
        self._collection = collection
        self._progress = progress
        self.index: Optional[IndexInfo] = None

    async def __aiter__(self) -> AsyncIterator[RebuildProgress]:
        try:
            async for m in self._call:
                p = codec.progress_of(m)
                self._progress.set(p.done, p.total or None,
                                   'rebuild "%s": %s' % (self._collection, p.phase))
                if p.index is not None:
                    self.index = p.index
                yield p
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        finally:
            self._progress.close()

    async def wait(self) -> IndexInfo:
        async for _ in self:
            pass
        if self.index is None:
            raise QuiverError('rebuild of "%s" ended without a "done" report' % self._collection)
        return self.index

    def cancel(self) -> None:
        self._call.cancel()


class AsyncClient(Base):
    """Client's twin on grpc.aio: `qv = AsyncClient(addr, ...)`, then `await qv.search(...)`.
    Same arguments, defaults, retries and errors as Client; see its docstrings."""

    def __init__(self, address: str = "127.0.0.1:50051", api_key: Optional[str] = None, *,
                 tls: bool = False, ca: Optional[PathOrBytes] = None,
                 cert: Optional[PathOrBytes] = None, key: Optional[PathOrBytes] = None,
                 tls_server_name: Optional[str] = None, timeout: Optional[float] = 30.0,
                 retries: int = 8, options: Optional[Sequence[Tuple[str, Any]]] = None) -> None:
        super().__init__(address, api_key, tls=tls, ca=ca, cert=cert, key=key,
                         tls_server_name=tls_server_name, timeout=timeout, retries=retries,
                         options=options)
        if self._creds is not None:
            self._channel = grpc.aio.secure_channel(address, self._creds, options=self._options)
        else:
            self._channel = grpc.aio.insecure_channel(address, options=self._options)
        self._calls = self._make_calls(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _wait_ready(self, seconds: float) -> None:
        """See Client._wait_ready."""
        await asyncio.sleep(min(seconds, 0.05))
        try:
            await asyncio.wait_for(self._channel.channel_ready(), max(0.0, seconds - 0.05))
        except asyncio.TimeoutError:
            pass

    async def _call(self, name: str, req: Any, timeout: Optional[float], idempotent: bool) -> Any:
        t = self._deadline(timeout)
        end = None if t is None else time.monotonic() + t
        attempt = 0
        while True:
            left = None if end is None else max(0.0, end - time.monotonic())
            try:
                return await self._calls[name](req, timeout=left, metadata=self._metadata)
            except grpc.RpcError as e:
                if idempotent and retryable(e) and attempt < self.retries:
                    pause = self._backoff(attempt)
                    if end is None or time.monotonic() + pause < end:
                        await self._wait_ready(pause)
                        attempt += 1
                        continue
                raise from_rpc_error(e) from None

    # --------------------------------------------------------------- collections
    async def create_collection(self, name: str, dim: int, metric: str = "l2", index: Any = "auto", *,
                                kind: Optional[str] = None, nlist: Optional[int] = None,
                                pq_m: Optional[int] = None, pq_nbits: Optional[int] = None,
                                refine: Optional[int] = None, shards: Optional[int] = None,
                                replicas: Optional[int] = None,
                                timeout: Optional[float] = None) -> CollectionInfo:
        """See Client.create_collection."""
        req = pb.CreateCollectionRequest(name=name, dim=int(dim), metric=codec.metric_of(metric),
                                         shards=int(shards or 0), replicas=int(replicas or 0))
        spec = codec.index_spec(index, kind, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine)
        if spec is not None:
            req.index.CopyFrom(spec)
        return codec.collection_of(await self._call("create", req, timeout, False))

    async def describe_collection(self, name: str, *, timeout: Optional[float] = None) -> CollectionInfo:
        """See Client.describe_collection."""
        return codec.collection_of(await self._call(
            "describe", pb.DescribeCollectionRequest(name=name), timeout, True))

    async def list_collections(self, *, timeout: Optional[float] = None) -> List[CollectionInfo]:
        """See Client.list_collections."""
        r = await self._call("list", pb.ListCollectionsRequest(), timeout, True)
        return [codec.collection_of(c) for c in r.collections]

    async def drop_collection(self, name: str, *, timeout: Optional[float] = None) -> None:
        """See Client.drop_collection."""
        await self._call("drop", pb.DropCollectionRequest(name=name), timeout, False)

    # --------------------------------------------------------------------- items
    async def upsert(self, collection: str, ids: Ids, vectors: Any,
                     attributes: AttributeRows = None, *, batch_bytes: int = DEFAULT_BATCH_BYTES,
                     in_flight: int = DEFAULT_IN_FLIGHT, progress: bool = False,
                     ack: str = "applied", timeout: Optional[float] = None) -> WriteResult:
        """See Client.upsert (batches encoded on the event loop between sends)."""
        plan = codec.UpsertPlan(collection, ids, vectors, attributes, batch_bytes, ack)
        bar = Progress(progress, plan.n, 'upsert "%s"' % collection)
        tokens: Dict[int, bytes] = {}
        fn = self._calls["upsert"]
        t = self._deadline(timeout)
        pending: Set["asyncio.Task[Any]"] = set()
        rows: Dict["asyncio.Task[Any]", Tuple[int, int]] = {}
        upserted = acknowledged = 0
        failure: Optional[Tuple[QuiverError, int, int]] = None

        def finish(done: Iterable["asyncio.Task[Any]"]) -> None:
            nonlocal upserted, acknowledged, failure
            for task in done:
                s, e = rows.pop(task)
                err = task.exception()
                if err is None:
                    r = task.result()
                    upserted += r.upserted
                    tokens[s] = r.write_token
                    acknowledged += e - s
                    bar.update(e - s)
                elif isinstance(err, grpc.RpcError):
                    if failure is None or s < failure[1]:
                        failure = (from_rpc_error(err), s, e)
                else:
                    raise err

        try:
            for s, e, payload in plan.batches():
                while len(pending) >= max(1, in_flight):
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    finish(done)
                if failure is not None:
                    break
                task = asyncio.ensure_future(fn(payload, timeout=t, metadata=self._metadata))
                rows[task] = (s, e)
                pending.add(task)
                await asyncio.sleep(0)
        finally:
            if pending:
                done, _ = await asyncio.wait(pending)
                finish(done)
            bar.close()
        if failure is not None:
            raise _upsert_error(failure[0], collection, failure[1], failure[2], plan.ids, acknowledged)
        return WriteResult(upserted, [tokens[s] for s in sorted(tokens)])

    async def import_items(self, collection: str, batches: Iterable[Any], *,
                           batch_bytes: int = DEFAULT_BATCH_BYTES, progress: bool = False,
                           ack: str = "applied", timeout: Optional[float] = None) -> WriteResult:
        """See Client.import_items (batches: a plain iterable)."""
        bar = Progress(progress, None, 'import "%s"' % collection)

        async def requests() -> AsyncIterator[bytes]:
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
            r = await self._calls["import"](requests(), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, 'import into "%s": ' % collection) from None
        finally:
            bar.close()
        return WriteResult(r.upserted, [r.write_token])

    async def get(self, collection: str, ids: Ids, *, with_vectors: bool = True,
                  after_token: Optional[bytes] = None,
                  timeout: Optional[float] = None) -> ItemList:
        """See Client.get."""
        req = pb.GetItemsRequest(collection=collection, ids=codec.as_ids(ids).tolist(),
                                 with_vectors=with_vectors, after_token=after_token or b"")
        r = await self._call("get", req, timeout, True)
        return ItemList([codec.item_of(i, with_vectors) for i in r.items], list(r.missing_ids))

    async def delete(self, collection: str, ids: Ids, *, ack: str = "applied",
                     timeout: Optional[float] = None) -> WriteResult:
        """See Client.delete."""
        req = pb.DeleteItemsRequest(collection=collection, ids=codec.as_ids(ids).tolist(),
                                    ack=codec.choose("ack", ack, codec.ACKS))
        r = await self._call("delete", req, timeout, False)
        return WriteResult(r.deleted, [r.write_token])

    async def scan(self, collection: str, *, after_id: Optional[int] = None, limit: int = 0,
                   with_vectors: bool = True, with_attributes: bool = True,
                   timeout: Optional[float] = None) -> AsyncIterator[Item]:
        """See Client.scan: `async for item in qv.scan(...)`."""
        last = after_id
        sent = 0
        attempt = 0
        while True:
            req = pb.ScanRequest(collection=collection, after_id=last or 0,
                                 limit=max(0, limit - sent) if limit else 0,
                                 with_vectors=with_vectors, without_attributes=not with_attributes)
            call = self._calls["scan"](req, timeout=timeout, metadata=self._metadata)
            try:
                async for r in call:
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
                    await self._wait_ready(self._backoff(attempt))
                    attempt += 1
                    continue
                raise from_rpc_error(e) from None
            finally:
                call.cancel()

    # -------------------------------------------------------------------- search
    async def search(self, collection: str, query: Any, k: int = 10, *, filter: FilterArg = None,
                     exclude_ids: Optional[Ids] = None, score_threshold: Optional[float] = None,
                     group_by: Optional[str] = None, group_size: Optional[int] = None,
                     mmr: Any = None, fusion: Optional[str] = None, rrf_k: Optional[int] = None,
                     min_recall: Optional[float] = None, nprobe: Optional[int] = None,
                     with_attributes: bool = True, with_vectors: bool = False,
                     after_token: Optional[bytes] = None,
                     timeout: Optional[float] = None) -> List[Hit]:
        """See Client.search."""
        queries = (codec.queries_of(query) if fusion is not None and fusion != "none"
                   else [codec.query_of(query)])
        req = codec.search_request(collection, queries, k, mmr=mmr, fusion=fusion, rrf_k=rrf_k,
                                   filter=filter, exclude_ids=exclude_ids,
                                   score_threshold=score_threshold, group_by=group_by,
                                   group_size=group_size, nprobe=nprobe, min_recall=min_recall,
                                   with_attributes=with_attributes, with_vectors=with_vectors,
                                   after_token=after_token)
        r = await self._call("search", req, timeout, True)
        return codec.hits_of(r.results[0]) if r.results else []

    async def search_batch(self, collection: str, queries: Any, k: int = 10, *,
                           filter: FilterArg = None, exclude_ids: Optional[Ids] = None,
                           score_threshold: Optional[float] = None, group_by: Optional[str] = None,
                           group_size: Optional[int] = None, mmr: Any = None,
                           fusion: Optional[str] = None, rrf_k: Optional[int] = None,
                           min_recall: Optional[float] = None, nprobe: Optional[int] = None,
                           with_attributes: bool = False,
                           after_token: Optional[bytes] = None,
                           timeout: Optional[float] = None) -> Any:
        """See Client.search_batch: (ids, scores) arrays, or (ids, scores, attributes)."""
        req = codec.search_request(collection, codec.queries_of(queries), k, mmr=mmr,
                                   fusion=fusion, rrf_k=rrf_k, filter=filter,
                                   exclude_ids=exclude_ids, score_threshold=score_threshold,
                                   group_by=group_by, group_size=group_size, nprobe=nprobe,
                                   min_recall=min_recall, with_attributes=with_attributes,
                                   with_vectors=False, after_token=after_token)
        ids, scores, attrs = codec.arrays_of(await self._call("search", req, timeout, True), int(k),
                                             with_attributes)
        return (ids, scores, attrs) if with_attributes else (ids, scores)

    async def recommend(self, collection: str, positive: Sequence[Any],
                        negative: Optional[Sequence[Any]] = None, *,
                        strategy: str = "average_vector", k: int = 10, filter: FilterArg = None,
                        exclude_ids: Optional[Ids] = None, score_threshold: Optional[float] = None,
                        group_by: Optional[str] = None, group_size: Optional[int] = None,
                        min_recall: Optional[float] = None, nprobe: Optional[int] = None,
                        with_attributes: bool = True, with_vectors: bool = False,
                        after_token: Optional[bytes] = None,
                        timeout: Optional[float] = None) -> List[Hit]:
        """See Client.recommend."""
        req = codec.recommend_request(collection, positive, negative, strategy, k, filter=filter,
                                      exclude_ids=exclude_ids, score_threshold=score_threshold,
                                      group_by=group_by, group_size=group_size, nprobe=nprobe,
                                      min_recall=min_recall, with_attributes=with_attributes,
                                      with_vectors=with_vectors, after_token=after_token)
        return codec.hits_of(await self._call("recommend", req, timeout, True))

    async def recommend_batch(self, collection: str, requests: Sequence[Mapping[str, Any]], *,
                              timeout: Optional[float] = None, **defaults: Any) -> List[List[Hit]]:
        """See Client.recommend_batch."""
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
        resp = await self._call("recommend_batch", pb.RecommendBatchRequest(requests=reqs), timeout, True)
        return [codec.hits_of(h) for h in resp.results]

    # --------------------------------------------------------------------- admin
    @overload
    async def rebuild_index(self, collection: str, kind: Optional[str] = ..., *,
                            nlist: Optional[int] = ..., pq_m: Optional[int] = ...,
                            pq_nbits: Optional[int] = ..., refine: Optional[int] = ...,
                            wait: Literal[True] = ..., progress: bool = ...,
                            timeout: Optional[float] = ...) -> IndexInfo: ...

    @overload
    async def rebuild_index(self, collection: str, kind: Optional[str] = ..., *,
                            nlist: Optional[int] = ..., pq_m: Optional[int] = ...,
                            pq_nbits: Optional[int] = ..., refine: Optional[int] = ...,
                            wait: Literal[False], progress: bool = ...,
                            timeout: Optional[float] = ...) -> "AsyncRebuild": ...

    async def rebuild_index(self, collection: str, kind: Optional[str] = None, *,
                            nlist: Optional[int] = None, pq_m: Optional[int] = None,
                            pq_nbits: Optional[int] = None, refine: Optional[int] = None,
                            wait: bool = True, progress: bool = False,
                            timeout: Optional[float] = None) -> Union[IndexInfo, "AsyncRebuild"]:
        """See Client.rebuild_index; wait=False gives an AsyncRebuild (`async for` its
        progress, `await .wait()`, `.cancel()`)."""
        req = pb.RebuildIndexRequest(collection=collection)
        spec = codec.index_spec(None, kind, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine)
        if spec is not None:
            req.index.CopyFrom(spec)
        call = self._calls["rebuild"](req, timeout=timeout, metadata=self._metadata)
        rb = AsyncRebuild(call, collection, Progress(progress, None, 'rebuild "%s"' % collection))
        return await rb.wait() if wait else rb

    async def backup(self, path: Any, *, progress: bool = False,
                     timeout: Optional[float] = None) -> BackupInfo:
        """See Client.backup (the file is written on the event loop's thread)."""
        attempt = 0
        while True:
            call = self._calls["backup"](pb.BackupRequest(), timeout=timeout, metadata=self._metadata)
            own = not hasattr(path, "write")
            name = os.fspath(path) if own else getattr(path, "name", "<file>")
            tmp = str(name) + ".part"
            f: Any = open(tmp, "wb") if own else path
            bar = Progress(progress, None, "backup", unit="bytes")
            written = last_seq = 0
            try:
                async for c in call:
                    f.write(c.data)
                    written += len(c.data)
                    last_seq = c.last_seq
                    bar.set(written, c.total_bytes or None)
                if own:
                    f.flush()
                    os.fsync(f.fileno())
                    f.close()
                    os.replace(tmp, name)
                return BackupInfo(str(name), written, last_seq)
            except grpc.RpcError as e:
                if own:
                    f.close()
                    os.unlink(tmp)
                if retryable(e) and written == 0 and attempt < self.retries:
                    await self._wait_ready(self._backoff(attempt))
                    attempt += 1
                    continue
                raise from_rpc_error(e, "backup: ") from None
            finally:
                bar.close()

    async def cluster_status(self, *, timeout: Optional[float] = None) -> ClusterStatus:
        """See Client.cluster_status."""
        return codec.cluster_of(await self._call("cluster_status", pb.ClusterStatusRequest(),
                                                 timeout, True))

    async def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """See Client.health."""
        return str(await self._call("health", codec.health_request(service), timeout, True))


_ = np  # numpy is part of the signatures' contract (arrays in and out)
