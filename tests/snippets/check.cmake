# Builds and runs every C block of the README and docs/ against an installed
# copy of this build (tests/snippets/extract.c writes the project). Run by ctest:
#   cmake -DLOOM_BUILD=<build dir> -DWORK=<scratch dir> -DSOURCE=<source dir> -DEXTRACT=<doc_snippets>
#         -DCTEST=<ctest> -DGENERATOR=<gen> -DC_COMPILER=<cc> -P check.cmake
set(CHECK_NAME "doc snippets check")
include(${CMAKE_CURRENT_LIST_DIR}/../script_util.cmake)
require_vars(LOOM_BUILD WORK SOURCE EXTRACT CTEST GENERATOR C_COMPILER)

file(GLOB pages RELATIVE ${SOURCE} ${SOURCE}/README.md ${SOURCE}/docs/*.md ${SOURCE}/docker/*.md)
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/project/src)
step(${CMAKE_COMMAND} --install ${LOOM_BUILD} --prefix ${WORK}/prefix)
step(${EXTRACT} ${WORK}/project ${SOURCE} ${pages})
step(${CMAKE_COMMAND} -S ${WORK}/project -B ${WORK}/build -G ${GENERATOR}
     -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK}/prefix)
cmake_host_system_information(RESULT jobs QUERY NUMBER_OF_LOGICAL_CORES)
# Keep going after a failed block, so that one run names every broken one.
set(keep_going)
if(GENERATOR MATCHES "Ninja")
  set(keep_going -- -k 0)
elseif(GENERATOR MATCHES "Makefiles")
  set(keep_going -- -k)
endif()
step(${CMAKE_COMMAND} --build ${WORK}/build -j${jobs} ${keep_going})
step(${CTEST} --test-dir ${WORK}/build --output-on-failure --timeout 120 -j${jobs})
