# quiver-bench-load: the C half of the benchmark (tools/quiver-bench drives it).
# Included from the top-level CMakeLists.txt; needs the qvclient library. Its
# in-process FAISS twin is on FAISS's C API (qvfaiss), not on qvstorage.
if(TARGET qvclient)
  add_executable(quiver-bench-load tools/bench_load.c)
  target_link_libraries(quiver-bench-load PRIVATE qvclient qvfaiss OpenMP::OpenMP_C m)
endif()
