#include <faiss/utils/distances.h>
#include <cblas.h>
#include <chrono>
#include <cstdio>
#include <vector>
#include <random>
int main() {
    int d = 100;
    for (int nl : {1024, 2048, 4096}) {
        std::vector<float> c(nl * d), x(d), out(nl);
        std::mt19937 r(1); std::normal_distribution<float> g;
        for (auto &v : c) v = g(r);
        for (auto &v : x) v = g(r);
        int reps = 20000;
        float sink = 0;
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; i++) { x[i % d] += 1e-6f; for (int j = 0; j < nl; j++) out[j] = faiss::fvec_inner_product(x.data(), c.data() + (size_t)j * d, d); sink += out[i % nl]; }
        auto t1 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; i++) { x[i % d] += 1e-6f; faiss::fvec_inner_products_ny(out.data(), x.data(), c.data(), d, nl); sink += out[i % nl]; }
        auto t2 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; i++) { x[i % d] += 1e-6f; cblas_sgemv(CblasRowMajor, CblasNoTrans, nl, d, 1.0f, c.data(), d, x.data(), 1, 0.0f, out.data(), 1); sink += out[i % nl]; }
        auto t3 = std::chrono::steady_clock::now();
        auto us = [&](auto a, auto b) { return std::chrono::duration<double, std::micro>(b - a).count() / reps; };
        printf("nlist %d: loop %.2f us, inner_products_ny %.2f us, sgemv %.2f us (%g)\n", nl, us(t0, t1), us(t1, t2), us(t2, t3), sink);
    }
}
