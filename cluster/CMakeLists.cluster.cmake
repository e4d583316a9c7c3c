# cluster/: cluster mode (etcd metadata, the JetStream write log, the router).
# Included from the top-level CMakeLists.txt after the server and tools. Each
# part has its own file; a quiverd without cluster flags never touches them.
pkg_check_modules(NATS REQUIRED IMPORTED_TARGET libnats)
include(${CMAKE_CURRENT_LIST_DIR}/etcd.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/log.cmake)
