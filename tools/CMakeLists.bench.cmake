# quiver-bench-load: the C half of the benchmark (tools/quiver-bench drives it).
# Included from the top-level CMakeLists.txt; needs the qvclient library. Its
# in-process FAISS twin is on FAISS's C API (qvfaiss), not on qvstorage.
if(TARGET qvclient)
  add_executable(quiver-bench-load tools/bench_load.c)
  target_link_libraries(quiver-bench-load PRIVATE qvclient qvfaiss OpenMP::OpenMP_C m)
  # Only libfaiss_c is used directly, so the linker (--as-needed by default on
  # Debian) leaves libfaiss out of NEEDED; libfaiss_c.so itself has no RUNPATH.
  # An old-style DT_RPATH is searched for indirect dependencies too, so the
  # loader finds libfaiss.so next to libfaiss_c.so.
  target_link_options(quiver-bench-load PRIVATE "LINKER:--disable-new-dtags")
endif()
