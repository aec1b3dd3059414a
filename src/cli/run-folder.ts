/**
 * The run folder (--out): what a run writes there, the refusal to overwrite an earlier run,
 * and the lock that keeps two runs from training into it at once.
 */
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FolderLockedError, LOCK_FILE, lockFolder, removeStaleTemporaries } from '../node/files';
import { UsageError } from '../node/options';
import type { TrainOptions } from './options';

/** The files a run writes in --out. */
export const RUN_FILES = /^(checkpoint\.safetensors|metrics\.jsonl|(reconstruction|sample)_\d+\.png)$/;

/** Whether two paths name one file (so a folder's checkpoint is the one being resumed). */
function sameFile(a: string, b: string): boolean {
  const [x, y] = [statSync(a), statSync(b)];
  return x.dev === y.dev && x.ino === y.ino;
}

/**
 * Takes --out for this run, creating it if needed, before anything is checked or written there:
 * two runs started together into one folder (a sweep without --out, say) would otherwise both
 * pass the earlier-run check and then overwrite each other's checkpoint epoch by epoch. Throws
 * UsageError naming the owner's pid when another live run holds it. The returned release
 * removes the lock, and the folder too when this run created it and left it empty.
 */
export function takeOutFolder(out: string): () => void {
  let created: string | undefined;
  try {
    created = mkdirSync(out, { recursive: true });
  } catch (e) {
    throw new UsageError(`--out ${out} cannot be made a folder: ${(e as Error).message}`);
  }
  let unlock: () => void;
  try {
    unlock = lockFolder(out);
  } catch (e) {
    if (created) {
      try {
        rmdirSync(out);
      } catch {
        /* the owner's lock is in it */
      }
    }
    if (!(e instanceof FolderLockedError)) throw e;
    throw new UsageError(
      `--out ${out} is in use: another run (process ${e.pid}) is training into it, and two runs would overwrite each ` +
        `other's checkpoint. Wait for it to finish, or pass another --out (if process ${e.pid} is not a training run, ` +
        `its pid was reused after a crash: delete ${join(out, LOCK_FILE)}).`,
    );
  }
  removeStaleTemporaries(out, RUN_FILES); // a killed run's half-written files
  return () => {
    unlock();
    if (created !== undefined) {
      try {
        rmdirSync(out); // only when empty: a run refused before writing anything leaves nothing behind
      } catch {
        /* it holds the run */
      }
    }
  };
}

/**
 * An earlier run in --out is only continued (--resume its checkpoint) or replaced (--overwrite):
 * otherwise the new run would overwrite its checkpoint after one epoch, and nothing could bring
 * it back. Throws UsageError (exit 2) naming the folder and the ways on.
 */
export function checkOutFolder(o: TrainOptions): void {
  if (o.overwrite) return;
  let earlier: string[];
  try {
    earlier = readdirSync(o.out).filter((name) => RUN_FILES.test(name));
  } catch {
    return; // no folder yet
  }
  if (earlier.length === 0) return;
  const checkpoint = join(o.out, 'checkpoint.safetensors');
  const hasCheckpoint = earlier.includes('checkpoint.safetensors');
  if (o.resume && hasCheckpoint && sameFile(o.resume, checkpoint)) return;
  const images = earlier.filter((name) => name.endsWith('.png')).length;
  const parts = [
    ...earlier.filter((name) => !name.endsWith('.png')).sort(),
    ...(images > 0 ? [`${images} image${images > 1 ? 's' : ''}`] : []),
  ];
  const held = parts.length > 1 ? `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}` : parts[0];
  throw new UsageError(
    `--out ${o.out} already holds an earlier run (${held})` +
      (o.resume ? `, not the one in ${o.resume}` : '') +
      ', and this run would overwrite it. Pass ' +
      (hasCheckpoint ? `--resume ${checkpoint} to continue it, ` : '') +
      '--overwrite to replace it, or another --out.',
  );
}
