# Shared by the ctest driver scripts (cmake -P): tests/consumer/check.cmake and
# tests/snippets/check.cmake. Set CHECK_NAME before including.

# Stops with a message when one of the named -D variables is missing.
function(require_vars)
  foreach(v ${ARGN})
    if(NOT DEFINED ${v})
      message(FATAL_ERROR "${CHECK_NAME}: -D${v}=... is required")
    endif()
  endforeach()
endfunction()

# Runs a command; stops the script when it fails, naming it.
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "${CHECK_NAME} failed (${rc}): ${cmd}")
  endif()
endfunction()
