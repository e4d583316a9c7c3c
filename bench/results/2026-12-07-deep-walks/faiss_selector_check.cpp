// Does FAISS's IVF fast-scan PQ lose far neighbours under an id selector? glove-100
// normalised, inner product, IVF4096,PQ50x4fs as Quiver's auto builds it; 10 k-means
// clusters, a bitmap selector keeping the first 3; queries whose nearest cluster is not kept
// ("far") against those whose is ("near"). Prints how many candidates fail the selector and
// how many of the true top 10 (allowed, exact) are among the K candidates.
// Build: g++ -O2 -std=c++17 -I$FAISS/include faiss_selector_check.cpp -L$FAISS/lib -lfaiss
//        -lopenblas -fopenmp -Wl,-rpath,$FAISS/lib     (FAISS: tools/deps.sh's install)
// Run:   ./a.out [K] [DATA]   (DATA: default ../shared/data/glove-100 from the repository)
#include <faiss/index_factory.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexFlat.h>
#include <faiss/Clustering.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/distances.h>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <vector>
#include <algorithm>
#include <set>
#include <memory>
#include <string>
using namespace faiss;
static std::vector<float> fvecs(const char* p, size_t* n, int* d) {
    FILE* f = fopen(p, "rb"); int dd; fread(&dd, 4, 1, f); fseek(f, 0, SEEK_END); long sz = ftell(f); fseek(f, 0, SEEK_SET);
    size_t nn = sz / (4 * (dd + 1)); std::vector<float> v(nn * dd); std::vector<float> row(dd + 1);
    for (size_t i = 0; i < nn; i++) { fread(row.data(), 4, dd + 1, f); std::copy(row.begin() + 1, row.end(), v.begin() + i * dd); }
    fclose(f); *n = nn; *d = dd; return v;
}
int main(int argc, char** argv) {
    size_t n, nq; int d;
    std::string dir = argc > 2 ? argv[2] : "../shared/data/glove-100";
    auto xb = fvecs((dir + "/base.fvecs").c_str(), &n, &d);
    auto xq = fvecs((dir + "/query.fvecs").c_str(), &nq, &d);
    fvec_renorm_L2(d, n, xb.data()); fvec_renorm_L2(d, nq, xq.data());
    nq = 300;
    // 10 clusters
    Clustering cl(d, 10); cl.niter = 10; IndexFlatIP cq(d); cl.train(n, xb.data(), cq);
    std::vector<float> dd(n); std::vector<idx_t> lab(n); cq.search(n, xb.data(), 1, dd.data(), lab.data());
    int nkeep = 3;
    std::vector<uint8_t> bits((n + 7) / 8, 0); size_t kept = 0;
    for (size_t i = 0; i < n; i++) if (lab[i] < nkeep) { bits[i >> 3] |= 1 << (i & 7); kept++; }
    printf("kept %zu of %zu\n", kept, n);
    IDSelectorBitmap sel(n, bits.data());
    std::unique_ptr<Index> idx(index_factory(d, "IVF4096,PQ50x4fs", METRIC_INNER_PRODUCT));
    idx->train(n, xb.data()); idx->add(n, xb.data());
    auto ivf = dynamic_cast<IndexIVF*>(idx.get());
    // query sets: far queries (own cluster not kept)
    std::vector<float> qd(nq); std::vector<idx_t> ql(nq); cq.search(nq, xq.data(), 1, qd.data(), ql.data());
    int K = argc > 1 ? atoi(argv[1]) : 1000;
    for (int np : {4096}) { long bad = 0, tot = 0;
        double rec_far = 0, rec_near = 0; int nf = 0, nn2 = 0;
        SearchParametersIVF sp; sp.nprobe = np; sp.sel = &sel;
        std::vector<float> D(K); std::vector<idx_t> I(K);
        for (size_t q = 0; q < nq; q++) {
            idx->search(1, xq.data() + q * d, K, D.data(), I.data(), &sp);
            // exact top-10 among allowed
            std::vector<std::pair<float, idx_t>> all;
            for (size_t i = 0; i < n; i++) if (lab[i] < nkeep) all.push_back({-fvec_inner_product(xq.data() + q * d, xb.data() + i * d, d), (idx_t)i});
            std::partial_sort(all.begin(), all.begin() + 10, all.end());
            std::set<idx_t> got(I.begin(), I.end()); for (int j = 0; j < K; j++) if (I[j] >= 0) { tot++; bad += !sel.is_member(I[j]); }
            int h = 0; for (int j = 0; j < 10; j++) h += got.count(all[j].second);
            if (ql[q] < nkeep) { rec_near += h / 10.0; nn2++; } else { rec_far += h / 10.0; nf++; }
        }
        printf("not allowed %ld of %ld; nprobe %d K %d: top-10 within candidates: near %.3f (%d), far %.3f (%d)\n", bad, tot, np, K, rec_near / nn2, nn2, rec_far / nf, nf);
        fflush(stdout);
    }
}
