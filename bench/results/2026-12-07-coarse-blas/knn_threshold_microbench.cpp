#include <faiss/utils/distances.h>
#include <faiss/utils/Heap.h>
#include <chrono>
#include <cstdio>
#include <vector>
#include <random>
extern "C" void openblas_set_num_threads(int);
int main() {
    openblas_set_num_threads(1);
    for (int d : {100, 384, 768}) { int ny = 4096;
    std::vector<float> y((size_t)ny * d), x(1000 * d);
    std::mt19937 r(1); std::normal_distribution<float> g;
    for (auto &v : y) v = g(r);
    for (auto &v : x) v = g(r);
    for (int k : {1, 32}) for (int nx : {2, 4, 8, 16}) {
        std::vector<float> D(nx * k); std::vector<int64_t> I(nx * k);
        double t[2];
        for (int mode = 0; mode < 2; mode++) {
            faiss::distance_compute_blas_threshold = mode == 0 ? 128000 : 0;
            int reps = 20000 / nx; if (reps < 50) reps = 50;
            auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < reps; i++) faiss::knn_inner_product(x.data(), y.data(), d, nx, ny, k, D.data(), I.data());
            auto t1 = std::chrono::steady_clock::now();
            t[mode] = std::chrono::duration<double, std::micro>(t1 - t0).count() / reps / nx;
        }
        printf("d %d k %2d nx %3d: seq %.2f us/query, blas %.2f us/query (x%.2f)\n", d, k, nx, t[0], t[1], t[0] / t[1]);
    } }
}
