/* Thread-local last error. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/tensor_impl.h"

static _Thread_local char err_msg[4096];
static _Thread_local loom_status err_status;

/* Formats into a scratch buffer first: a message may quote the current one
 * (core_set_error(st, "...: %s", loom_last_error())), and vsnprintf into the
 * buffer it reads from doubled and cut such messages. */
static loom_status record(loom_status status, const char *fmt, va_list ap) {
  static _Thread_local char scratch[sizeof err_msg];
  vsnprintf(scratch, sizeof scratch, fmt, ap);
  memcpy(err_msg, scratch, sizeof err_msg);
  err_status = status;
  return status;
}

loom_status core_set_error(loom_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  record(status, fmt, ap);
  va_end(ap);
  return status;
}

loom_status core_null_error(const char *fmt, ...) {
  if (err_status != LOOM_OK) return err_status;
  va_list ap;
  va_start(ap, fmt);
  record(LOOM_ERR_INVALID, fmt, ap);
  va_end(ap);
  return LOOM_ERR_INVALID;
}

const char *loom_last_error(void) { return err_msg; }
loom_status loom_last_status(void) { return err_status; }

void loom_clear_error(void) {
  err_msg[0] = '\0';
  err_status = LOOM_OK;
}

const char *loom_status_name(loom_status s) {
  switch (s) {
    case LOOM_OK: return "ok";
    case LOOM_ERR_INVALID: return "invalid argument";
    case LOOM_ERR_UNSUPPORTED: return "unsupported";
    case LOOM_ERR_OOM: return "out of memory";
    case LOOM_ERR_IO: return "I/O error";
    case LOOM_ERR_DEVICE: return "device error";
    case LOOM_ERR_INTERNAL: return "internal error";
    case LOOM_ERR_COMM: return "communication error";
  }
  return "unknown status";
}
