/*
 * tfo_oldkernel: runs a command as on a kernel before 4.11: a seccomp filter
 * answers ENOPROTOOPT to setsockopt(IPPROTO_TCP, TCP_FASTOPEN_CONNECT (30))
 * and setsockopt(IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE (34)), so libtfo's
 * automatic backend choice falls back to its emulation, as it must there.
 *
 * Usage: tfo_oldkernel COMMAND [ARG...]
 * (It first checks that the filter works: its own option must fail.)
 */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "seccomp.h"

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: tfo_oldkernel COMMAND [ARG...]\n");
		return 2;
	}
	struct sock_filter filter[] = {
		FILTER_START,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_setsockopt, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 30, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 34, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOPROTOOPT & SECCOMP_RET_DATA)),
	};
	if (install_filter("tfo_oldkernel", filter, sizeof(filter) / sizeof(filter[0])))
		return 1;
	/* Raw system calls: libtfo, preloaded here too, would answer the option. */
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || syscall(SYS_setsockopt, s, IPPROTO_TCP, 30, &one, sizeof(one)) == 0 || errno != ENOPROTOOPT
	    || syscall(SYS_setsockopt, s, IPPROTO_TCP, 1 /* TCP_NODELAY: still allowed */, &one, sizeof(one)) != 0) {
		fprintf(stderr, "tfo_oldkernel: the filter does not refuse TCP_FASTOPEN_CONNECT alone\n");
		return 1;
	}
	close(s);
	execvp(argv[1], argv + 1);
	perror("tfo_oldkernel: exec");
	return 127;
}
