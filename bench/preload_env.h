/* The environment of a child run under one LD_PRELOAD value, for the
 * benchmark programs that compare preloads (spawn.c, forks.c). */
#ifndef BENCH_PRELOAD_ENV_H
#define BENCH_PRELOAD_ENV_H
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

extern char **environ;

/* The environment without LD_PRELOAD, plus `preload` unless it is "-". */
static char **environment(const char *preload)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
			env[k++] = environ[i];
	if (strcmp(preload, "-") != 0) {
		char *v = malloc(strlen(preload) + 12);
		sprintf(v, "LD_PRELOAD=%s", preload);
		env[k++] = v;
	}
	env[k] = NULL;
	return env;
}
#endif
