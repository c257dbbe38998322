/* The CPU backends' communication thread (mpi.c, tcp.c bring how one collective runs). */
#define _POSIX_C_SOURCE 200809L
#include "dist/dist_impl.h"

static void *queue_main(void *arg) {
  dist_queue *q = arg;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (!q->head && !q->stopping) pthread_cond_wait(&q->cv_work, &q->mu);
    if (!q->head) break;
    loom_dist_work *w = q->head;
    q->head = w->next;
    if (!q->head) q->tail = NULL;
    q->running = w;
    w->t_start = dist_now();
    pthread_mutex_unlock(&q->mu);
    q->run(w);
    pthread_mutex_lock(&q->mu);
    q->running = NULL;
    pthread_cond_broadcast(&q->cv_done);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

int dist_queue_start(dist_queue *q, void (*run)(loom_dist_work *w), void (*give_up)(void)) {
  q->run = run;
  q->give_up = give_up;
  if (pthread_create(&q->thread, NULL, queue_main, q))
    return core_set_error(LOOM_ERR_COMM, "dist_init: cannot start the communication thread");
  return LOOM_OK;
}

int dist_queue_submit(dist_queue *q, loom_dist_work *w) {
  pthread_mutex_lock(&q->mu);
  if (q->tail) q->tail->next = w;
  else q->head = w;
  q->tail = w;
  pthread_cond_signal(&q->cv_work);
  pthread_mutex_unlock(&q->mu);
  return LOOM_OK;
}

/* Under mu: sleeps until a collective finishes (with give_up: at most 200 ms, then checks the timeout). */
static void wait_done(dist_queue *q) {
  if (!q->give_up) {
    pthread_cond_wait(&q->cv_done, &q->mu);
    return;
  }
  dist_timedwait(&q->cv_done, &q->mu, 200);
  if (q->running && dist_now() - q->running->t_start > dist_g.timeout_s) {
    dist_print_timeout(q->running);
    q->give_up();
  }
}

int dist_queue_wait(dist_queue *q, loom_dist_work *w) {
  pthread_mutex_lock(&q->mu);
  while (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) wait_done(q);
  pthread_mutex_unlock(&q->mu);
  return LOOM_OK;
}

void dist_queue_stop(dist_queue *q) {
  pthread_mutex_lock(&q->mu);
  while (q->head || q->running) wait_done(q);   /* collectives nobody waited for still finish (or time out) */
  q->stopping = true;
  pthread_cond_signal(&q->cv_work);
  pthread_mutex_unlock(&q->mu);
  pthread_join(q->thread, NULL);
  q->stopping = false;
}
