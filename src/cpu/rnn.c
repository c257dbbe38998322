/* CPU kernels of the rnn family. */
#include "cpu/cpu.h"

void cpu_register_rnn(void) {}
