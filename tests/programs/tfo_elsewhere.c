/* A client that waits for its server on one connection while the server
 * waits for its other connection, which the client connected but never
 * touches (FTP's passive mode has this shape):
 *
 *   tfo_elsewhere ADDRESS CONTROL_PORT DATA_PORT libc|raw|futex
 *
 * It connects the control connection and writes "hello" on it, connects
 * the data connection (deferred under libtfo when a cookie is cached),
 * then waits for the control connection's reply: with libc's read()
 * (libtfo sees the thread that deferred the data connection block), with
 * a raw read system call, or (futex) in a raw futex wait while a second
 * thread makes that raw read and wakes it: both unseen by libtfo, whose
 * timer must start the data connection. Prints the reply and how long
 * the whole dialogue took ("elapsed MS"). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int control;
static char reply[64];
static long got = -1;
static int done_word;

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int connected(const char *address, int port)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || inet_pton(AF_INET, address, &to.sin_addr) != 1 || connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static void *raw_reader(void *unused)
{
	(void)unused;
	got = syscall(SYS_read, control, reply, sizeof(reply) - 1);
	__atomic_store_n(&done_word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &done_word, FUTEX_WAKE, 1, NULL, NULL, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: tfo_elsewhere ADDRESS CONTROL_PORT DATA_PORT libc|raw|futex\n");
		return 2;
	}
	long start = now_ms();
	control = connected(argv[1], atoi(argv[2]));
	if (write(control, "hello\n", 6) != 6) {
		perror("write");
		return 1;
	}
	int data = connected(argv[1], atoi(argv[3]));
	if (strcmp(argv[4], "libc") == 0) {
		got = read(control, reply, sizeof(reply) - 1);
	} else if (strcmp(argv[4], "raw") == 0) {
		got = syscall(SYS_read, control, reply, sizeof(reply) - 1);
	} else {
		pthread_t reader;
		pthread_create(&reader, NULL, raw_reader, NULL);
		while (!__atomic_load_n(&done_word, __ATOMIC_SEQ_CST))
			syscall(SYS_futex, &done_word, FUTEX_WAIT, 0, NULL, NULL, 0);
		pthread_join(reader, NULL);
	}
	if (got <= 0) {
		perror("read");
		return 1;
	}
	reply[got] = 0;
	printf("reply %s", reply);
	printf("elapsed %ld\n", now_ms() - start);
	close(data);
	close(control);
	return 0;
}
