/**
 * Writing result files so that a kill or a power cut leaves the old file or the new one, never
 * half of one, clearing away the temporaries of writers that were killed, and locking a folder
 * for one writer at a time (Node only).
 */
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
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

/** The file that marks a folder as taken by a running process; it holds that process's pid. */
export const LOCK_FILE = '.webgpu-vae.lock';

/** A folder another live process has locked; `pid` is that process. */
export class FolderLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`${dir} is in use by process ${pid}`);
  }
}

/** The pid a lock file names, or null when it cannot be read as one. ENOENT is passed on. */
function lockOwner(path: string): number | null {
  const m = /^([1-9]\d{0,9})\n?$/.exec(readFileSync(path, 'utf8'));
  return m ? Number(m[1]) : null;
}

/**
 * Takes `dir` for this process until the returned release is called (or the process exits).
 * The lock is `dir/.webgpu-vae.lock`, holding the owner's pid; it is linked into place from a
 * complete temporary, so it appears atomically and never half-written. A lock whose owner is
 * gone (ESRCH, the temporaries' rule) is stale: it is moved aside under a name of our own and
 * deleted only if it is still the stale one, so two runs that find the same stale lock cannot
 * delete each other's fresh one. A live owner, or one that exists as another user, throws
 * FolderLockedError. A lock file that names no pid was not written by this code: it is left
 * alone, and the error says so.
 */
export function lockFolder(dir: string): () => void {
  const lock = join(dir, LOCK_FILE);
  const mine = `${lock}.tmp-${process.pid}`;
  writeFileSync(mine, `${process.pid}\n`);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(mine, lock);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 8) throw e;
      }
      let owner: number | null;
      try {
        owner = lockOwner(lock);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
        throw e;
      }
      if (owner === null)
        throw new Error(
          `${lock} is not a lock this program wrote (it names no process): delete it if no run is using ${dir}`,
        );
      if (!processIsGone(owner)) throw new FolderLockedError(dir, owner);
      const aside = `${lock}.stale-${process.pid}`;
      try {
        renameSync(lock, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // another run moved it first
        throw e;
      }
      // Between our read and the rename another run may have replaced the stale lock with its own:
      // then put that one back (link fails if a third run holds the folder by now, which is fine).
      if (lockOwner(aside) !== owner) {
        try {
          linkSync(aside, lock);
        } catch {
          /* the folder has an owner either way */
        }
      }
      rmSync(aside, { force: true });
    }
  } finally {
    rmSync(mine, { force: true });
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    try {
      if (lockOwner(lock) === process.pid) rmSync(lock, { force: true });
    } catch {
      /* already gone */
    }
  };
  // process.exit() (a second Ctrl-C, an error's exit status) runs 'exit' listeners, not finally blocks.
  process.on('exit', release);
  return release;
}
