/*
 * execl, execlp and execle take their arguments as C varargs, which stable
 * Rust cannot define. glibc's own versions call execve internally, out of
 * libtfo's reach, so these collect the arguments and call execv / execvp /
 * execve through the dynamic linker, where libtfo's hooks (exec.rs) see them.
 * exec.rs exports execl, execlp and execle as jumps to these.
 */
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

/* Arguments after arg0, up to and excluding the terminating NULL. */
static size_t count_args(va_list ap)
{
	size_t n = 0;
	while (va_arg(ap, const char *) != NULL)
		n++;
	return n;
}

/* argv = { arg0, the n arguments in ap, NULL }; returns ap past the NULL. */
static void collect_args(char **argv, const char *arg0, size_t n, va_list ap)
{
	argv[0] = (char *)arg0;
	for (size_t i = 1; i <= n + 1; i++)
		argv[i] = va_arg(ap, char *);
}

/* Builds argv on the stack from arg0 and the varargs, then runs `call`. */
#define EXEC_WITH_ARGV(arg0, call)                 \
	va_list ap;                                    \
	va_start(ap, arg0);                            \
	size_t n = count_args(ap);                     \
	va_end(ap);                                    \
	char *argv[n + 2];                             \
	va_start(ap, arg0);                            \
	collect_args(argv, arg0, n, ap);               \
	va_end(ap);                                    \
	return call;

int tfo_execl(const char *path, const char *arg0, ...)
{
	EXEC_WITH_ARGV(arg0, execv(path, argv))
}

int tfo_execlp(const char *file, const char *arg0, ...)
{
	EXEC_WITH_ARGV(arg0, execvp(file, argv))
}

/* execle: the environment follows the NULL that ends the arguments. */
int tfo_execle(const char *path, const char *arg0, ...)
{
	va_list ap;
	va_start(ap, arg0);
	size_t n = count_args(ap);
	char **envp = va_arg(ap, char **);
	va_end(ap);
	char *argv[n + 2];
	va_start(ap, arg0);
	collect_args(argv, arg0, n, ap);
	va_end(ap);
	return execve(path, argv, envp);
}
