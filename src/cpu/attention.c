/* CPU kernels of the attention family. */
#include "cpu/cpu.h"

void cpu_register_attention(void) {}
