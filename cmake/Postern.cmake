# Postern.cmake: helpers so every folder declares its library, tests and fuzz targets the same way.

# postern_library(<name> SOURCES ... DEPS ...): common/<name> as target common_<name>.
function(postern_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(common_${name} STATIC ${ARG_SOURCES})
  target_link_libraries(common_${name} PUBLIC postern_includes ${ARG_DEPS})
endfunction()

# postern_test(<name> SOURCES ... DEPS ... [LABELS ...]): one Catch2 executable, each TEST_CASE a ctest test.
function(postern_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE catch_main ${ARG_DEPS})
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  # A test name with ';' is split by catch_discover_tests into names that match no test case, and
  # Catch2 exits 0 when nothing ran: such an entry fails instead of passing silently.
  catch_discover_tests(${name}
    TEST_PREFIX "${name}: "
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
    DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT 300 FAIL_REGULAR_EXPRESSION "No test cases matched")
endfunction()

# postern_fuzz(<name> SOURCE <file> DEPS ...): a libFuzzer target; under GCC a corpus-replay binary run by ctest.
function(postern_fuzz name)
  cmake_parse_arguments(ARG "" "SOURCE" "DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCE})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  if(POSTERN_FUZZ)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  else()
    target_link_libraries(${name} PRIVATE fuzz_replay_main)
    add_test(NAME ${name}_replay
      COMMAND ${name} ${CMAKE_CURRENT_SOURCE_DIR}/corpus/${name})
    set_tests_properties(${name}_replay PROPERTIES LABELS fuzz TIMEOUT 300)
  endif()
endfunction()
