/* CPU kernels of the act family. */
#include "cpu/cpu.h"

void cpu_register_act(void) {}
