/*
 * What the seccomp wrappers (tfo_nonetlink, tfo_oldkernel) share: a filter
 * starts by letting calls of another architecture through (FILTER_START,
 * then the wrapper's own rules, which load the syscall number first), and
 * is installed for this process and what it execs (install_filter).
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "unsupported architecture"
#endif

#define FILTER_START \
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)), \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0), \
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), \
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))

/* Installs FILTER (LEN rules); 0, or 1 after saying why on stderr. */
static int install_filter(const char *who, struct sock_filter *filter, size_t len)
{
	struct sock_fprog prog = { .len = (unsigned short)len, .filter = filter };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		fprintf(stderr, "%s: seccomp: %s\n", who, strerror(errno));
		return 1;
	}
	return 0;
}
