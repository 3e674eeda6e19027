/*
 * 100000 calls each of send, recv, poll and close on fds libtfo does not
 * track, for counting instructions with callgrind (bench/run, and the test
 * tests/tests/fastpath.rs). Every call fails or returns at once, so nearly
 * all instructions counted are libc's and libtfo's.
 */
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	char byte = 'x';
	struct pollfd p = { .fd = 1, .events = POLLOUT };

	for (int i = 0; i < 100000; i++) {
		send(999, &byte, 1, 0);
		recv(999, &byte, 1, 0);
		poll(&p, 1, 0);
		close(999);
	}
	return 0;
}
