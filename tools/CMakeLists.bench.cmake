# quiver-bench-load: the C half of the benchmark (tools/quiver-bench drives it).
# Included from the top-level CMakeLists.txt; needs the qvclient library.
if(TARGET qvclient)
  add_executable(quiver-bench-load tools/bench_load.c)
  target_link_libraries(quiver-bench-load PRIVATE qvclient qvstorage OpenMP::OpenMP_C m)
endif()
