#!/usr/bin/python3
"""Writes the seed corpora of tests/fuzz (run from the repository with build/py
generated: /usr/bin/python3 tests/fuzz/make_seeds.py). Kept for the record; the seeds
are committed."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "build", "py"))
from quiver.v1 import quiver_pb2 as pb  # noqa: E402

C = os.path.join(HERE, "corpus")


def put(kind, name, data):
    with open(os.path.join(C, kind, name), "wb") as f:
        f.write(data)


def item(i, vec, attrs):
    it = pb.Item(id=i, vector=vec)
    for k, v in attrs.items():
        if isinstance(v, str):
            it.attributes[k].string_value = v
        elif isinstance(v, bool):
            it.attributes[k].bool_value = v
        elif isinstance(v, int):
            it.attributes[k].int_value = v
        elif isinstance(v, float):
            it.attributes[k].double_value = v
        else:
            it.attributes[k].string_list.values.extend(v)
    return it


# request: first byte = type (0 upsert, 1 search, 2 create, 3 get, 4 delete, 5 rebuild)
up = pb.UpsertRequest(collection="pins", items=[
    item(1, [1, 0, 0, 0], {"lang": "en", "n": 3, "p": 9.5, "ok": True, "tags": ["a", "bé"]}),
    item(2, [0.5, 0.5, 0, 0], {"lang": "日本"})])
put("request", "upsert", b"\x00" + up.SerializeToString())
se = pb.SearchRequest(collection="pins", k=10, nprobe=4, min_recall=0.9, queries=[
    pb.Query(vector=pb.Vector(values=[1, 2, 3, 4])), pb.Query(id=7)])
put("request", "search", b"\x01" + se.SerializeToString())
cr = pb.CreateCollectionRequest(name="pins", dim=4, metric=pb.COSINE,
                                index=pb.IndexSpec(kind="ivf_pq_fs", nlist=16, pq_m=2, refine=4))
put("request", "create", b"\x02" + cr.SerializeToString())
put("request", "get", b"\x03" + pb.GetItemsRequest(collection="pins", ids=[1, 2, 2],
                                                      with_vectors=True).SerializeToString())
put("request", "delete", b"\x04" + pb.DeleteItemsRequest(collection="pins", ids=[5]).SerializeToString())
put("request", "rebuild", b"\x05" + pb.RebuildIndexRequest(
    collection="pins", index=pb.IndexSpec(kind="ivf_flat", nlist=8)).SerializeToString())

# codec: an attribute blob (u32 count, then u16 key length, key, u8 type, value)
def blob(entries):
    out = struct.pack("<I", len(entries))
    for k, t, v in entries:
        out += struct.pack("<H", len(k)) + k + bytes([t]) + v
    return out


s = lambda b: struct.pack("<I", len(b)) + b  # noqa: E731
attrs = blob([(b"lang", 1, s(b"en")), (b"n", 2, struct.pack("<q", -3)),
              (b"p", 3, struct.pack("<d", 9.5)), (b"ok", 4, b"\x01"),
              (b"tags", 5, struct.pack("<I", 2) + s(b"a") + s(b"b"))])
put("codec", "attrs", attrs)
vec = struct.pack("<4f", 1, 0, 0.5, -1)
rec = bytes([1, 0, 0, 0]) + struct.pack("<IQ", 4, 42) + vec + struct.pack("<I", len(attrs)) + attrs
put("codec", "item", rec)
put("codec", "item_noattrs", bytes([1, 0, 0, 0]) + struct.pack("<IQ", 4, 7) + vec + struct.pack("<I", 0))

# wire: query count, hit count, then 12 bytes a hit (id, score) and attribute bytes
put("wire", "hits", bytes([2, 5]) + b"".join(struct.pack("<Qf", i * 977, 0.1 * i) + bytes([3, 2, 65, 66])
                                             for i in range(5)))
put("wire", "empty", bytes([0, 0]))

# ixfile: the header of a real index file, and a whole small one
fx = os.path.join(HERE, "..", "fixtures", "pre-faiss-1.15", "data", "indexes", "2.qvi")
with open(fx, "rb") as f:
    put("ixfile", "header", f.read(512))
