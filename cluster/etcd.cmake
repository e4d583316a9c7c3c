# etcd v3 client (cluster/etcd.c): etcd's gRPC API through gRPC core and
# protobuf-c. The .proto files come from Debian packages (tools/deps.sh):
# golang-etcd-server-dev (rpc, kv, auth), golang-github-gogo-protobuf-dev
# (gogoproto/gogo.proto) and golang-github-grpc-ecosystem-grpc-gateway-dev
# (google/api/annotations.proto, http.proto); descriptor.proto is protobuf's.
set(ETCD_GOSRC /usr/share/gocode/src CACHE PATH "Root of Debian's Go sources (etcd's protos)")
set(ETCD_PROTO_INC
  -I${ETCD_GOSRC}/go.etcd.io
  -I${ETCD_GOSRC}/github.com/gogo/protobuf
  -I${ETCD_GOSRC}/github.com/grpc-ecosystem/grpc-gateway/third_party/googleapis
  -I/usr/include)
foreach(p etcd/etcdserver/etcdserverpb/rpc.proto etcd/mvcc/mvccpb/kv.proto
          etcd/auth/authpb/auth.proto)
  # a missing package is a configure error, not a puzzling build failure
  string(REPLACE "etcd/" "${ETCD_GOSRC}/go.etcd.io/etcd/" _f ${p})
  if(NOT EXISTS ${_f})
    message(FATAL_ERROR "etcd: ${_f} not found (apt-get install golang-etcd-server-dev)")
  endif()
endforeach()
set(ETCD_GEN ${GEN}/etcd)
# only these three carry code we use; the others are compiled for their
# headers, which the generated rpc/kv/auth headers include
set(ETCD_PB_C
  ${ETCD_GEN}/etcd/etcdserver/etcdserverpb/rpc.pb-c.c
  ${ETCD_GEN}/etcd/mvcc/mvccpb/kv.pb-c.c
  ${ETCD_GEN}/etcd/auth/authpb/auth.pb-c.c)
add_custom_command(OUTPUT ${ETCD_PB_C}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${ETCD_GEN}
  COMMAND ${PROTOC_C} ${ETCD_PROTO_INC} --c_out=${ETCD_GEN}
          etcd/etcdserver/etcdserverpb/rpc.proto etcd/mvcc/mvccpb/kv.proto
          etcd/auth/authpb/auth.proto gogoproto/gogo.proto
          google/api/annotations.proto google/api/http.proto
          google/protobuf/descriptor.proto
  DEPENDS ${ETCD_GOSRC}/go.etcd.io/etcd/etcdserver/etcdserverpb/rpc.proto
          ${ETCD_GOSRC}/go.etcd.io/etcd/mvcc/mvccpb/kv.proto
          ${ETCD_GOSRC}/go.etcd.io/etcd/auth/authpb/auth.proto
  COMMENT "protoc-c: etcd v3 API")

# generated code is not ours to fix: its warnings stay out of -Werror builds
set_source_files_properties(${ETCD_PB_C} PROPERTIES
  COMPILE_OPTIONS "-Wno-unused-parameter;-Wno-sign-compare;-Wno-missing-field-initializers")
add_library(qvetcd STATIC cluster/etcd.c ${ETCD_PB_C})
target_include_directories(qvetcd PUBLIC cluster PRIVATE ${ETCD_GEN})
target_link_libraries(qvetcd PUBLIC qvutil qvpbcall PkgConfig::GRPC PkgConfig::PROTOBUFC Threads::Threads)

add_executable(test_etcd tests/unit/test_etcd.c)
target_link_libraries(test_etcd PRIVATE qvetcd PkgConfig::CMOCKA)
add_test(NAME unit_etcd COMMAND test_etcd)
# the test starts its own etcd on free loopback ports and needs the binary
find_program(ETCD_BIN etcd REQUIRED)
set_tests_properties(unit_etcd PROPERTIES TIMEOUT 120 ENVIRONMENT "QUIVER_ETCD=${ETCD_BIN}")
