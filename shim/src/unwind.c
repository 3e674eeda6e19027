/*
 * The unwinder (libgcc_s), bound on first use instead of at every exec.
 *
 * Rust's panic machinery (catch_unwind in every export) refers to twelve
 * _Unwind_* functions of libgcc_s. Linked directly, they make libgcc_s a
 * DT_NEEDED of libtfo: every process started under the preload then maps
 * it, relocates it and runs its constructor, about a tenth of a millisecond
 * per exec, for a library used only when a hook panics or a thread is
 * cancelled inside one. These hidden definitions satisfy the references
 * instead (the linker then drops libgcc_s, being --as-needed), and forward
 * to the process's libgcc_s, opened on the first call: the one glibc
 * already loaded for a thread's cancellation, or a fresh load. There is
 * still exactly one unwinder in the process.
 *
 * Each forwarder ends in a tail call, so the unwinder sees its caller's
 * frame as if it had been called directly; the frame of the first,
 * resolving call has ordinary unwind tables and is unwound through.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* Declared hidden here, so the definitions below stay inside libtfo. */
#pragma GCC visibility push(hidden)
#include <unwind.h>
#pragma GCC visibility pop

/* Every function libtfo uses. */
#define UNWIND_FUNCTIONS(X)                                                  \
	X(_Unwind_Backtrace) X(_Unwind_DeleteException) X(_Unwind_GetDataRelBase) \
	X(_Unwind_GetIP) X(_Unwind_GetIPInfo) X(_Unwind_GetLanguageSpecificData)  \
	X(_Unwind_GetRegionStart) X(_Unwind_GetTextRelBase)                       \
	X(_Unwind_RaiseException) X(_Unwind_Resume) X(_Unwind_SetGR) X(_Unwind_SetIP)

/* Resolved pointers, written once (racing resolvers write the same values). */
#define SLOT(name) static __typeof__(&name) real_##name;
UNWIND_FUNCTIONS(SLOT)

static void fail(const char *what)
{
	static const char prefix[] = "libtfo: cannot load the unwinder (libgcc_s.so.1): ";
	const char *why = what ? what : "missing symbol";
	/* Nothing can unwind without it: say why, then stop as Rust would. */
	(void)!write(2, prefix, sizeof(prefix) - 1);
	(void)!write(2, why, strlen(why));
	(void)!write(2, "\n", 1);
	abort();
}

static void resolve(void)
{
	void *gcc_s = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!gcc_s)
		fail(dlerror());
#define LOOKUP(name)                                                   \
	{                                                              \
		__typeof__(&name) found = (__typeof__(&name))dlsym(gcc_s, #name); \
		if (!found)                                                \
			fail(#name);                                           \
		__atomic_store_n(&real_##name, found, __ATOMIC_RELEASE);   \
	}
	UNWIND_FUNCTIONS(LOOKUP)
}

#define GET(name) (__atomic_load_n(&real_##name, __ATOMIC_ACQUIRE) ?: (resolve(), real_##name))

_Unwind_Reason_Code _Unwind_Backtrace(_Unwind_Trace_Fn trace, void *arg)
{
	return GET(_Unwind_Backtrace)(trace, arg);
}

void _Unwind_DeleteException(struct _Unwind_Exception *exception)
{
	GET(_Unwind_DeleteException)(exception);
}

_Unwind_Ptr _Unwind_GetDataRelBase(struct _Unwind_Context *context)
{
	return GET(_Unwind_GetDataRelBase)(context);
}

_Unwind_Ptr _Unwind_GetIP(struct _Unwind_Context *context)
{
	return GET(_Unwind_GetIP)(context);
}

_Unwind_Ptr _Unwind_GetIPInfo(struct _Unwind_Context *context, int *before)
{
	return GET(_Unwind_GetIPInfo)(context, before);
}

void *_Unwind_GetLanguageSpecificData(struct _Unwind_Context *context)
{
	return GET(_Unwind_GetLanguageSpecificData)(context);
}

_Unwind_Ptr _Unwind_GetRegionStart(struct _Unwind_Context *context)
{
	return GET(_Unwind_GetRegionStart)(context);
}

_Unwind_Ptr _Unwind_GetTextRelBase(struct _Unwind_Context *context)
{
	return GET(_Unwind_GetTextRelBase)(context);
}

_Unwind_Reason_Code _Unwind_RaiseException(struct _Unwind_Exception *exception)
{
	return GET(_Unwind_RaiseException)(exception);
}

void _Unwind_Resume(struct _Unwind_Exception *exception)
{
	GET(_Unwind_Resume)(exception);
}

void _Unwind_SetGR(struct _Unwind_Context *context, int index, _Unwind_Word value)
{
	GET(_Unwind_SetGR)(context, index, value);
}

void _Unwind_SetIP(struct _Unwind_Context *context, _Unwind_Ptr ip)
{
	GET(_Unwind_SetIP)(context, ip);
}
