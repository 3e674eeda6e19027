/*
 * tfo_nonetlink: runs a command under a seccomp filter that denies
 * socket(AF_NETLINK, ...) with EPERM, as a sandbox might: libtfo's emulation
 * can then not ask the kernel's tcp_metrics cache for cookies.
 *
 * Usage: tfo_nonetlink COMMAND [ARG...]
 * (It first checks that the filter works: its own netlink socket must fail.)
 */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "seccomp.h"

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: tfo_nonetlink COMMAND [ARG...]\n");
		return 2;
	}
	struct sock_filter filter[] = {
		FILTER_START,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	if (install_filter("tfo_nonetlink", filter, sizeof(filter) / sizeof(filter[0])))
		return 1;
	if (socket(AF_NETLINK, SOCK_DGRAM, 0) >= 0 || errno != EPERM) {
		fprintf(stderr, "tfo_nonetlink: the filter does not deny netlink sockets\n");
		return 1;
	}
	execvp(argv[1], argv + 1);
	perror("tfo_nonetlink: exec");
	return 127;
}
