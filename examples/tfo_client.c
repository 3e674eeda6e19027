/*
 * The client from the commit that added TCP_FASTOPEN_CONNECT to Linux
 * (19f6d3f3c842, "net/tcp-fastopen: Add new API support", 4.11):
 *
 *     setsockopt(fd, SOL_TCP, TCP_FASTOPEN_CONNECT, &val, sizeof(val));
 *     connect(fd, (const struct sockaddr *)&addr, sizeof(addr));
 *     write(fd, buf, len);
 *     read(fd, buf, len);
 *
 * With a cookie cached for the server, the request rides in the SYN.
 * Usage: tfo_client ADDRESS PORT [MESSAGE]
 * Prints the reply, then whether the server acknowledged data in the SYN.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai;
	const char *msg = argc > 3 ? argv[3] : "hello over TCP Fast Open";
	char reply[4096];
	int fd, val = 1;
	ssize_t n;

	if (argc < 3) {
		fprintf(stderr, "usage: %s ADDRESS PORT [MESSAGE]\n", argv[0]);
		return 2;
	}
	if (getaddrinfo(argv[1], argv[2], &hints, &ai) != 0)
		die("getaddrinfo");

	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_TCP, TCP_FASTOPEN_CONNECT, &val, sizeof(val)) < 0)
		die("setsockopt(TCP_FASTOPEN_CONNECT)");
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("connect");
	if (write(fd, msg, strlen(msg)) < 0)
		die("write");
	n = read(fd, reply, sizeof(reply) - 1);
	if (n < 0)
		die("read");
	reply[n] = '\0';

	struct tcp_info info;
	socklen_t len = sizeof(info);
	memset(&info, 0, sizeof(info));
	getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len);
	printf("reply: %s\n", reply);
	printf("data in SYN acknowledged: %s\n", (info.tcpi_options & TCPI_OPT_SYN_DATA) ? "yes" : "no");
	close(fd);
	freeaddrinfo(ai);
	return 0;
}
