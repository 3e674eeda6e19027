/*
 * The frames the reliability programs send and tfo-sink checks: "TFO1", a
 * 32-bit id, a 64-bit body length, then the body, a keystream derived from
 * the id (the same as tfo-sink's frame::word), so any byte lost, duplicated,
 * reordered or changed is seen at its offset.
 */
#ifndef TFO_FRAME_H
#define TFO_FRAME_H
#include <stdint.h>
#include <string.h>

#define FRAME_HEADER 16

/* Word k of the keystream of frame `id`. */
static inline uint64_t key_word(uint32_t id, uint64_t k)
{
	uint64_t z = (((uint64_t)id << 40) ^ k ^ 0x5851f42d4c957f2dULL) + 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Frame `id` with a body of `len` bytes into `out`; returns its size. */
static inline size_t make_frame(unsigned char *out, uint32_t id, uint64_t len)
{
	memcpy(out, "TFO1", 4);
	memcpy(out + 4, &id, 4);
	memcpy(out + 8, &len, 8);
	for (uint64_t k = 0; k * 8 < len; k++) {
		uint64_t w = key_word(id, k);
		memcpy(out + FRAME_HEADER + k * 8, &w, len - k * 8 < 8 ? len - k * 8 : 8);
	}
	return FRAME_HEADER + len;
}
#endif
