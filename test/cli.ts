/** Running the project's Node tools as a user would, for the tests that spawn them. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';
import { tempDir } from './temp';

export { fileTempDir, tempDir } from './temp';

export const tsx = join('node_modules', '.bin', 'tsx');

/**
 * The environment for a spawned CLI or bench: the process's own temporary folder (TMPDIR), which
 * the test removes when it finishes, so the browser profile a killed or timed-out run leaves goes
 * with it.
 */
export const toolEnv = (env: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  TMPDIR: tempDir('tmp'),
  ...env,
});

/**
 * `npm run train -- ...args`, to completion. Every run names its `--out`: the default, results/
 * in the checkout, holds whatever the user's own runs left there.
 */
export function train(args: string[], timeoutMs = 900_000): SpawnSyncReturns<string> {
  if (!args.includes('--help') && !args.some((a) => a === '--out' || a.startsWith('--out='))) {
    throw new Error(`train(${JSON.stringify(args)}): pass --out (a tempDir()); results/ is the user's`);
  }
  return spawnSync(tsx, ['src/cli/train.ts', ...args], { encoding: 'utf8', timeout: timeoutMs, env: toolEnv() });
}

/** The log lines that must match between two runs from epoch `from` on: its step lines, and every summary. */
export const logFrom = (from: number, text: string) =>
  text.split('\n').filter((l) => {
    const m = /^Train Epoch: (\d+) /.exec(l);
    return m ? Number(m[1]) >= from : l.startsWith('====>');
  });

/** `/usr/bin/python3 ...args` (PyTorch is Debian's python3-torch there), as the README runs the scripts. */
export function python(args: string[]): SpawnSyncReturns<string> {
  const r = spawnSync('/usr/bin/python3', args, { encoding: 'utf8', timeout: 120_000 });
  if (/No module named 'torch'/.test(r.stderr))
    expect.fail('PyTorch is missing for /usr/bin/python3: apt install python3-torch');
  return r;
}
