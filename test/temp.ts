/**
 * Folders the tests make in the temporary folder. Each is removed by the test (or the file) that
 * made it, whether that passes or fails; test/setup/global.ts gives the run a temporary folder of
 * its own and fails the run if anything is left in it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';

const make = (what: string) => mkdtempSync(join(tmpdir(), `webgpu-vae-${what}-`));
/** Removes `dir`, retrying for a killed CLI's browser that may still be closing its profile there. */
export const removeDir = (dir: string) =>
  rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });

/** A new folder, removed when the test that asked for it finishes. Only inside a test. */
export function tempDir(what = 'test'): string {
  const made: string[] = [];
  onTestFinished(() => made.forEach(removeDir)); // throws outside a test, before anything is made
  made.push(make(what));
  return made[0]!;
}

const forFile: string[] = [];
afterAll(() => forFile.splice(0).forEach(removeDir));

/** A new folder, removed after the file's tests: for a beforeAll, or for what several tests share. */
export function fileTempDir(what = 'test'): string {
  const dir = make(what);
  forFile.push(dir);
  return dir;
}
