/* Uses an installed Loom: a small matmul, a reduction and a gradient,
 * checked against values computed by hand. Exits 0 when all agree. */
#include <loom/loom.h>
#include <math.h>
#include <stdio.h>

static int check(const char *what, double got, double want) {
  if (fabs(got - want) > 1e-5 * (1.0 + fabs(want))) {
    fprintf(stderr, "consumer: %s = %g, expected %g\n", what, got, want);
    return 1;
  }
  return 0;
}

int main(void) {
  const float a[6] = {1, 2, 3, 4, 5, 6};    /* [2, 3] */
  const float b[6] = {1, 0, -1, 2, 0.5f, 1}; /* [3, 2] */
  int bad = 0;
  loom_scope_begin();
  loom_tensor *ta = loom_from_host(a, LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu());
  loom_tensor *tb = loom_from_host(b, LOOM_SHAPE(3, 2), LOOM_F32, loom_cpu());
  loom_set_requires_grad(ta, true);
  /* c = a @ b = [[0.5, 7], [2, 16]]; sum(c) = 25.5 */
  loom_tensor *c = loom_matmul(ta, tb);
  loom_tensor *s = loom_sum(c, NULL, 0, false);
  if (!s || loom_backward(s, NULL, false) != 0) {
    fprintf(stderr, "consumer: %s\n", loom_last_error());
    loom_scope_end();
    return 1;
  }
  bad |= check("c[0][0]", loom_item_at(c, (const int64_t[]){0, 0}), 0.5);
  bad |= check("c[1][1]", loom_item_at(c, (const int64_t[]){1, 1}), 16.0);
  bad |= check("sum(a @ b)", loom_item(s), 25.5);
  /* d sum(a @ b) / d a[i][k] = sum_j b[k][j] = (1, 1, 1.5) for every row i. */
  loom_tensor *g = loom_grad(ta);
  bad |= check("grad[1][2]", g ? loom_item_at(g, (const int64_t[]){1, 2}) : NAN, 1.5);
  /* Errors are reported, not fatal. */
  if (loom_matmul(ta, ta) != NULL || loom_last_status() != LOOM_ERR_INVALID) {
    fprintf(stderr, "consumer: [2,3] @ [2,3] should fail with an invalid-argument error\n");
    bad = 1;
  }
  loom_scope_end();
  printf("consumer: Loom %s, %s\n", LOOM_VERSION_STRING, bad ? "FAILED" : "ok");
  return bad;
}
