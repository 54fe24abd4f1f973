# Helpers shared by every CMakeLists.txt in the tree.

# Warnings for our own targets only (generated code gets fewer, see proto/).
function(fs_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    # clang (the `fuzz` preset) flags librdkafka's RD_KAFKA_V_* macros, which expand to GNU
    # statement expressions in our code; GCC exempts macros from system headers.
    target_compile_options(${target} PRIVATE -Wno-gnu-statement-expression)
  endif()
  if(FS_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# add_subdirectory() for every child of `dir` that has a CMakeLists.txt, in sorted order.
function(fs_add_subdirectories dir)
  file(GLOB children RELATIVE ${CMAKE_CURRENT_SOURCE_DIR}/${dir} ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/*)
  list(SORT children)
  foreach(child ${children})
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/${child}/CMakeLists.txt)
      add_subdirectory(${dir}/${child})
    endif()
  endforeach()
endfunction()

# fs_add_library(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Builds fs_<name> with alias flamestream::<name>; public headers live in include/flamestream/<name>/.
function(fs_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(fs_${name} ${ARG_SOURCES})
  add_library(flamestream::${name} ALIAS fs_${name})
  target_include_directories(fs_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_compile_features(fs_${name} PUBLIC cxx_std_20)
  target_link_libraries(fs_${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  fs_set_warnings(fs_${name})
endfunction()

# fs_add_test(<name> SOURCES ... [DEPS ...] [LABELS ...] [TIMEOUT s] [ENVIRONMENT ...] [SERIAL])
# A GoogleTest binary in build/tests; every TEST becomes a ctest case with the given labels.
# Labels in use: unit (fast, no external process), integration (dev broker, redis, ...),
# requires_root (loads BPF; skipped with a printed reason outside CI when not root).
# SERIAL: ctest runs its cases alone (RUN_SERIAL), for whole-pipeline tests whose stages must
# not share the two cores with other tests' pipelines.
function(fs_add_test name)
  if(NOT FS_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "SERIAL" "TIMEOUT" "SOURCES;DEPS;LABELS;ENVIRONMENT" ${ARGN})
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  fs_set_warnings(${name})
  # CMake 3.25's test discovery splits a multi-valued ENVIRONMENT into separate properties, so
  # only FS_BIN_DIR travels in the environment (tests find built binaries through it, and it
  # can be overridden when running a test binary by hand); the source and build directories
  # are compiled in. ARG_ENVIRONMENT may hold one extra VAR=value.
  target_compile_definitions(${name} PRIVATE FS_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
                                             FS_BUILD_DIR="${CMAKE_BINARY_DIR}")
  list(LENGTH ARG_ENVIRONMENT n_env)
  if(n_env GREATER 1)
    message(FATAL_ERROR "fs_add_test(${name}): ENVIRONMENT takes at most one VAR=value")
  endif()
  set(env_props ENVIRONMENT FS_BIN_DIR=${CMAKE_BINARY_DIR}/bin)
  if(n_env EQUAL 1)
    # Two single-valued properties instead of one list.
    set(env_props ENVIRONMENT ${ARG_ENVIRONMENT}
                  ENVIRONMENT_MODIFICATION "FS_BIN_DIR=set:${CMAKE_BINARY_DIR}/bin")
  endif()
  set(serial_props "")
  if(ARG_SERIAL)
    set(serial_props RUN_SERIAL TRUE)
  endif()
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT} ${env_props} ${serial_props})
endfunction()

# fs_add_bench(<name> SOURCES ... [DEPS ...]): a Google Benchmark binary in build/bench.
function(fs_add_bench name)
  if(NOT FS_BUILD_BENCH)
    return()
  endif()
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} benchmark::benchmark)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
  fs_set_warnings(${name})
endfunction()
