"""Requests and replies: Python and numpy values to quiver.v1 messages and back, shared
by Client and AsyncClient (no I/O here).

Upserts are encoded straight to wire bytes with numpy (an UpsertRequest is a run of
`Item {id, packed floats, attribute entries}` records), so a million-row upsert costs
array copies, not a protobuf object per row; tests check the bytes parse to the same
message protobuf builds."""
from __future__ import annotations

import struct
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from . import filters
from ._pb import quiver_pb2 as pb
from .models import (Attributes, ClusterStatus, CollectionInfo, Hit, IndexInfo, Item, ItemList,
                     NodeStatus, RebuildProgress, ReplicaStatus, ShardStatus, WriteResult)

METRICS = {"l2": pb.L2, "ip": pb.INNER_PRODUCT, "inner_product": pb.INNER_PRODUCT,
           "cosine": pb.COSINE}
METRIC_NAMES = {pb.L2: "l2", pb.INNER_PRODUCT: "ip", pb.COSINE: "cosine"}
STRATEGIES = {"average_vector": pb.AVERAGE_VECTOR, "best_score": pb.BEST_SCORE,
              "sum_scores": pb.SUM_SCORES}
FUSIONS = {"none": pb.FUSION_NONE, "rrf": pb.RRF, "max_score": pb.MAX_SCORE}
ACKS = {"applied": pb.ACK_APPLIED, "logged": pb.ACK_LOGGED}
MAX_ID = (1 << 63) - 1
MAX_ROWS_PER_CALL = 100_000          # the server's limit of items in one call


# ------------------------------------------------------------------- plain values
def varint(v: int) -> bytes:
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _ld(tag: int, b: bytes) -> bytes:
    """A length-delimited field: tag byte, length, bytes."""
    return bytes((tag,)) + varint(len(b)) + b


def metric_of(metric: Any) -> Any:
    if isinstance(metric, str) and metric.lower() in METRICS:
        return METRICS[metric.lower()]
    if isinstance(metric, int) and metric in METRIC_NAMES:
        return metric
    raise ValueError("metric %r: want \"l2\", \"ip\" or \"cosine\"" % (metric,))


def choose(name: str, v: Any, table: Mapping[str, Any]) -> Any:
    if isinstance(v, str) and v.lower() in table:
        return table[v.lower()]
    raise ValueError("%s %r: want one of %s" % (name, v, ", ".join(sorted(table))))


def index_spec(index: Any, kind: Optional[str] = None, **params: Optional[int]) -> Optional[pb.IndexSpec]:
    """index= (a kind string, a dict of IndexSpec fields, or None) plus keywords."""
    spec: Dict[str, Any] = {}
    if isinstance(index, str):
        spec["kind"] = index
    elif isinstance(index, Mapping):
        spec.update(index)
    elif index is not None:
        raise TypeError("index must be a kind (\"auto\", \"flat\", \"ivf_flat\", \"ivf_pq\", "
                        "\"ivf_sq8\", \"ivf_pq_fs\") or a dict of IndexSpec fields")
    if kind is not None:
        spec["kind"] = kind
    spec.update({k: v for k, v in params.items() if v is not None})
    if not spec:
        return None
    if spec.get("kind") == "auto":
        spec["kind"] = ""
    try:
        return pb.IndexSpec(**spec)
    except (ValueError, TypeError) as e:
        raise ValueError("index spec %r: %s" % (spec, e)) from None


def as_ids(ids: Any, what: str = "ids") -> npt.NDArray[Any]:
    """ids as a 1-D uint64 array (0 .. 2^63-1; the server checks the top bit)."""
    if isinstance(ids, (int, np.integer)):
        ids = [ids]
    a = np.asarray(ids)
    if a.ndim != 1:
        raise ValueError("%s must be 1-D, got shape %s" % (what, a.shape))
    if a.size == 0:
        return a.astype(np.uint64)
    if a.dtype.kind == "u":
        return a.astype(np.uint64, copy=False)
    if a.dtype.kind == "i":
        if (a < 0).any():
            i = int(np.argmax(a < 0))
            raise ValueError("%s[%d] is %d: ids are 0 .. 2^63-1" % (what, i, int(a[i])))
        return a.astype(np.uint64)
    if a.dtype == object:
        try:
            return np.array([int(x) for x in a], dtype=np.uint64)
        except (OverflowError, TypeError, ValueError) as e:
            raise ValueError("%s: %s (ids are ints 0 .. 2^63-1)" % (what, e)) from None
    raise TypeError("%s must be integers, got dtype %s" % (what, a.dtype))


def as_matrix(vectors: Any, what: str = "vectors") -> npt.NDArray[Any]:
    """vectors as an (n, d) numeric array, not yet converted to float32 (that happens a
    batch at a time, so a float64 million-row array is not copied whole)."""
    a = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise ValueError("%s must be (n, dim), got shape %s" % (what, a.shape))
    if a.dtype.kind not in "fiu":
        raise TypeError("%s must be numbers (float16/32/64), got dtype %s" % (what, a.dtype))
    return a


def f32(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.ascontiguousarray(a, dtype="<f4")


def vector_of(v: Any, what: str = "vector") -> List[float]:
    a = np.asarray(v, dtype=np.float32)
    if a.ndim != 1:
        raise ValueError("%s must be 1-D, got shape %s" % (what, a.shape))
    return a.tolist()  # type: ignore[no-any-return]


# ------------------------------------------------------------ attributes on the wire
def _value_bytes(v: Any, where: str) -> bytes:
    if isinstance(v, (bool, np.bool_)):
        return b"\x20\x01" if v else b"\x20\x00"
    if isinstance(v, (int, np.integer)):
        iv = int(v)
        if not -(1 << 63) <= iv < (1 << 63):
            raise ValueError("%s: %d does not fit in int64" % (where, iv))
        return b"\x10" + varint(iv & 0xFFFFFFFFFFFFFFFF)
    if isinstance(v, (float, np.floating)):
        return b"\x19" + struct.pack("<d", float(v))
    if isinstance(v, str):
        return _ld(0x0A, v.encode("utf-8"))
    if isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
        return _ld(0x2A, b"".join(_ld(0x0A, s.encode("utf-8")) for s in v))
    raise TypeError("%s is %r (%s); attributes are str, int, float, bool or a list of str"
                    % (where, v, type(v).__name__))


class AttrEncoder:
    """Item.attributes map entries as bytes, cached per (key, type, value): the same
    "lang": "en" on a million rows is encoded once."""

    def __init__(self) -> None:
        self.cache: Dict[Tuple[str, type, Any], bytes] = {}

    def entry(self, k: Any, v: Any, row: int) -> bytes:
        t = type(v)
        ck = (k, t, tuple(v) if t is list else v)
        try:
            return self.cache[ck]
        except KeyError:
            pass
        except TypeError:  # unhashable: encoded below and not cached
            ck = None  # type: ignore[assignment]
        if not isinstance(k, str):
            raise TypeError("row %d: attribute key %r is not a str" % (row, k))
        where = "row %d: attribute %r" % (row, k)
        e = _ld(0x1A, _ld(0x0A, k.encode("utf-8")) + _ld(0x12, _value_bytes(v, where)))
        if ck is not None:
            if len(self.cache) > 200_000:
                self.cache.clear()
            self.cache[ck] = e
        return e

    def encode(self, attrs: Optional[Mapping[str, Any]], row: int) -> bytes:
        if not attrs:
            return b""
        if not isinstance(attrs, Mapping):
            raise TypeError("row %d: attributes must be a dict, got %s" % (row, type(attrs).__name__))
        return b"".join([self.entry(k, v, row) for k, v in attrs.items()])


# ----------------------------------------------------------------- upsert on the wire
def _varints(v: npt.NDArray[Any]) -> Tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """uint64 values -> (n, 10) uint8 varint bytes, (n,) lengths."""
    n = v.shape[0]
    lens = np.ones(n, dtype=np.int64)
    for j in range(1, 10):
        lens += v >= np.uint64(1 << (7 * j))
    m = np.empty((n, 10), dtype=np.uint8)
    for j in range(10):
        byte = ((v >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        m[:, j] = byte | ((lens > j + 1).astype(np.uint8) << 7)
    return m, lens


def _item_block(out: npt.NDArray[Any], ids_vi: npt.NDArray[Any], ilen: int, xb: npt.NDArray[Any],
                body_len: int) -> None:
    """Fills out (m, T) with framed items whose id varints all have ilen bytes:
    0x12 len | 0x08 id | 0x12 4d floats."""
    nb = xb.shape[1]
    c = 0
    for part in (b"\x12" + varint(body_len), b"\x08"):
        out[:, c:c + len(part)] = np.frombuffer(part, dtype=np.uint8)
        c += len(part)
    out[:, c:c + ilen] = ids_vi[:, :ilen]
    c += ilen
    vp = b"\x12" + varint(nb)
    out[:, c:c + len(vp)] = np.frombuffer(vp, dtype=np.uint8)
    c += len(vp)
    out[:, c:] = xb


def ack_field(ack: str) -> bytes:
    """UpsertRequest.ack (field 3) as wire bytes; nothing for the default (applied)."""
    v = int(choose("ack", ack, ACKS))
    return b"\x18" + varint(v) if v else b""


def encode_upsert(collection: bytes, ids: npt.NDArray[Any], x: npt.NDArray[Any],
                  attrs: Optional[Sequence[bytes]] = None, extra: bytes = b"") -> bytes:
    """The UpsertRequest {collection, items} for rows ids (uint64) and x ((m, d) '<f4',
    C order) as wire bytes; attrs: each row's encoded attribute entries (AttrEncoder);
    extra: more fields, already encoded (ack_field)."""
    m, d = x.shape
    nb = 4 * d
    xb = x.view(np.uint8).reshape(m, nb)
    head = _ld(0x0A, collection) + extra
    vi, lens = _varints(ids)
    vp_len = 1 + len(varint(nb))
    if attrs is not None and any(attrs):
        parts = [head]
        rows = {}
        for L in np.unique(lens).tolist():          # bodies without attributes, per id width
            sel = np.nonzero(lens == L)[0]
            body = 1 + L + vp_len + nb
            blk = np.empty((sel.size, body), dtype=np.uint8)
            blk[:, 0] = 0x08
            blk[:, 1:1 + L] = vi[sel, :L]
            blk[:, 1 + L:1 + L + vp_len] = np.frombuffer(b"\x12" + varint(nb), dtype=np.uint8)
            blk[:, 1 + L + vp_len:] = xb[sel]
            raw = blk.tobytes()
            for j, r in enumerate(sel.tolist()):
                rows[r] = raw[j * body:(j + 1) * body]
        for r in range(m):
            core, a = rows[r], attrs[r]
            parts.append(b"\x12" + varint(len(core) + len(a)))
            parts.append(core)
            parts.append(a)
        return b"".join(parts)
    uniq = np.unique(lens).tolist()
    frames = {L: (1 + L + vp_len + nb) for L in uniq}
    widths = {L: 1 + len(varint(b)) + b for L, b in frames.items()}
    if len(uniq) == 1:                               # every row the same size: one block
        L = uniq[0]
        buf = np.empty(len(head) + m * widths[L], dtype=np.uint8)
        buf[:len(head)] = np.frombuffer(head, dtype=np.uint8)
        _item_block(buf[len(head):].reshape(m, widths[L]), vi, L, xb, frames[L])
        return buf.tobytes()
    rowlen = np.zeros(m, dtype=np.int64)
    for L in uniq:
        rowlen[lens == L] = widths[L]
    starts = len(head) + np.cumsum(rowlen) - rowlen
    buf = np.empty(len(head) + int(rowlen.sum()), dtype=np.uint8)
    buf[:len(head)] = np.frombuffer(head, dtype=np.uint8)
    for L in uniq:                                   # blocks per id width, scattered in order
        sel = np.nonzero(lens == L)[0]
        w = widths[L]
        blk = np.empty((sel.size, w), dtype=np.uint8)
        _item_block(blk, vi[sel], L, xb[sel], frames[L])
        buf[starts[sel][:, None] + np.arange(w)] = blk
    return buf.tobytes()


class UpsertPlan:
    """Cuts rows (ids, vectors, attributes) into UpsertRequests of at most batch_bytes
    bytes and MAX_ROWS_PER_CALL rows; batches() yields (first row, end row, bytes)."""

    def __init__(self, collection: str, ids: Any, vectors: Any,
                 attributes: Optional[Sequence[Optional[Mapping[str, Any]]]],
                 batch_bytes: int, ack: str = "applied") -> None:
        self.collection = collection.encode("utf-8")
        self.ids = as_ids(ids)
        self.x = as_matrix(vectors)
        n = self.ids.shape[0]
        if self.x.shape[0] != n:
            raise ValueError("%d ids but %d vectors" % (n, self.x.shape[0]))
        if attributes is not None and len(attributes) != n:
            raise ValueError("%d ids but %d attribute rows" % (n, len(attributes)))
        if batch_bytes < 1024:
            raise ValueError("batch_bytes %d: want at least 1024" % batch_bytes)
        self.attributes = attributes
        self.batch_bytes = batch_bytes
        self.n = n
        self.enc = AttrEncoder()
        self.extra = ack_field(ack)

    def batches(self) -> Iterator[Tuple[int, int, bytes]]:
        n, d = self.x.shape
        row = 4 * d + 24
        cap = max(1, min(MAX_ROWS_PER_CALL, self.batch_bytes // row))
        s = 0
        while s < n:
            if self.attributes is None:
                e = min(n, s + cap)
                attrs = None
            else:
                attrs, size, e = [], 0, s
                while e < n and e - s < MAX_ROWS_PER_CALL:
                    a = self.enc.encode(self.attributes[e], e)
                    if e > s and size + row + len(a) > self.batch_bytes:
                        break
                    attrs.append(a)
                    size += row + len(a)
                    e += 1
            yield s, e, encode_upsert(self.collection, self.ids[s:e], f32(self.x[s:e]), attrs,
                                      self.extra)
            s = e


# ------------------------------------------------------ collection and item requests
def _set_index(req: Any, index: Any, kind: Optional[str], **params: Optional[int]) -> None:
    """req.index from index= / kind= and the IVF/PQ keywords (left unset when none given)."""
    spec = index_spec(index, kind, **params)
    if spec is not None:
        req.index.CopyFrom(spec)


def create_request(name: str, dim: int, metric: Any, index: Any, *, kind: Optional[str],
                   nlist: Optional[int], pq_m: Optional[int], pq_nbits: Optional[int],
                   refine: Optional[int], shards: Optional[int],
                   replicas: Optional[int]) -> pb.CreateCollectionRequest:
    """create_collection()'s request."""
    req = pb.CreateCollectionRequest(name=name, dim=int(dim), metric=metric_of(metric),
                                     shards=int(shards or 0), replicas=int(replicas or 0))
    _set_index(req, index, kind, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine)
    return req


def rebuild_request(collection: str, kind: Optional[str], *, nlist: Optional[int],
                    pq_m: Optional[int], pq_nbits: Optional[int],
                    refine: Optional[int]) -> pb.RebuildIndexRequest:
    """rebuild_index()'s request (no kind nor keywords: the collection's own spec)."""
    req = pb.RebuildIndexRequest(collection=collection)
    _set_index(req, None, kind, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine)
    return req


def get_request(collection: str, ids: Any, with_vectors: bool,
                after_token: Optional[bytes]) -> pb.GetItemsRequest:
    return pb.GetItemsRequest(collection=collection, ids=as_ids(ids).tolist(),
                              with_vectors=with_vectors, after_token=after_token or b"")


def delete_request(collection: str, ids: Any, ack: str) -> pb.DeleteItemsRequest:
    return pb.DeleteItemsRequest(collection=collection, ids=as_ids(ids).tolist(),
                                 ack=choose("ack", ack, ACKS))


# ------------------------------------------------------------------ search requests
def query_of(q: Any, what: str = "query") -> pb.Query:
    """An id (int) or a vector."""
    if isinstance(q, (int, np.integer)) and not isinstance(q, (bool, np.bool_)):
        return pb.Query(id=int(q))
    return pb.Query(vector=pb.Vector(values=vector_of(q, what)))


def queries_of(queries: Any) -> List[pb.Query]:
    """A 2-D array of vectors, a 1-D integer array of ids, or a list of ids and vectors."""
    if isinstance(queries, np.ndarray):
        if queries.ndim == 2:
            q32 = f32(queries)
            return [pb.Query(vector=pb.Vector(values=r)) for r in q32.tolist()]
        if queries.ndim == 1 and queries.dtype.kind in "iu":
            return [pb.Query(id=int(i)) for i in queries.tolist()]
        if queries.ndim == 1:
            return [query_of(queries)]
        raise ValueError("queries must be (nq, dim), got shape %s" % (queries.shape,))
    return [query_of(q, "queries[%d]" % i) for i, q in enumerate(queries)]


def example_of(e: Any, what: str) -> pb.Example:
    """An id, a vector, or (id or vector, weight)."""
    weight = 0.0
    if isinstance(e, tuple):
        if len(e) != 2:
            raise ValueError("%s: a tuple is (id or vector, weight), got %r" % (what, e))
        e, weight = e
    if isinstance(e, (int, np.integer)) and not isinstance(e, (bool, np.bool_)):
        return pb.Example(id=int(e), weight=float(weight))
    return pb.Example(vector=pb.Vector(values=vector_of(e, what)), weight=float(weight))


def common_options(req: Any, *, filter: Any, exclude_ids: Any, score_threshold: Optional[float],
                   group_by: Optional[str], group_size: Optional[int], nprobe: Optional[int],
                   min_recall: Optional[float], with_attributes: bool, with_vectors: bool,
                   after_token: Optional[bytes] = None) -> None:
    """Options SearchRequest and RecommendRequest share, set on req."""
    if after_token:
        req.after_token = bytes(after_token)
    if filter is not None:
        req.filter.CopyFrom(filters.to_filter(filter))
    if exclude_ids is not None:
        req.exclude_ids.extend(as_ids(exclude_ids, "exclude_ids").tolist())
    if score_threshold is not None:
        req.score_threshold.value = float(score_threshold)
    if group_by:
        req.group_by = group_by
    if group_size:
        req.group_size = int(group_size)
    if nprobe:
        req.nprobe = int(nprobe)
    if min_recall:
        req.min_recall = float(min_recall)
    req.without_attributes = not with_attributes
    req.with_vectors = bool(with_vectors)


def search_request(collection: str, queries: List[pb.Query], k: int, *, mmr: Any,
                   fusion: Optional[str], rrf_k: Optional[int], **common: Any) -> pb.SearchRequest:
    req = pb.SearchRequest(collection=collection, queries=queries, k=int(k))
    common_options(req, **common)
    if mmr is not None:
        if isinstance(mmr, Mapping):
            req.mmr.diversity = float(mmr.get("diversity", 0.0))
            req.mmr.candidates = int(mmr.get("candidates", 0))
        elif isinstance(mmr, tuple):
            req.mmr.diversity, req.mmr.candidates = float(mmr[0]), int(mmr[1])
        else:
            req.mmr.diversity = float(mmr)
            req.mmr.SetInParent()
    if fusion is not None:
        req.fusion = choose("fusion", fusion, FUSIONS)
    if rrf_k:
        req.rrf_k = int(rrf_k)
    return req


def recommend_request(collection: str, positive: Iterable[Any], negative: Optional[Iterable[Any]],
                      strategy: str, k: int, **common: Any) -> pb.RecommendRequest:
    req = pb.RecommendRequest(collection=collection, k=int(k),
                              strategy=choose("strategy", strategy, STRATEGIES))
    req.positive.extend(example_of(e, "positive[%d]" % i) for i, e in enumerate(positive))
    req.negative.extend(example_of(e, "negative[%d]" % i) for i, e in enumerate(negative or ()))
    common_options(req, **common)
    return req


def query_request(collection: str, query: Any, k: int, *, fusion: Optional[str],
                  **options: Any) -> pb.SearchRequest:
    """search()'s request: one query (an id or a vector), or with fusion ("rrf",
    "max_score") a list of queries fused into one answer; options as search_request."""
    if fusion is not None and fusion != "none":
        queries = queries_of(query)
    else:
        queries = [query_of(query)]
    return search_request(collection, queries, k, fusion=fusion, **options)


# recommend()'s keywords and defaults: what one request of recommend_batch() may set
RECOMMEND_DEFAULTS: Dict[str, Any] = dict(
    positive=(), negative=None, strategy="average_vector", k=10, filter=None, exclude_ids=None,
    score_threshold=None, group_by=None, group_size=None, min_recall=None, nprobe=None,
    with_attributes=True, with_vectors=False, after_token=None)


def recommend_batch_request(collection: str, requests: Sequence[Mapping[str, Any]],
                            defaults: Mapping[str, Any]) -> pb.RecommendBatchRequest:
    """recommend_batch()'s request: each of requests (recommend()'s keywords) over
    defaults over recommend()'s own defaults; TypeError names an unknown keyword."""
    reqs = []
    for i, r in enumerate(requests):
        kw: Dict[str, Any] = dict(RECOMMEND_DEFAULTS)
        kw.update(defaults)
        kw.update(r)
        unknown = set(kw) - set(RECOMMEND_DEFAULTS)
        if unknown:
            raise TypeError("requests[%d]: unknown keywords %s" % (i, sorted(unknown)))
        pos, neg, strat, k = kw.pop("positive"), kw.pop("negative"), kw.pop("strategy"), kw.pop("k")
        reqs.append(recommend_request(collection, pos, neg, strat, k, **kw))
    return pb.RecommendBatchRequest(requests=reqs)


# -------------------------------------------------------------------------- replies
def attrs_of(m: Any) -> Attributes:
    return {k: filters.from_value(v) for k, v in m.items()}


def hits_of(hits: pb.Hits) -> List[Hit]:
    out = []
    for h in hits.hits:
        vec = np.array(h.vector.values, dtype=np.float32) if h.HasField("vector") else None
        out.append(Hit(h.id, h.score, attrs_of(h.attributes) if h.attributes else {}, vec))
    return out


def item_of(it: pb.Item, with_vectors: bool) -> Item:
    vec = np.array(it.vector, dtype=np.float32) if with_vectors else None
    return Item(it.id, vec, attrs_of(it.attributes) if it.attributes else {})


def first_hits_of(resp: pb.SearchResponse) -> List[Hit]:
    """search()'s answer: the hits of the one query (or of the fused queries)."""
    return hits_of(resp.results[0]) if resp.results else []


def hit_lists_of(resp: pb.SearchResponse) -> List[List[Hit]]:
    """One list of Hits per query (recommend_batch)."""
    return [hits_of(h) for h in resp.results]


def item_list_of(resp: pb.GetItemsResponse, with_vectors: bool) -> ItemList:
    return ItemList([item_of(i, with_vectors) for i in resp.items], list(resp.missing_ids))


def upserted_of(resp: pb.UpsertResponse) -> WriteResult:
    """An Import stream's answer: the items upserted, with the stream's write token."""
    return WriteResult(resp.upserted, [resp.write_token])


def deleted_of(resp: pb.DeleteItemsResponse) -> WriteResult:
    return WriteResult(resp.deleted, [resp.write_token])


def arrays_of(resp: pb.SearchResponse, k: int,
              with_attributes: bool) -> Tuple[npt.NDArray[Any], npt.NDArray[Any], List[List[Attributes]]]:
    nq = len(resp.results)
    width = max([k] + [len(r.hits) for r in resp.results])
    ids = np.full((nq, width), -1, dtype=np.int64)
    scores = np.full((nq, width), np.nan, dtype=np.float32)
    attrs: List[List[Attributes]] = []
    for i, r in enumerate(resp.results):
        m = len(r.hits)
        if m:
            ids[i, :m] = [h.id for h in r.hits]
            scores[i, :m] = [h.score for h in r.hits]
        if with_attributes:
            attrs.append([attrs_of(h.attributes) for h in r.hits])
    return ids, scores, attrs


def batch_of(resp: pb.SearchResponse, k: int, with_attributes: bool) -> Any:
    """search_batch()'s answer: (ids, scores), or (ids, scores, attributes)."""
    ids, scores, attrs = arrays_of(resp, k, with_attributes)
    return (ids, scores, attrs) if with_attributes else (ids, scores)


def collections_of(resp: pb.ListCollectionsResponse) -> List[CollectionInfo]:
    return [collection_of(c) for c in resp.collections]


def index_info_of(m: pb.IndexInfo) -> IndexInfo:
    from google.protobuf import json_format
    return IndexInfo(kind=m.kind, trained=m.trained, count=m.count, nlist=m.nlist,
                     default_nprobe=m.default_nprobe, trained_for=m.trained_for,
                     rebuilding=m.rebuilding, phase=m.phase,
                     spec=json_format.MessageToDict(m.spec, preserving_proto_field_name=True),
                     covered_seq=m.covered_seq,
                     recall_table=[(p.recall, p.nprobe) for p in m.recall_table],
                     pq_m=m.pq_m, pq_nbits=m.pq_nbits, refine=m.refine,
                     rebuild_done=m.rebuild_done, rebuild_total=m.rebuild_total, raw=m)


def collection_of(m: pb.CollectionInfo) -> CollectionInfo:
    return CollectionInfo(name=m.name, dim=m.dim, metric=METRIC_NAMES.get(m.metric, str(m.metric)),
                          count=m.count, last_seq=m.last_seq, index=index_info_of(m.index),
                          shards=m.shards or 1, replicas=m.replicas or 1, raw=m)


REPLICA_STATES = {pb.REPLICA_ACTIVE: "active", pb.REPLICA_CATCHING_UP: "catching_up",
                  pb.REPLICA_DOWN: "down"}


def cluster_of(m: pb.ClusterStatusResponse) -> ClusterStatus:
    return ClusterStatus(
        clustered=m.clustered,
        nodes=[NodeStatus(n.id, n.address, n.alive) for n in m.nodes],
        shards=[ShardStatus(s.collection, s.shard, s.log_last_seq,
                            [ReplicaStatus(r.node, REPLICA_STATES.get(r.state, str(r.state)),
                                           r.applied_seq) for r in s.replicas])
                for s in m.shards], raw=m)


def progress_of(m: pb.RebuildProgress) -> RebuildProgress:
    return RebuildProgress(m.phase, m.done, m.total, m.elapsed_seconds,
                           index_info_of(m.index) if m.HasField("index") else None)


# grpc.health.v1 by hand (two one-field messages): no second generated module
HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def health_request(service: str) -> bytes:
    return _ld(0x0A, service.encode("utf-8")) if service else b""


def health_reply(b: bytes) -> str:
    status, i = 0, 0
    while i < len(b):
        tag = b[i]
        i += 1
        if tag == 0x08:
            shift = 0
            status = 0
            while True:
                c = b[i]
                i += 1
                status |= (c & 0x7F) << shift
                shift += 7
                if not c & 0x80:
                    break
        else:
            break
    return HEALTH_STATUS.get(status, str(status))


def split_upsert_error(msg: str, first: int, ids: npt.NDArray[Any]) -> Tuple[Optional[int], str]:
    """The server names items[i] in an UpsertRequest; that is row first + i."""
    import re
    mm = re.search(r"items\[(\d+)\]", msg)
    if not mm:
        return None, msg
    return first + int(mm.group(1)), msg
