/*
 * Memory: the resident set of a process holding COUNT open TCP sockets.
 * With -o each socket sets TCP_FASTOPEN_CONNECT, which libtfo's emulation
 * (TFO_MODE=explicit TFO_BACKEND=emulate) tracks in its pool.
 *
 * Usage: sockets [-o] COUNT
 * Prints "VMRSS_KB OPENED" once the sockets are open. RLIMIT_NOFILE is
 * raised as far as allowed (fds above 1 << 20 are never tracked by libtfo);
 * OPENED is less than COUNT when the hard limit is lower.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* VmRSS from /proc/self/status, opened before the sockets take every fd. */
static long rss_kb(int status)
{
	char text[8192];
	ssize_t n = pread(status, text, sizeof(text) - 1, 0);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	char *line = strstr(text, "VmRSS:");
	return line ? atol(line + 6) : -1;
}

int main(int argc, char **argv)
{
	int fastopen = argc > 2 && strcmp(argv[1], "-o") == 0;
	long count = atol(argv[argc - 1]), opened = 0;
	int status = open("/proc/self/status", O_RDONLY);
	struct rlimit limit;
	getrlimit(RLIMIT_NOFILE, &limit);
	rlim_t wanted = count + 64;
	if (limit.rlim_cur < wanted) {
		struct rlimit raised = { wanted, limit.rlim_max < wanted ? wanted : limit.rlim_max };
		/* Without CAP_SYS_RESOURCE only up to the hard limit. */
		if (setrlimit(RLIMIT_NOFILE, &raised) < 0) {
			limit.rlim_cur = limit.rlim_max;
			setrlimit(RLIMIT_NOFILE, &limit);
		}
	}
	for (; opened < count; opened++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		if (fd < 0)
			break;
		if (fastopen)
			setsockopt(fd, IPPROTO_TCP, 30 /* TCP_FASTOPEN_CONNECT */, &one, sizeof(one));
	}
	printf("%ld %ld\n", rss_kb(status), opened);
	return 0;
}
