/**
 * The page's ways in for an image folder: a folder picked with the file input (webkitdirectory:
 * each File's webkitRelativePath starts with the picked folder's name) or dropped on the page
 * (DataTransferItem.webkitGetAsEntry, walked recursively). Both give paths relative to the
 * folder, '/'-separated, as src/data/image-folder.ts takes them; files too large to be an image
 * for this model are skipped unread.
 */
import { MAX_IMAGE_FILE_BYTES, type SkippedFile } from '../data/image-folder';
import type { PickedFile } from './data';

export interface GatheredFolder {
  /** The folder's name (the dataset's name). */
  name: string;
  files: PickedFile[];
  skipped: SkippedFile[];
}

async function read(entries: { path: string; file: File }[], name: string): Promise<GatheredFolder> {
  const skipped: SkippedFile[] = [];
  const files: PickedFile[] = [];
  for (const { path, file } of entries) {
    if (file.size > MAX_IMAGE_FILE_BYTES)
      skipped.push({ path, reason: `${file.size} bytes is more than ${MAX_IMAGE_FILE_BYTES}` });
    else files.push({ name: path, bytes: new Uint8Array(await file.arrayBuffer()) });
  }
  return { name, files, skipped };
}

/**
 * Files from the file input. A picked folder's files carry "folder/class/x.png": the first part
 * is the folder. Files picked one by one (no relative path) have no class folder, and the reader
 * names each of them.
 */
export function gatherPicked(list: readonly File[]): Promise<GatheredFolder> {
  const relative = list.map((file) => ({ file, parts: (file.webkitRelativePath || file.name).split('/') }));
  const inFolder = relative.every((r) => r.parts.length > 1);
  const name = inFolder && relative.length > 0 ? relative[0].parts[0] : 'picked files';
  return read(
    relative.map((r) => ({ file: r.file, path: (inFolder ? r.parts.slice(1) : r.parts).join('/') })),
    name,
  );
}

const entriesOf = (dir: FileSystemDirectoryEntry) =>
  new Promise<FileSystemEntry[]>((resolve, reject) => {
    const reader = dir.createReader();
    const all: FileSystemEntry[] = [];
    // readEntries returns at most 100 entries a call in Chrome: read until it returns none.
    const next = () =>
      reader.readEntries((batch) => {
        if (batch.length === 0) resolve(all);
        else {
          all.push(...batch);
          next();
        }
      }, reject);
    next();
  });

const fileOf = (entry: FileSystemFileEntry) => new Promise<File>((resolve, reject) => entry.file(resolve, reject));

/**
 * Files from a drop: one dropped folder is the dataset's folder (its subfolders the classes);
 * several dropped folders are taken as the class folders themselves.
 */
export async function gatherDropped(transfer: DataTransfer): Promise<GatheredFolder> {
  const roots = [...transfer.items].map((i) => i.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null);
  const single = roots.length === 1 && roots[0].isDirectory;
  const found: { path: string; file: File }[] = [];
  const walk = async (entry: FileSystemEntry, path: string): Promise<void> => {
    if (entry.isDirectory) {
      for (const child of await entriesOf(entry as FileSystemDirectoryEntry))
        await walk(child, path ? `${path}/${child.name}` : child.name);
    } else {
      found.push({ path, file: await fileOf(entry as FileSystemFileEntry) });
    }
  };
  if (single) await walk(roots[0], '');
  else for (const root of roots) await walk(root, root.name);
  return read(found, single ? roots[0].name : 'dropped files');
}
