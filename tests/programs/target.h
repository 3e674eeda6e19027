/*
 * The destination the reliability programs connect to, from the numeric
 * ADDRESS and PORT of their command line.
 */
#ifndef TFO_TARGET_H
#define TFO_TARGET_H
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static struct sockaddr_storage target;
static socklen_t target_len;

/* Sets `target`; -1 (after a one-line message) when ADDRESS or PORT is not numeric. */
static int set_target(const char *program, const char *address, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV }, *ai;
	if (getaddrinfo(address, port, &hints, &ai) != 0) {
		fprintf(stderr, "%s: bad address %s port %s\n", program, address, port);
		return -1;
	}
	memcpy(&target, ai->ai_addr, ai->ai_addrlen);
	target_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}
#endif
