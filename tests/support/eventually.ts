/**
 * Retries an assertion until it passes or `timeoutMs` runs out, then throws its last
 * failure. For outcomes that arrive asynchronously (a saga's last step, an event).
 */
export async function eventually<T>(assertion: () => Promise<T> | T, timeoutMs = 15_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await assertion();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}
