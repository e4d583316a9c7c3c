# FAISS 1.15.0, built once per machine from the pinned release.
#
# Included from CMakeLists.txt (sets QUIVER_FAISS_PREFIX) or run as a script
# (`cmake -P cmake/QuiverFaiss.cmake`, what tools/deps.sh does so that the
# build shows its progress). The install goes to a cache folder keyed by the
# source's SHA-256, the compiler and the options:
#   ${QUIVER_CACHE:-${XDG_CACHE_HOME:-~/.cache}/quiver}/faiss-1.15.0-<key>
# so both build types and every fresh clone on the machine share it.
#
# Source: ../shared/vendor/faiss-1.15.0.tar.gz beside the checkout, or the file
# QUIVER_FAISS_TARBALL names (CMake or environment variable); checked against
# its SHA-256,
# or, where that file is absent, the upstream tag v1.15.0 at its pinned commit
# through FetchContent. -DQUIVER_FAISS_PREFIX=DIR skips all of this and uses an
# installed FAISS >= 1.15 with faiss_c.

set(QV_FAISS_VERSION 1.15.0)
set(QV_FAISS_SHA256 4463b83d6799e9ff90e0d2aa4f400206d277a75df1be4d9c244cfc8ae77db3fa)
set(QV_FAISS_GIT https://github.com/facebookresearch/faiss.git)
set(QV_FAISS_COMMIT 20f14b31a6d54e243a3d1de6ae193fc4c3ec18ed)
set(QV_FAISS_OPTIONS
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DFAISS_OPT_LEVEL=dd
  -DFAISS_ENABLE_C_API=ON -DFAISS_ENABLE_GPU=OFF -DFAISS_ENABLE_PYTHON=OFF
  -DFAISS_ENABLE_MKL=OFF -DFAISS_ENABLE_EXTRAS=OFF -DBUILD_TESTING=OFF
  -DBLA_VENDOR=OpenBLAS "-DCMAKE_INSTALL_RPATH=\$ORIGIN")

function(quiver_faiss_build out_prefix)
  get_filename_component(root "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/.." ABSOLUTE)
  if(NOT QUIVER_FAISS_TARBALL AND DEFINED ENV{QUIVER_FAISS_TARBALL})
    set(QUIVER_FAISS_TARBALL "$ENV{QUIVER_FAISS_TARBALL}")
  endif()
  if(NOT QUIVER_FAISS_TARBALL)
    set(QUIVER_FAISS_TARBALL "${root}/../shared/vendor/faiss-${QV_FAISS_VERSION}.tar.gz")
  endif()
  # the compiler: the one this project builds with, or the one on PATH in script mode
  if(CMAKE_CXX_COMPILER)
    set(cxx "${CMAKE_CXX_COMPILER}")
  elseif(DEFINED ENV{CXX})
    set(cxx "$ENV{CXX}")
  else()
    set(cxx c++)
  endif()
  execute_process(COMMAND ${cxx} --version OUTPUT_VARIABLE cxx_version
                  RESULT_VARIABLE rc ERROR_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAISS: cannot run the C++ compiler '${cxx}'")
  endif()
  string(REGEX REPLACE "\n.*" "" cxx_version "${cxx_version}")
  string(SHA256 key "${QV_FAISS_SHA256};${cxx_version};${QV_FAISS_OPTIONS}")
  string(SUBSTRING "${key}" 0 12 key)

  if(DEFINED ENV{QUIVER_CACHE})
    set(cache "$ENV{QUIVER_CACHE}")
  elseif(DEFINED ENV{XDG_CACHE_HOME})
    set(cache "$ENV{XDG_CACHE_HOME}/quiver")
  else()
    set(cache "$ENV{HOME}/.cache/quiver")
  endif()
  set(prefix "${cache}/faiss-${QV_FAISS_VERSION}-${key}")
  set(${out_prefix} "${prefix}" PARENT_SCOPE)
  if(EXISTS "${prefix}/.complete")
    return()
  endif()

  file(MAKE_DIRECTORY "${cache}")
  # one build at a time per machine; a second caller waits, then finds it done
  file(LOCK "${cache}/faiss-${key}.lock" GUARD FUNCTION TIMEOUT 7200)
  if(EXISTS "${prefix}/.complete")
    return()
  endif()
  set(work "${cache}/faiss-${QV_FAISS_VERSION}-${key}.work")
  file(REMOVE_RECURSE "${work}" "${prefix}")
  file(MAKE_DIRECTORY "${work}")
  if(EXISTS "${QUIVER_FAISS_TARBALL}")
    file(SHA256 "${QUIVER_FAISS_TARBALL}" sum)
    if(NOT sum STREQUAL QV_FAISS_SHA256)
      message(FATAL_ERROR "FAISS: ${QUIVER_FAISS_TARBALL} has SHA-256 ${sum}, "
                          "expected ${QV_FAISS_SHA256}")
    endif()
    message(STATUS "FAISS: unpacking ${QUIVER_FAISS_TARBALL}")
    file(ARCHIVE_EXTRACT INPUT "${QUIVER_FAISS_TARBALL}" DESTINATION "${work}")
    set(src "${work}/faiss-${QV_FAISS_VERSION}")
  else()
    message(STATUS "FAISS: ${QUIVER_FAISS_TARBALL} absent; fetching tag "
                   "v${QV_FAISS_VERSION} (commit ${QV_FAISS_COMMIT})")
    include(FetchContent)
    FetchContent_Populate(qvfaiss
      GIT_REPOSITORY ${QV_FAISS_GIT} GIT_TAG ${QV_FAISS_COMMIT} GIT_SHALLOW FALSE
      SOURCE_DIR "${work}/faiss-${QV_FAISS_VERSION}"
      SUBBUILD_DIR "${work}/subbuild" BINARY_DIR "${work}/unused")
    set(src "${work}/faiss-${QV_FAISS_VERSION}")
  endif()

  cmake_host_system_information(RESULT ncpu QUERY NUMBER_OF_LOGICAL_CORES)
  message(STATUS "FAISS: building ${QV_FAISS_VERSION} into ${prefix} "
                 "(${ncpu} jobs; about 7 minutes on 2 cores)")
  string(TIMESTAMP t0 "%s")
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S "${src}" -B "${work}/build" ${QV_FAISS_OPTIONS}
            -DCMAKE_CXX_COMPILER=${cxx} "-DCMAKE_INSTALL_PREFIX=${prefix}"
            -DCMAKE_INSTALL_LIBDIR=lib
    OUTPUT_QUIET RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAISS: configuring failed (see above; sources in ${work})")
  endif()
  # the build prints "[ NN%] Building ..." lines: that is the progress display
  execute_process(
    COMMAND ${CMAKE_COMMAND} --build "${work}/build" -j ${ncpu}
    COMMAND grep --line-buffered -E "^\\[ *[0-9]+%\\]|error:"
    RESULTS_VARIABLE rcs)
  list(GET rcs 0 rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAISS: build failed (build tree ${work}/build)")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --install "${work}/build" OUTPUT_QUIET
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAISS: install into ${prefix} failed")
  endif()
  string(TIMESTAMP t1 "%s")
  math(EXPR secs "${t1} - ${t0}")
  file(WRITE "${prefix}/.complete"
       "faiss ${QV_FAISS_VERSION} sha256 ${QV_FAISS_SHA256}\n${cxx_version}\n"
       "${QV_FAISS_OPTIONS}\nbuilt in ${secs} s\n")
  file(REMOVE_RECURSE "${work}")
  message(STATUS "FAISS: built in ${secs} s")
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  quiver_faiss_build(p)
  message(STATUS "FAISS ${QV_FAISS_VERSION}: ${p}")
endif()
