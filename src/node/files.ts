/**
 * Writing result files so that a kill or a power cut leaves the old file or the new one, never
 * half of one, and clearing away the temporaries of writers that were killed (Node only).
 */
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** `path`'s temporary while this process writes it; the pid tells a later run whether its writer is gone. */
const temporaryOf = (path: string, pid: number) => `${path}.tmp-${pid}`;

/**
 * Writes `bytes` to a temporary file, fsyncs it, renames it over `path`, then fsyncs the folder.
 * Without the first fsync a power cut after the rename can leave `path` naming an empty or torn
 * file (the rename may reach the disk before the data); the folder's fsync makes the rename
 * itself durable, so a checkpoint reported saved stays saved.
 */
export function writeAtomic(path: string, bytes: Uint8Array): void {
  const tmp = temporaryOf(path, process.pid);
  const fd = openSync(tmp, 'w');
  try {
    writeFileSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  syncFolder(dirname(path));
}

/** fsync of a folder, where the platform has one (not Windows, nor some file systems). */
function syncFolder(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return; // Windows cannot open a folder
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EPERM' && code !== 'EISDIR') throw e;
  } finally {
    closeSync(fd);
  }
}

/** True only when no process `pid` exists. EPERM means it exists but belongs to another user. */
function processIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Deletes the temporaries that killed writers left in `dir`: names `<file>.tmp-<pid>` where
 * `<file>` matches `files` (the names this program writes there) and no process `pid` exists.
 * Anything else — other programs' files, a writer that is alive or merely not ours to signal —
 * is left alone.
 */
export function removeStaleTemporaries(dir: string, files: RegExp): void {
  for (const name of readdirSync(dir)) {
    const m = /^(.+)\.tmp-([1-9]\d{0,9})$/.exec(name);
    if (m && files.test(m[1]) && processIsGone(Number(m[2]))) rmSync(join(dir, name), { force: true });
  }
}
