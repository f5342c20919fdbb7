/* Warming before a measurement (scripts/bench-warm.c, and
 * scripts/bench-scale-runner.c).
 *
 * These machines are VMs whose balloon reports free memory to the host,
 * which takes it back a couple of seconds later: the first touch of such
 * a page afterwards costs the guest two to five times what a warm one
 * does, and a dump or restore that allocates 1 GiB (the pages file, the
 * restored memory) then takes 0.7-1.5 s instead of 0.4 s for the same
 * copy (a C model, cold against warm, six runs each). Touching fresh
 * memory and freeing it right before the measured command hands the
 * command pages the host backs again, whichever engine runs it (the same
 * model: 0.41-0.43 s, six runs). The scripts touch two to three times
 * what the command will take: the kernel need not hand out first the
 * pages freed last. */
#ifndef BENCH_WARM_H
#define BENCH_WARM_H
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

/* MemAvailable in MiB (0 if unknown). */
static long bench_mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long kib = 0;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib / 1024;
}

/* Touches up to `mib` MiB of fresh memory, leaving 1 GiB of what is
 * available untouched, and frees it again; returns the MiB touched. */
static long bench_warm(long mib)
{
	long room = bench_mem_available() - 1024;
	if (mib > room)
		mib = room;
	if (mib <= 0)
		return 0;
	size_t len = (size_t)mib << 20;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return 0;
	for (size_t i = 0; i < len; i += 4096)
		m[i] = 1;
	munmap(m, len);
	return mib;
}
#endif
