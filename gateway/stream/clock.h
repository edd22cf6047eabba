/*
 * clock.h — the wall clock the scheduler reads.
 *
 * In test builds (STRAIT_TEST_HOOKS) a test can set it — "it is Monday 07:59
 * now" — and it runs on from there at the real pace; clock_set_test() does
 * not exist in other builds, so a production daemon always reads the real
 * clock.
 */
#ifndef STRAIT_CLOCK_H
#define STRAIT_CLOCK_H

#include <stdint.h>

/* Wall clock, µs since the Unix epoch. */
int64_t clock_wall_us(void);
/* Monotonic clock, µs. */
int64_t clock_mono_us(void);
/* Changes each time a test sets the clock (so cached evaluations redo). */
unsigned clock_generation(void);

#ifdef STRAIT_TEST_HOOKS
/* From now on clock_wall_us() reads wall_us plus the real time passed since. */
void clock_set_test(int64_t wall_us);
#endif

#endif
