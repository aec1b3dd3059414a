/** Command-line option checks shared by the Node tools (`npm run train`, `bench`, `soak`). */

/** A bad option: the tools print its message and exit with status 2 before starting anything. */
export class UsageError extends Error {}

/** `--name` as an integer in [min, max], or `fallback` when it was not given. */
export function integerOption(
  name: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${text}"`);
  }
  return v;
}
