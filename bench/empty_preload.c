/* An empty preload library: what any LD_PRELOAD costs a process (bench/spawn.c compares libtfo with it). */
void bench_empty_preload(void) {}
