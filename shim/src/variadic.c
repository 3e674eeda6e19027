/*
 * execl, execlp and execle take their arguments as C varargs, which stable
 * Rust cannot define. glibc's own versions call execve internally, out of
 * libtfo's reach, so these collect the arguments and call execv / execvp /
 * execve through the dynamic linker, where libtfo's hooks (exec.rs) see them.
 * exec.rs exports execl, execlp and execle as jumps to these.
 *
 * Each va_list is walked only inside the function that started it, which
 * is what the C standard allows on every ABI (on aarch64 a va_list passed
 * by value would not advance the caller's).
 */
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

/* Builds argv (arg0, the varargs, NULL) on the stack; leaves `ap` just past
 * the NULL so that execle can read its envp. */
#define COLLECT_ARGV(arg0, argv)                             \
	size_t n = 1;                                            \
	va_list ap;                                              \
	va_start(ap, arg0);                                      \
	while (va_arg(ap, const char *) != NULL)                 \
		n++;                                                 \
	va_end(ap);                                              \
	char *argv[n + 1];                                       \
	argv[0] = (char *)arg0;                                  \
	va_start(ap, arg0);                                      \
	for (size_t i = 1; i <= n; i++)                          \
		argv[i] = va_arg(ap, char *); /* argv[n] = NULL */

int tfo_execl(const char *path, const char *arg0, ...)
{
	COLLECT_ARGV(arg0, argv)
	va_end(ap);
	return execv(path, argv);
}

int tfo_execlp(const char *file, const char *arg0, ...)
{
	COLLECT_ARGV(arg0, argv)
	va_end(ap);
	return execvp(file, argv);
}

/* execle: the environment follows the NULL that ends the arguments. */
int tfo_execle(const char *path, const char *arg0, ...)
{
	COLLECT_ARGV(arg0, argv)
	char **envp = va_arg(ap, char **);
	va_end(ap);
	return execve(path, argv, envp);
}
