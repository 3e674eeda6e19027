/*
 * Connection rate: THREADS threads each make connections in a loop until
 * the time is up (socket, connect, a 32-byte request, its echo, close).
 * With -o each socket first sets TCP_FASTOPEN_CONNECT. The close resets the
 * connection (SO_LINGER 0): tens of thousands of TIME_WAIT sockets left by
 * one run would slow the next run's search for a free port, and the runs
 * that are compared follow each other.
 *
 * Usage: rate [-o] [-t THREADS] [-d MILLISECONDS] ADDRESS PORT
 * Prints "CONNECTIONS_PER_SECOND CONNECTIONS ERRORS CPU_US_PER_CONNECTION",
 * the last being this process's own CPU time (user and system), which
 * scheduling noise from other processes disturbs far less than the rate.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

static struct addrinfo *address;
static int fastopen;
static double deadline;
static atomic_long done, errors;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int one_connection(void)
{
	static const char request[32] = "0123456789abcdef0123456789abcde";
	char reply[64];
	int fd = socket(address->ai_family, SOCK_STREAM, 0), one = 1, ok = 0;
	if (fd < 0)
		return 0;
	if (fastopen)
		setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one));
	if (connect(fd, address->ai_addr, address->ai_addrlen) == 0 && write(fd, request, sizeof(request)) == sizeof(request)) {
		size_t got = 0;
		ssize_t n;
		while (got < sizeof(request) && (n = read(fd, reply, sizeof(reply))) > 0)
			got += n;
		ok = got == sizeof(request);
	}
	struct linger reset = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	close(fd);
	return ok;
}

static void *worker(void *unused)
{
	(void)unused;
	while (now() < deadline) {
		if (one_connection())
			atomic_fetch_add(&done, 1);
		else
			atomic_fetch_add(&errors, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	int threads = 1, millis = 1000, opt;
	while ((opt = getopt(argc, argv, "ot:d:")) != -1) {
		switch (opt) {
		case 'o': fastopen = 1; break;
		case 't': threads = atoi(optarg); break;
		case 'd': millis = atoi(optarg); break;
		default: return 2;
		}
	}
	if (argc - optind != 2 || getaddrinfo(argv[optind], argv[optind + 1], &hints, &address) != 0) {
		fprintf(stderr, "usage: rate [-o] [-t THREADS] [-d MILLISECONDS] ADDRESS PORT\n");
		return 2;
	}
	pthread_t tids[threads];
	double start = now();
	deadline = start + millis / 1e3;
	for (int i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, worker, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	double took = now() - start;
	struct rusage usage;
	getrusage(RUSAGE_SELF, &usage);
	double cpu = usage.ru_utime.tv_sec * 1e6 + usage.ru_utime.tv_usec + usage.ru_stime.tv_sec * 1e6 + usage.ru_stime.tv_usec;
	printf("%.0f %ld %ld %.2f\n", done / took, (long)done, (long)errors, done ? cpu / done : 0.0);
	return 0;
}
