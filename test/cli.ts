/** Running the project's Node tools as a user would, for the tests that spawn them. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const tsx = join('node_modules', '.bin', 'tsx');

/** `npm run train -- ...args`, to completion. */
export function train(args: string[], timeoutMs = 900_000): SpawnSyncReturns<string> {
  return spawnSync(tsx, ['src/cli/train.ts', ...args], { encoding: 'utf8', timeout: timeoutMs });
}

export const tempDir = () => mkdtempSync(join(tmpdir(), 'webgpu-vae-train-'));
