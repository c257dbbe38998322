# Installs a Loom build tree into a fresh prefix, then configures, builds and
# runs the consumer project against it and the installed tools. Run by ctest:
#   cmake -DLOOM_BUILD=<build dir> -DWORK=<scratch dir> -DGENERATOR=<gen> -DC_COMPILER=<cc> -P check.cmake
set(CHECK_NAME "consumer check")
include(${CMAKE_CURRENT_LIST_DIR}/../script_util.cmake)
require_vars(LOOM_BUILD WORK GENERATOR C_COMPILER)

file(REMOVE_RECURSE ${WORK})
step(${CMAKE_COMMAND} --install ${LOOM_BUILD} --prefix ${WORK}/prefix)
step(${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${WORK}/build -G ${GENERATOR}
     -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK}/prefix)
step(${CMAKE_COMMAND} --build ${WORK}/build)
step(${WORK}/build/consumer)
step(${WORK}/build/consumer_static)
# The installed tools run from the prefix (their rpath finds libloom.so.0).
step(${WORK}/prefix/bin/loom-info)
step(${WORK}/prefix/bin/loom-ckpt --help)
step(${WORK}/prefix/bin/loom-summary --model seed --batch 1)
