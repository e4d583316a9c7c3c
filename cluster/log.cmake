# JetStream write log (cluster/log.c, cluster/log.h): the qvlog library and
# its unit test, which starts real nats-server processes (1 and 3 nodes).
add_library(qvlog STATIC cluster/log.c)
target_include_directories(qvlog PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(qvlog PUBLIC qvutil PkgConfig::NATS Threads::Threads)

find_program(NATS_SERVER nats-server REQUIRED)
add_executable(test_log tests/unit/test_log.c)
target_link_libraries(test_log PRIVATE qvlog PkgConfig::CMOCKA)
add_test(NAME unit_log COMMAND test_log)
set_tests_properties(unit_log PROPERTIES
  ENVIRONMENT "NATS_SERVER=${NATS_SERVER}" TIMEOUT 180)
