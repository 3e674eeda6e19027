/*
 * The libc functions libtfo and std call, looked up on first use instead of
 * at every exec.
 *
 * Under /etc/ld.so.preload every process loads libtfo, and what loading
 * costs is the loader's work on its imports: a symbol lookup for each libc
 * function (about 700 instructions), a version check for each symbol
 * version they name (about 400), 50 functions and 14 versions, three times
 * what mapping the library costs. Rust calls libc through the GOT, so the
 * loader binds all of them at load even under `-z lazy`. build.rs links
 * libtfo with `--wrap=NAME` for each NAME below instead: every call libtfo
 * makes to NAME goes to the hidden __wrap_NAME here, which jumps through a
 * slot that is empty until the first call looks NAME up (dlsym
 * RTLD_DEFAULT: the definition the loader would have bound). NAME is then
 * no import at all: no lookup, no version, no relocation at load.
 *
 * Like real.rs's hooks, the first call of a function takes dlsym's
 * (recursive) loader lock. When libtfo first tracks a socket (fdtable.rs),
 * tfo_lazy_resolve_all looks every one up at once: from then on no hook
 * pays a lookup, so none lies between a SYN leaving and the blocking wait
 * a signal must interrupt, and a signal handler's call on a tracked socket
 * finds them resolved. dlsym itself is bound by the loader on its first
 * call (lazily, the PLT way), as is anything else C calls.
 *
 * __wrap_NAME is a tail jump, so the arguments (%al of the variadic
 * syscall() included), the return value, errno and the caller's frame are
 * the function's own; the first call saves the argument registers around
 * the lookup. A name libtfo stops using costs nothing (its section is
 * dropped by --gc-sections); a name it starts using without listing it
 * here is bound at load as before, and tests/tests/load.rs counts the
 * start cost. Every name here is in every glibc libtfo runs on (it needs
 * 2.34's dlsym): one missing is reported and the process aborts, where the
 * loader would have refused to start it.
 *
 * x86-64 only (the stubs are written in its assembly); elsewhere build.rs
 * adds no --wrap and tfo_lazy_resolve_all does nothing.
 */
#if defined(__x86_64__)
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Called by tfo_lazy_bind with the slot and the NUL-terminated name.
 * (dlsym here is __wrap_dlsym, the PLT jump below: never a slot.) */
__attribute__((visibility("hidden"), used)) void *tfo_lazy_resolve(void **slot, const char *name)
{
	void *found = dlsym(RTLD_DEFAULT, name);
	if (!found) {
		static const char prefix[] = "libtfo: libc lacks ";
		(void)!write(2, prefix, sizeof(prefix) - 1);
		(void)!write(2, name, strlen(name));
		(void)!write(2, "\n", 1);
		abort();
	}
	__atomic_store_n(slot, found, __ATOMIC_RELEASE);
	return found;
}

/*
 * The first call of any NAME: %r11 = its slot, %r10 = its name. Saves the
 * integer argument registers and %rax (a variadic call's vector count),
 * resolves, restores them and jumps to the function as if called directly.
 * None of these functions takes floating-point arguments.
 */
__asm__(".pushsection .text\n"
	".globl tfo_lazy_bind\n"
	".hidden tfo_lazy_bind\n"
	".type tfo_lazy_bind,@function\n"
	"tfo_lazy_bind:\n"
	"\t.cfi_startproc\n"
	"\tpushq %rbp\n"
	"\t.cfi_def_cfa_offset 16\n"
	"\t.cfi_offset %rbp, -16\n"
	"\tmovq %rsp, %rbp\n"
	"\t.cfi_def_cfa_register %rbp\n"
	"\tpushq %rdi\n\tpushq %rsi\n\tpushq %rdx\n\tpushq %rcx\n"
	"\tpushq %r8\n\tpushq %r9\n\tpushq %rax\n\tpushq %rax\n" /* twice: 16-byte alignment */
	"\tmovq %r11, %rdi\n"
	"\tmovq %r10, %rsi\n"
	"\tcall tfo_lazy_resolve\n"
	"\tmovq %rax, %r11\n"
	"\tpopq %rax\n\tpopq %rax\n\tpopq %r9\n\tpopq %r8\n"
	"\tpopq %rcx\n\tpopq %rdx\n\tpopq %rsi\n\tpopq %rdi\n"
	"\tpopq %rbp\n"
	"\t.cfi_def_cfa %rsp, 8\n"
	"\tjmpq *%r11\n"
	"\t.cfi_endproc\n"
	".size tfo_lazy_bind, . - tfo_lazy_bind\n"
	".popsection\n");

/* __wrap_NAME and its slot (zero: no relocation) and name, in sections of
 * their own so that --gc-sections drops an unused one. */
#define STUB(name)                                                             \
	__asm__(".pushsection .bss.tfo_slot_" #name ",\"aw\",@nobits\n"          \
		".balign 8\n"                                                  \
		"tfo_slot_" #name ": .zero 8\n"                                \
		".section .rodata.tfo_name_" #name ",\"a\",@progbits\n"     \
		"tfo_name_" #name ": .asciz \"" #name "\"\n"                  \
		".section .text.__wrap_" #name ",\"ax\",@progbits\n"         \
		".globl __wrap_" #name "\n"                                    \
		".hidden __wrap_" #name "\n"                                   \
		".type __wrap_" #name ",@function\n"                           \
		"__wrap_" #name ":\n"                                          \
		"\tmovq tfo_slot_" #name "(%rip), %r11\n"                     \
		"\ttestq %r11, %r11\n"                                        \
		"\tjz 1f\n"                                                   \
		"\tjmpq *%r11\n"                                              \
		"1:\tleaq tfo_slot_" #name "(%rip), %r11\n"                   \
		"\tleaq tfo_name_" #name "(%rip), %r10\n"                     \
		"\tjmp tfo_lazy_bind\n"                                       \
		".size __wrap_" #name ", . - __wrap_" #name "\n"              \
		".popsection\n");

/* dlsym itself: a jump through its PLT slot, which the loader binds on the
 * first call. */
__asm__(".pushsection .text.__wrap_dlsym,\"ax\",@progbits\n"
	".globl __wrap_dlsym\n"
	".hidden __wrap_dlsym\n"
	".type __wrap_dlsym,@function\n"
	"__wrap_dlsym:\n"
	"\tjmp __real_dlsym@PLT\n"
	".size __wrap_dlsym, . - __wrap_dlsym\n"
	".popsection\n");

/* Every function, in a list build.rs reads (one X(name) a line). */
#define LAZY_FUNCTIONS(X) \
	X(__errno_location) \
	X(__libc_current_sigrtmax) \
	X(__register_atfork) \
	X(__xpg_strerror_r) \
	X(abort) \
	X(bcmp) \
	X(bind) \
	X(calloc) \
	X(clock_gettime) \
	X(dl_iterate_phdr) \
	X(free) \
	X(fstat) \
	X(fstat64) \
	X(getauxval) \
	X(getcwd) \
	X(getenv) \
	X(geteuid) \
	X(getpid) \
	X(gettid) \
	X(getuid) \
	X(kill) \
	X(lseek) \
	X(lseek64) \
	X(lstat) \
	X(malloc) \
	X(memcpy) \
	X(memmove) \
	X(memset) \
	X(mincore) \
	X(mmap) \
	X(mmap64) \
	X(munmap) \
	X(open) \
	X(open64) \
	X(pipe2) \
	X(posix_memalign) \
	X(pread) \
	X(process_vm_readv) \
	X(readlink) \
	X(realloc) \
	X(realpath) \
	X(sched_yield) \
	X(sigaction) \
	X(stat64) \
	X(statx) \
	X(strlen) \
	X(syscall) \
	X(tee) \

LAZY_FUNCTIONS(STUB)

/* The slots and names, as C sees them (hidden: addressed without the GOT). */
#define DECLARE(name)                                                                              \
	extern void *tfo_slot_##name __asm__("tfo_slot_" #name) __attribute__((visibility("hidden"))); \
	extern const char tfo_name_##name[] __asm__("tfo_name_" #name) __attribute__((visibility("hidden")));
LAZY_FUNCTIONS(DECLARE)

/* Looks up every function not looked up yet (one missing is left alone:
 * its first call reports it). Called by fdtable.rs the first time libtfo
 * tracks a socket. */
__attribute__((visibility("hidden"))) void tfo_lazy_resolve_all(void)
{
#define RESOLVE(name)                                                                  \
	if (!__atomic_load_n(&tfo_slot_##name, __ATOMIC_ACQUIRE)) {                     \
		void *found = dlsym(RTLD_DEFAULT, tfo_name_##name);                         \
		if (found)                                                              \
			__atomic_store_n(&tfo_slot_##name, found, __ATOMIC_RELEASE);         \
	}
	LAZY_FUNCTIONS(RESOLVE)
}

#else

/* Elsewhere the loader binds libc's functions at load, as usual. */
__attribute__((visibility("hidden"))) void tfo_lazy_resolve_all(void) {}

#endif
