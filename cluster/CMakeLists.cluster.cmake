# cluster/: cluster mode (etcd metadata, the JetStream write log, the router).
# Included from the top-level CMakeLists.txt after the server and tools. Each
# part has its own file; a quiverd without cluster flags never touches them.
pkg_check_modules(NATS REQUIRED IMPORTED_TARGET libnats)
include(${CMAKE_CURRENT_LIST_DIR}/etcd.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/log.cmake)

# the calls nodes make to each other (proto/quiver/peer/v1/peer.proto)
add_custom_command(OUTPUT ${GEN}/quiver/peer/v1/peer.pb-c.c ${GEN}/quiver/peer/v1/peer.pb-c.h
  COMMAND ${PROTOC_C} -I${CMAKE_SOURCE_DIR}/proto --c_out=${GEN} quiver/peer/v1/peer.proto
  DEPENDS ${CMAKE_SOURCE_DIR}/proto/quiver/peer/v1/peer.proto
  COMMENT "protoc-c: peer")
set_source_files_properties(${GEN}/quiver/peer/v1/peer.pb-c.c PROPERTIES
  COMPILE_OPTIONS "-Wno-unused-parameter")
# qvcluster: a node's part in the cluster (cluster/cluster.h) and the router
add_library(qvcluster STATIC cluster/node.c cluster/controller.c cluster/cbackup.c cluster/entry.c cluster/peer.c cluster/router.c
  ${GEN}/quiver/peer/v1/peer.pb-c.c)
target_include_directories(qvcluster PUBLIC cluster ${GEN})
target_link_libraries(qvcluster PUBLIC qvstorage qvproto qvpbcall qvetcd qvlog PkgConfig::GRPC PkgConfig::JANSSON PkgConfig::CRYPTO PkgConfig::ARCHIVE)
# quiverd's handlers route through it in cluster mode (server/svc_cluster.c)
target_link_libraries(qvserver PUBLIC qvcluster)
