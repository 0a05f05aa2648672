// Bounded concurrency for the per-file work of large entries (commit, restore, verify): tens of thousands of small
// files are dominated by round trips to libuv's threads and by fsyncs, which overlap well and serialize badly.

/** Files handled at once: enough to keep libuv's 4 threads busy and let the disk merge fsyncs into fewer flushes. */
export const FILES_AT_ONCE = 16;

/**
 * Calls `work` on every item with at most `limit` calls under way. After the first failure nothing new starts; the
 * calls under way end, then that failure is thrown (so no file is still being written when the caller cleans up).
 */
export async function forEachLimited<T>(items: readonly T[], work: (item: T, index: number) => Promise<void>, limit = FILES_AT_ONCE): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const lane = async () => {
    while (failure === undefined && next < items.length) {
      const index = next++;
      try {
        await work(items[index]!, index);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failure !== undefined) throw failure.error;
}
