"""AsyncClient: the same methods as Client on grpc.aio, as coroutines (scan is an async
iterator). Create it inside the running event loop."""
from __future__ import annotations

import asyncio
from typing import (Any, AsyncIterator, Dict, Iterable, List, Literal, Mapping, Optional,
                    Sequence, Set, Tuple, Union, overload)

import grpc
import grpc.aio

from . import _codec as codec
from ._base import (DEFAULT_BATCH_BYTES, DEFAULT_IN_FLIGHT, AttributeRows, BackupFile, Base,
                    FilterArg, Ids, RebuildBase, Scan, Upsert, import_requests)
from ._pb import quiver_pb2 as pb
from ._progress import Progress
from .errors import from_rpc_error
from .models import (BackupInfo, ClusterStatus, CollectionInfo, Hit, IndexInfo, ItemList, Item,
                     RebuildProgress, WriteResult)


class AsyncRebuild(RebuildBase):
    """A running AsyncClient.rebuild_index(wait=False): `async for` its RebuildProgress
    reports, `await wait()` for the new IndexInfo, cancel() to stop it."""

    async def __aiter__(self) -> AsyncIterator[RebuildProgress]:
        try:
            async for m in self._call:
                yield self._report(m)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        finally:
            self._progress.close()

    async def wait(self) -> IndexInfo:
        async for _ in self:
            pass
        return self._result()


class AsyncClient(Base):
    """Client's twin on grpc.aio: `qv = AsyncClient(addr, ...)`, then `await qv.search(...)`.
    Same arguments, defaults, retries and errors as Client; see its docstrings."""

    _grpc = grpc.aio

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
        retry = self._retry(self._deadline(timeout), idempotent)
        while True:
            try:
                return await self._invoke(name, req, retry.left())
            except grpc.RpcError as e:
                await self._wait_ready(retry.pause(e))

    # --------------------------------------------------------------- collections
    async def create_collection(self, name: str, dim: int, metric: str = "l2", index: Any = "auto", *,
                                kind: Optional[str] = None, nlist: Optional[int] = None,
                                pq_m: Optional[int] = None, pq_nbits: Optional[int] = None,
                                refine: Optional[int] = None, shards: Optional[int] = None,
                                replicas: Optional[int] = None,
                                timeout: Optional[float] = None) -> CollectionInfo:
        """See Client.create_collection."""
        req = codec.create_request(name, dim, metric, index, kind=kind, nlist=nlist, pq_m=pq_m,
                                   pq_nbits=pq_nbits, refine=refine, shards=shards,
                                   replicas=replicas)
        return codec.collection_of(await self._call("create", req, timeout, False))

    async def describe_collection(self, name: str, *, timeout: Optional[float] = None) -> CollectionInfo:
        """See Client.describe_collection."""
        return codec.collection_of(await self._call(
            "describe", pb.DescribeCollectionRequest(name=name), timeout, True))

    async def list_collections(self, *, timeout: Optional[float] = None) -> List[CollectionInfo]:
        """See Client.list_collections."""
        resp = await self._call("list", pb.ListCollectionsRequest(), timeout, True)
        return codec.collections_of(resp)

    async def drop_collection(self, name: str, *, timeout: Optional[float] = None) -> None:
        """See Client.drop_collection."""
        await self._call("drop", pb.DropCollectionRequest(name=name), timeout, False)

    # --------------------------------------------------------------------- items
    async def upsert(self, collection: str, ids: Ids, vectors: Any,
                     attributes: AttributeRows = None, *, batch_bytes: int = DEFAULT_BATCH_BYTES,
                     in_flight: int = DEFAULT_IN_FLIGHT, progress: bool = False,
                     ack: str = "applied", timeout: Optional[float] = None) -> WriteResult:
        """See Client.upsert (batches encoded on the event loop between sends)."""
        up = Upsert(collection, ids, vectors, attributes, batch_bytes, ack, progress)
        fn = self._calls["upsert"]
        t = self._deadline(timeout)
        pending: Set["asyncio.Task[Any]"] = set()
        rows: Dict["asyncio.Task[Any]", Tuple[int, int]] = {}

        def finish(done: Iterable["asyncio.Task[Any]"]) -> None:
            for task in done:
                s, e = rows.pop(task)
                err = task.exception()
                if err is None:
                    up.answered(s, e, task.result())
                elif isinstance(err, grpc.RpcError):
                    up.refused(s, e, err)
                else:
                    raise err

        try:
            for s, e, payload in up.batches():
                while len(pending) >= max(1, in_flight):
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    finish(done)
                if up.failure is not None:
                    break
                task = asyncio.ensure_future(fn(payload, timeout=t, metadata=self._metadata))
                rows[task] = (s, e)
                pending.add(task)
                await asyncio.sleep(0)
        finally:
            if pending:
                done, _ = await asyncio.wait(pending)
                finish(done)
            up.close()
        return up.result()

    async def import_items(self, collection: str, batches: Iterable[Any], *,
                           batch_bytes: int = DEFAULT_BATCH_BYTES, progress: bool = False,
                           ack: str = "applied", timeout: Optional[float] = None) -> WriteResult:
        """See Client.import_items (batches: a plain iterable)."""
        bar = Progress(progress, None, 'import "%s"' % collection)

        async def requests() -> AsyncIterator[bytes]:
            for payload in import_requests(collection, batches, batch_bytes, ack, bar):
                yield payload

        try:
            r = await self._invoke("import", requests(), timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e, 'import into "%s": ' % collection) from None
        finally:
            bar.close()
        return codec.upserted_of(r)

    async def get(self, collection: str, ids: Ids, *, with_vectors: bool = True,
                  after_token: Optional[bytes] = None,
                  timeout: Optional[float] = None) -> ItemList:
        """See Client.get."""
        req = codec.get_request(collection, ids, with_vectors, after_token)
        return codec.item_list_of(await self._call("get", req, timeout, True), with_vectors)

    async def delete(self, collection: str, ids: Ids, *, ack: str = "applied",
                     timeout: Optional[float] = None) -> WriteResult:
        """See Client.delete."""
        req = codec.delete_request(collection, ids, ack)
        return codec.deleted_of(await self._call("delete", req, timeout, False))

    async def scan(self, collection: str, *, after_id: Optional[int] = None, limit: int = 0,
                   with_vectors: bool = True, with_attributes: bool = True,
                   timeout: Optional[float] = None) -> AsyncIterator[Item]:
        """See Client.scan: `async for item in qv.scan(...)`."""
        scan = Scan(collection, after_id, limit, with_vectors, with_attributes, self.retries)
        while True:
            call = self._invoke("scan", scan.request(), timeout)
            try:
                async for r in call:
                    for item in scan.items(r):
                        yield item
                    if scan.done:
                        return
                return
            except grpc.RpcError as e:
                await self._wait_ready(scan.retry.pause(e))
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
        req = codec.query_request(collection, query, k, mmr=mmr, fusion=fusion, rrf_k=rrf_k,
                                  filter=filter, exclude_ids=exclude_ids,
                                  score_threshold=score_threshold, group_by=group_by,
                                  group_size=group_size, nprobe=nprobe, min_recall=min_recall,
                                  with_attributes=with_attributes, with_vectors=with_vectors,
                                  after_token=after_token)
        return codec.first_hits_of(await self._call("search", req, timeout, True))

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
        return codec.batch_of(await self._call("search", req, timeout, True), int(k),
                              with_attributes)

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
        req = codec.recommend_batch_request(collection, requests, defaults)
        return codec.hit_lists_of(await self._call("recommend_batch", req, timeout, True))

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
        req = codec.rebuild_request(collection, kind, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits,
                                    refine=refine)
        call = self._invoke("rebuild", req, timeout)
        rb = AsyncRebuild(call, collection, Progress(progress, None, 'rebuild "%s"' % collection))
        return await rb.wait() if wait else rb

    async def backup(self, path: Any, *, progress: bool = False,
                     timeout: Optional[float] = None) -> BackupInfo:
        """See Client.backup (the file is written on the event loop's thread)."""
        retry = self._retry(prefix="backup: ")
        while True:
            call = self._invoke("backup", pb.BackupRequest(), timeout)
            out = BackupFile(path, progress)
            try:
                async for c in call:
                    out.write(c)
                return out.finish()
            except grpc.RpcError as e:
                out.discard()
                pause = retry.pause(e, out.written == 0)
            except BaseException:               # cancelled, or the file failed: no .part left
                out.discard()
                raise
            finally:
                out.close()
            await self._wait_ready(pause)       # only a retried failure gets here

    async def cluster_status(self, *, timeout: Optional[float] = None) -> ClusterStatus:
        """See Client.cluster_status."""
        return codec.cluster_of(await self._call("cluster_status", pb.ClusterStatusRequest(),
                                                 timeout, True))

    async def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """See Client.health."""
        return str(await self._call("health", codec.health_request(service), timeout, True))

