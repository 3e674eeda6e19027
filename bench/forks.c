/*
 * Fork of a preloaded parent: how long fork() takes in a process that has
 * each of several LD_PRELOAD values loaded, and what the fork must copy.
 *
 * Usage: forks ROUNDS FORKS PRELOAD...   ("-" = no LD_PRELOAD)
 * Each round starts one parent per variant, in turn (rotating who goes
 * first, so a drift of the machine's speed hits every variant alike); a
 * parent forks FORKS times (the child calls _exit at once, the parent
 * waits for it) and reports the median microseconds fork() took to return
 * in the parent. Prints one line per round: those medians in the order
 * given. Then one line "anon_kb K1 K2 ...": the anonymous memory of each
 * parent (its private pages that a fork copies the page-table entries of,
 * from /proc/self/smaps_rollup), and one "vmas V1 V2 ...": its mappings.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The parent's side: FORKS forks, then "median anon_kb vmas" on stdout. */
static int parent(long forks)
{
	double *took = calloc(forks, sizeof(*took));
	for (long i = 0; i < forks; i++) {
		double t = now_us();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		took[i] = now_us() - t;
		if (pid < 0 || waitpid(pid, NULL, 0) != pid)
			return 1;
	}
	qsort(took, forks, sizeof(*took), by_value);
	long anon = -1, vmas = 0;
	char line[256];
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	while (f && fgets(line, sizeof(line), f))
		sscanf(line, "Anonymous: %ld kB", &anon);
	if (f)
		fclose(f);
	f = fopen("/proc/self/maps", "r");
	while (f && fgets(line, sizeof(line), f))
		vmas += strchr(line, '\n') != NULL;
	if (f)
		fclose(f);
	printf("%.2f %ld %ld\n", took[forks / 2], anon, vmas);
	return 0;
}


/* Runs one parent under `env`; its report in median, anon, vmas. */
static int run(char *self, char *forks, char **env, double *median, long *anon, long *vmas)
{
	int out[2];
	posix_spawn_file_actions_t actions;
	char *argv[] = { self, "--parent", forks, NULL };
	pid_t pid;
	if (pipe(out) != 0)
		return 1;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, out[1], 1);
	posix_spawn_file_actions_addclose(&actions, out[0]);
	if (posix_spawn(&pid, "/proc/self/exe", &actions, NULL, argv, env) != 0)
		return 1;
	close(out[1]);
	FILE *f = fdopen(out[0], "r");
	int got = fscanf(f, "%lf %ld %ld", median, anon, vmas);
	fclose(f);
	int status;
	waitpid(pid, &status, 0);
	return got == 3 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--parent") == 0)
		return parent(atol(argv[2]));
	if (argc < 4) {
		fprintf(stderr, "usage: forks ROUNDS FORKS PRELOAD...\n");
		return 2;
	}
	long rounds = atol(argv[1]);
	int variants = argc - 3;
	char **envs[variants];
	double medians[variants];
	long anon[variants], vmas[variants];
	for (int v = 0; v < variants; v++)
		envs[v] = environment(argv[3 + v]);
	for (long r = 0; r < rounds; r++) {
		for (int k = 0; k < variants; k++) {
			int v = (int)((k + r) % variants); /* rotate who goes first */
			if (run(argv[0], argv[2], envs[v], &medians[v], &anon[v], &vmas[v]) != 0) {
				fprintf(stderr, "forks: the parent under %s failed\n", argv[3 + v]);
				return 1;
			}
		}
		for (int v = 0; v < variants; v++)
			printf("%.2f%c", medians[v], v + 1 < variants ? ' ' : '\n');
	}
	printf("anon_kb");
	for (int v = 0; v < variants; v++)
		printf(" %ld", anon[v]);
	printf("\nvmas");
	for (int v = 0; v < variants; v++)
		printf(" %ld", vmas[v]);
	printf("\n");
	return 0;
}
