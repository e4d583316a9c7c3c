import os, sys, threading, time, numpy as np
sys.path.insert(0, os.environ.get("QUIVER_PY", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../build/py")))
import grpc
from quiver.v1 import quiver_pb2 as pb, quiver_pb2_grpc as rpc
addr, secs, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def fvecs(p):
    a = np.fromfile(p, dtype=np.int32); d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].view(np.float32)
q = fvecs(os.path.join(os.environ.get("DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../shared/data/glove-100")), "query.fvecs"))
q = q[np.random.default_rng(42).permutation(len(q))[:1000]]  # a random sample (the file is in word-frequency order)
f = None
if mode == "corr":
    f = pb.Filter(must=[pb.Condition(field=pb.FieldCondition(key="cluster", any_of=pb.ValueList(values=[pb.Value(int_value=i) for i in range(6)])))])
elif mode == "indep":
    f = pb.Filter(must=[pb.Condition(field=pb.FieldCondition(key="sel", range=pb.Range(upper=pb.Bound(value=5000, inclusive=False))))])
units = []
for lo in range(0, 1000, 100):
    r = pb.SearchRequest(collection="bench_glove-100", k=100, queries=[pb.Query(vector=pb.Vector(values=v.tolist())) for v in q[lo:lo+100]])
    if f is not None: r.filter.CopyFrom(f)
    units.append(r.SerializeToString())
n = [0]
def work():
    ch = grpc.insecure_channel(addr); call = ch.unary_unary('/quiver.v1.Search/Search')
    t0 = time.time(); i = 0
    while time.time() - t0 < secs:
        call(units[i % len(units)]); i += 1
    n[0] += i * 100
th = [threading.Thread(target=work) for _ in range(2)]
t0 = time.time()
[t.start() for t in th]; [t.join() for t in th]
print(mode, "qps", n[0] / (time.time() - t0))
