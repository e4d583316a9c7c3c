"""Smoke test of the benchmark (tools/quiver-bench + quiver-bench-load) on a tiny data set.

A synthetic L2 set (2,000 clustered vectors, dim 16, 40 queries, exact ground truth) is
written to a temp folder in the layout of ../shared/data; the benchmark runs on it end to
end (import, two index specs with in-process FAISS, both client modes, restart, hnswlib)
and its outputs are checked for form, not speed: no timed assertions here.
"""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("QUIVER_BIN") or os.path.join(REPO, "build")
QUIVERD = os.environ.get("QUIVERD") or os.path.join(BUILD, "quiverd")
BENCH = os.path.join(REPO, "tools", "quiver-bench")
LOADER = os.path.join(BUILD, "quiver-bench-load")

N_BASE, N_QUERY, DIM = 2000, 40, 16


def write_vecs(path, a):
    a = np.asarray(a)
    out = np.empty((a.shape[0], a.shape[1] + 1), dtype=np.int32)
    out[:, 0] = a.shape[1]
    out[:, 1:] = a.view(np.int32) if a.dtype == np.float32 else a.astype(np.int32)
    out.tofile(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench-data") / "tiny-euclidean"
    d.mkdir()
    rng = np.random.RandomState(7)
    centers = rng.normal(0, 4, (20, DIM))
    pts = centers[rng.randint(0, 20, N_BASE + N_QUERY)] + rng.normal(0, 1, (N_BASE + N_QUERY, DIM))
    pts = pts.astype(np.float32)
    base, queries = pts[:N_BASE], pts[N_BASE:]
    dist = ((queries.astype(np.float64)[:, None, :] - base.astype(np.float64)[None, :, :]) ** 2).sum(-1)
    gt = np.argsort(dist, axis=1, kind="stable")[:, :100].astype(np.int32)
    write_vecs(str(d / "base.fvecs"), base)
    write_vecs(str(d / "query.fvecs"), queries)
    write_vecs(str(d / "groundtruth.ivecs"), gt)
    with open(d / "base_words.txt", "w") as f:
        f.writelines("w%d\n" % i for i in range(N_BASE))
    return str(d)


def run_bench(dataset, tmp_path, args, need=()):
    """quiver-bench on the tiny data set into tmp_path/out with args; fails unless it exits
    0. need: more binaries of this build it must find. Returns (stdout, out folder)."""
    for path in (QUIVERD, LOADER) + tuple(need):
        if not os.access(path, os.X_OK):   # built by this project: missing is a failure
            pytest.fail("%s is not built" % path, pytrace=False)
    out = tmp_path / "out"
    cmd = [sys.executable, BENCH, "--data", dataset, "--build", BUILD, "--quiverd", QUIVERD,
           "--out", str(out)] + list(args) + ["--workdir", str(tmp_path / "work")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "quiver-bench failed:\n%s\n%s" % (r.stdout, r.stderr[-5000:])
    return r.stdout, out


def test_bench_smoke(dataset, tmp_path):
    for path in (QUIVERD, LOADER):
        if not os.access(path, os.X_OK):   # built by this project: missing is a failure
            pytest.fail("%s is not built" % path, pytrace=False)
    out = tmp_path / "out"
    cmd = [sys.executable, BENCH, "--data", dataset, "--build", BUILD, "--quiverd", QUIVERD,
           "--out", str(out), "--queries", "30", "--warmup", "10", "--threads", "2",
           "--batch", "8", "--nprobes", "1,4,16", "--min-recalls", "0.9",
           "--spec", "ivf_flat,nlist=16", "--spec", "ivf_pq,nlist=16,pq_m=8,refine=4",
           "--hnsw-efs", "10,200", "--workdir", str(tmp_path / "work")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "quiver-bench failed:\n%s\n%s" % (r.stdout, r.stderr[-5000:])
    assert "| engine" in r.stdout and "QPS at recall@10" in r.stdout

    res = json.loads((out / "results.json").read_text())
    # committed results name no folder of this machine (the data set is in one here)
    import tempfile
    for f in ("results.json", "summary.md"):
        text = (out / f).read_text()
        assert tempfile.gettempdir() + "/" not in text and "$WORK" in text, f
    for key in ("machine", "versions", "dataset", "settings", "import", "indexes", "points",
                "summary", "hnswlib"):
        assert key in res, key
    assert res["dataset"]["metric"] == "l2"
    assert res["dataset"]["base_vectors"] == N_BASE and res["dataset"]["queries_timed"] == 30
    assert res["import"]["vectors"] == N_BASE and res["import"]["vectors_per_s"] > 0
    assert [i["resolved"]["kind"] for i in res["indexes"]] == ["ivf_flat", "ivf_pq"]
    for info in res["indexes"]:
        assert info["build_s"] > 0 and info["resolved"]["nlist"] == 16
        assert info["faiss"]["train_s"] >= 0 and info["faiss"]["index_bytes"] > 0
        assert info["rss_peak"]["VmHWM"] > 0 and info["data_dir_bytes"] > 0
        rs = info["restart"]
        assert rs["exit_code"] == 0 and 0 < rs["health_serving_s"] <= rs["first_search_s"]
        assert rs["index_kind_after"] == info["resolved"]["kind"]

    pts = res["points"]
    engines = {(p["engine"], p["mode"]) for p in pts}
    assert engines == {(e, m) for e in ("quiver", "faiss", "hnswlib") for m in ("single", "batch")}
    for p in pts:
        for k in ("recall@1", "recall@10", "recall@100"):
            assert 0.0 <= p[k] <= 1.0, p
        assert p["qps"] > 0 and 0 < p["p50_ms"] <= p["p99_ms"], p
        assert p["queries"] == 30
    # nprobe = nlist scans every list: exact for ivf_flat, in Quiver and in-process alike
    full = [p for p in pts if p["index"].startswith("ivf_flat") and p["value"] == 16]
    assert len(full) == 4 and all(p["recall@10"] >= 0.99 for p in full), full
    # both engines run the same index: the same recall at the same nprobe
    for p in pts:
        if p["engine"] == "quiver" and p["param"] == "nprobe":
            f = [x for x in pts if x["engine"] == "faiss" and x["index"] == p["index"]
                 and x["mode"] == p["mode"] and x["value"] == p["value"]]
            assert len(f) == 1 and abs(f[0]["recall@10"] - p["recall@10"]) <= 0.05, (p, f)
    assert any(p["param"] == "min_recall" and p["nprobe_used"] for p in pts)

    s = res["summary"]
    assert {r["mode"] for r in s["ratios"]} == {"single", "batch"}
    assert all("met" in t and "target" in t for t in s["targets"])

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(pts)
    for row in rows:
        assert 0.0 <= float(row["recall@10"]) <= 1.0 and float(row["qps"]) > 0
    assert (out / "summary.md").read_text().startswith("# quiver-bench")
    if subprocess.run(["which", "gnuplot"], capture_output=True).returncode == 0:
        png = (out / "plot.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000

    # the outputs can be redone from results.json alone
    (out / "results.csv").unlink()
    r = subprocess.run([sys.executable, BENCH, "--replot", str(out)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(pts)


def test_bench_filter_selectivity(dataset, tmp_path):
    """--filter-selectivity: the "sel" attribute at import, filtered vs unfiltered rows
    in results.json, the table and summary.md; exact answers (every filter here is
    under the server's exact cut), k hits whenever k items match."""
    stdout, out = run_bench(dataset, tmp_path, [
        "--queries", "30", "--warmup", "5", "--threads", "2", "--batch", "8", "--nprobes", "4",
        "--min-recalls", "0.95", "--spec", "ivf_flat,nlist=16", "--skip-faiss", "--skip-hnsw",
        "--skip-restart", "--no-plot", "--k", "20",
        "--filter-selectivity", "0.005,0.1,0.5", "--filter-queries", "25"])
    assert "filtered search" in stdout and "x unfiltered" in stdout

    res = json.loads((out / "results.json").read_text())
    assert res["import"]["vectors"] == N_BASE and "sel" in res["import"]["attribute_keys"]
    f = res["filters"]
    assert f["queries"] == 25 and f["k"] == 20
    sels = {x["selectivity"]: x["matching"] for x in f["selectivities"]}
    assert sorted(sels) == [0.005, 0.1, 0.5]
    assert 0 < sels[0.005] < sels[0.1] < sels[0.5] < N_BASE
    pts = f["points"]
    assert {(p["mode"], p["selectivity"]) for p in pts} == \
        {(m, s) for m in ("single", "batch") for s in (None, 0.005, 0.1, 0.5)}
    for p in pts:
        assert p["queries"] == 25 and p["qps"] > 0 and p["short_answers"] == 0, p
        if p["selectivity"] is None:
            assert p["matching"] == N_BASE and "qps_ratio" not in p
        else:
            assert p["matching"] == sels[p["selectivity"]] and p["qps_ratio"] > 0
            # 2,000 items: every filter is answered exactly over its ids
            assert p["recall@10"] >= 0.99, p
            assert p["mean_hits"] == min(20, p["matching"]), p
    # the unfiltered sweep is unchanged
    assert {p["param"] for p in res["points"]} == {"nprobe", "min_recall"}
    assert any(t["target"].startswith("filtered QPS at selectivity 0.5")
               for t in res["summary"]["targets"])
    md = (out / "summary.md").read_text()
    assert "## Filtered search" in md and "sel < 50" in md


def test_bench_filter_correlated(dataset, tmp_path):
    """--filter-correlated: every item also gets its k-means "cluster" (10 clusters) at import;
    at each S a filter keeping the fewest whole clusters that reach S, next to the independent
    one; both families in results.json, the tables and summary.md, with their targets. Exact
    answers here too (every filter under the exact cut)."""
    stdout, out = run_bench(dataset, tmp_path, [
        "--queries", "30", "--warmup", "5", "--threads", "2", "--batch", "8", "--nprobes", "4",
        "--min-recalls", "", "--spec", "ivf_flat,nlist=16", "--skip-faiss", "--skip-hnsw",
        "--skip-restart", "--no-plot", "--k", "20", "--modes", "single",
        "--filter-modes", "single,batch", "--filter-selectivity", "0.2,0.5,0.9",
        "--filter-correlated", "--filter-queries", "25"])
    assert "side by side" in stdout and "cluster any_of" in stdout

    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["filter_correlated"] is True
    assert res["import"]["attribute_keys"][:2] == ["sel", "cluster"]
    f = res["filters"]
    c = f["correlated"]
    assert c["attribute"] == "cluster" and c["clusters"] == 10
    assert len(c["sizes"]) == 10 and sum(c["sizes"]) == N_BASE and min(c["sizes"]) > 0
    assert sum(c["query_clusters"]) == 25
    cum = np.cumsum(c["sizes"])
    corr = {x["selectivity"]: x for x in c["selectivities"]}
    assert sorted(corr) == [0.2, 0.5, 0.9]
    for s, x in corr.items():
        m = x["clusters"]
        # the fewest whole clusters, in label order, reaching S; the exact fraction reported
        assert cum[m - 1] >= s * N_BASE and (m == 1 or cum[m - 2] < s * N_BASE), (s, x)
        assert x["matching"] == cum[m - 1] and x["fraction"] == x["matching"] / N_BASE
        assert x["values"] == ("[0..%d]" % (m - 1) if m > 2 else "[%s]" % ",".join(map(str, range(m))))
        assert 0 <= x["queries_own_cluster_kept"] <= 1
    indep = {x["selectivity"]: x["matching"] for x in f["selectivities"]}
    assert sorted(indep) == [0.2, 0.5, 0.9]
    pts = f["points"]
    assert {(p["mode"], p["family"], p["selectivity"]) for p in pts} == \
        {(m, fam, s) for m in ("single", "batch") for fam in ("independent", "correlated")
         for s in (0.2, 0.5, 0.9)} | {("single", None, None), ("batch", None, None)}
    for p in pts:
        assert p["queries"] == 25 and p["qps"] > 0 and p["short_answers"] == 0, p
        if p["family"] == "correlated":
            x = corr[p["selectivity"]]
            assert p["matching"] == x["matching"] and p["fraction"] == x["fraction"]
            assert p["filter"] == "cluster any_of " + x["values"]
        elif p["family"] == "independent":
            assert p["matching"] == indep[p["selectivity"]] and "fraction" not in p
            assert p["filter"] == "sel < %g" % (p["selectivity"] * 10000)
        if p["family"]:
            assert p["qps_ratio"] > 0
            assert p["recall@10"] >= 0.99, p   # 2,000 items: exact over the filter's ids
    tg = [t["target"] for t in res["summary"]["targets"]]
    for fam in ("independent", "correlated"):
        for s in (0.2, 0.5, 0.9):
            assert sum(t.startswith("filtered recall@10 >= 0.95 (ivf_flat nlist=16, batch, %s, "
                                    "selectivity %g" % (fam, s)) for t in tg) == 1, (fam, s, tg)
    assert any(t.startswith("filtered QPS at selectivity 0.5 >= 0.6 x unfiltered") and
               t.endswith("correlated)") for t in tg), tg
    assert any(t.startswith("filtered QPS at selectivity 0.5 >= 0.7 x unfiltered") and
               t.endswith("independent)") for t in tg), tg
    md = (out / "summary.md").read_text()
    assert "### Correlated filters" in md and "correlated clusters" in md and "sel < 5000" in md
    # redone from results.json alone, the side-by-side table included
    r = subprocess.run([sys.executable, BENCH, "--replot", str(out), "--no-plot"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "### Correlated filters" in (out / "summary.md").read_text()


def test_bench_import_cli(dataset, tmp_path):
    """--import-cli: the import is `quiver --json import` of the base file (here its first
    --limit rows, written to the work folder), reported next to FAISS adding the same
    vectors in-process to IDMap,Flat; --import-cli-again imports them again as new ids
    into the built IVF index, next to FAISS's add for that spec (--skip-faiss: through
    quiver-bench-load faiss --build-only); the 150,000 vectors/s target is a met/missed
    line. Form only, no speed asserted."""
    cli = os.path.join(BUILD, "quiver")
    for path in (QUIVERD, LOADER, cli):
        if not os.access(path, os.X_OK):   # built by this project: missing is a failure
            pytest.fail("%s is not built" % path, pytrace=False)
    out = tmp_path / "out"
    work = tmp_path / "work"
    n = 1500
    cmd = [sys.executable, BENCH, "--data", dataset, "--build", BUILD, "--quiverd", QUIVERD,
           "--out", str(out), "--limit", str(n), "--queries", "20", "--warmup", "5",
           "--threads", "2", "--batch", "8", "--nprobes", "4", "--min-recalls", "",
           "--modes", "single", "--spec", "ivf_flat,nlist=16", "--skip-faiss", "--skip-hnsw",
           "--skip-restart", "--no-plot", "--import-cli", "--import-cli-again",
           "--cli-arg=--batch=500", "--workdir", str(work)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "quiver-bench failed:\n%s\n%s" % (r.stdout, r.stderr[-5000:])
    assert "quiver import (CLI) vs FAISS alone" in r.stdout

    res = json.loads((out / "results.json").read_text())
    imp = res["import"]
    assert imp["client"] == "quiver import (CLI)" and imp["vectors"] == n
    assert imp["collection_count"] == n and imp["attributes"] is False
    assert imp["cli_json"]["rows_acknowledged"] == n and imp["cli_json"]["rows_skipped"] == 0
    assert imp["seconds"] > 0 and imp["cli_rows_per_second"] > 0 and imp["server_cpu_s"] >= 0
    assert " --json import " in imp["command"] and "--batch=500" in imp["command"]
    assert imp["index_after"]["kind"] == "flat"
    assert imp["faiss"]["kind"] == "flat" and imp["faiss"]["vectors"] == n
    assert imp["faiss"]["add_s"] >= 0 and imp["faiss"]["train_s"] == 0
    again = res["import_again"]
    assert again["id_offset"] == n and again["vectors"] == n and again["collection_count"] == 2 * n
    assert again["index_before"]["kind"] == "ivf_flat" and again["index_before"]["trained"]
    assert again["faiss"]["kind"] == "ivf_flat" and again["faiss"]["nlist"] == 16
    assert again["faiss"]["vectors"] == n and again["faiss"]["train_s"] >= 0
    assert "--id-offset %d" % n in again["command"]
    # the base file was cut to --limit rows in the work folder, the checkpoints deleted
    assert os.path.getsize(work / ("base-%d.fvecs" % n)) == n * (4 + 4 * DIM)
    assert not list(work.glob("*.quiver-import.json"))
    rows = res["import_rows"]
    assert [x["index"] for x in rows] == ["flat", "ivf_flat nlist=16"]
    assert rows[0]["faiss_index"] == "IDMap,Flat"
    for x in rows:
        assert x["vectors"] == n and x["quiver_vectors_per_s"] > 0 and x["faiss_vectors_per_s"] > 0
    t = [t for t in res["summary"]["targets"] if t["target"].startswith("quiver import >= 150,000")]
    assert len(t) == 1 and t[0]["met"] == (t[0]["value"] >= 150000), t
    assert "fsync on every commit" in t[0]["target"]
    md = (out / "summary.md").read_text()
    assert "## Import through `quiver import`" in md and "FAISS add s" in md
