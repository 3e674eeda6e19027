/*
 * Process start: posix_spawn + wait of a program (default /bin/true) with
 * each of several LD_PRELOAD values, interleaved spawn by spawn (A B C A B
 * C ...) so a drift of the machine's speed hits every variant alike.
 *
 * Usage: spawn ROUNDS PROGRAM PRELOAD...   ("-" = no LD_PRELOAD)
 * Prints one line per round: for each variant in the order given, the
 * wall-clock microseconds and the child's own CPU microseconds (user and
 * system, from wait4; a loaded machine delays the child, which the wall
 * clock counts and its CPU time does not). Then one line "faults F1 F2
 * ...": the mean minor page faults of each variant's child.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "preload_env.h"

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}


int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: spawn ROUNDS PROGRAM PRELOAD...\n");
		return 2;
	}
	long rounds = atol(argv[1]);
	char *program = argv[2];
	int variants = argc - 3;
	char **envs[variants];
	double *times[variants], *cpu[variants];
	long faults[variants];
	char *child_argv[] = { program, NULL };

	for (int v = 0; v < variants; v++) {
		envs[v] = environment(argv[3 + v]);
		times[v] = calloc(rounds, sizeof(double));
		cpu[v] = calloc(rounds, sizeof(double));
		faults[v] = 0;
	}
	for (long r = -rounds / 10 - 1; r < rounds; r++) { /* the first tenth warms up */
		for (int k = 0; k < variants; k++) {
			int v = (int)(((k + r) % variants + variants) % variants); /* rotate who goes first */
			struct rusage usage;
			pid_t pid;
			int status;
			double t = now_us();
			if (posix_spawn(&pid, program, NULL, NULL, child_argv, envs[v]) != 0)
				return 1;
			wait4(pid, &status, 0, &usage);
			double took = now_us() - t;
			if (r >= 0) {
				times[v][r] = took;
				cpu[v][r] = usage.ru_utime.tv_sec * 1e6 + usage.ru_utime.tv_usec + usage.ru_stime.tv_sec * 1e6 +
					    usage.ru_stime.tv_usec;
				faults[v] += usage.ru_minflt;
			}
		}
	}
	for (long r = 0; r < rounds; r++)
		for (int v = 0; v < variants; v++)
			printf("%.1f %.1f%c", times[v][r], cpu[v][r], v + 1 < variants ? ' ' : '\n');
	printf("faults");
	for (int v = 0; v < variants; v++)
		printf(" %.1f", (double)faults[v] / rounds);
	printf("\n");
	return 0;
}
