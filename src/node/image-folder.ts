/**
 * `--images DIR` (Node side): lists and reads the folder's files, then has the headless page
 * decode them (src/cli/headless.ts → src/data/image-decode.ts: the browser's own PNG and JPEG
 * decoders, no native image library here) and returns the dataset in the shapes the idx
 * reader gives, with the class names and the files it skipped.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import type { ImageFolderReply, ImageFolderRequest } from '../cli/protocol';
import { fileTypeProblem, ImageFolderError, MAX_IMAGE_FILE_BYTES, type SkippedFile } from '../data/image-folder';
import type { IdxImages, IdxLabels } from '../data/idx';
import type { FitRule } from '../model/settings';
import { launchBrowser } from './browser';
import { ENGINE_FOLDERS, startServer } from './server';

export interface ImageFolderDataset {
  train: IdxImages;
  trainLabels: IdxLabels;
  test: IdxImages;
  testLabels: IdxLabels;
  classNames: string[];
  layout: ImageFolderReply['layout'];
  /** Files not used, each with the reason: those Node skipped unread, then the page's. */
  skipped: SkippedFile[];
}

/**
 * Every file under `dir` ('/'-separated paths relative to it) the reader could use, names
 * starting with "." left out as the reader ignores them. A file that is not an image by its
 * name is skipped here, unread, with the planner's reason.
 *
 * Links are followed while they stay inside `dir` (a class folder may be a link to another
 * place in the tree), and each real folder is read once, however many links lead to it: the
 * walk keeps one set of the real paths it has read, so a link to a folder already read — a
 * loop, or twenty levels of two links each, which would otherwise be 2^20 walks — is skipped
 * with its reason. The links are followed after the tree without them, so a folder's files
 * keep the class of their real place, whatever order the folders are listed in. A link that
 * leaves `dir` is skipped, named, and not read: followed, a link to `/` would walk the disk.
 */
export function listImageFiles(dir: string, skipped: SkippedFile[]): { path: string; size: number }[] {
  const out: { path: string; size: number }[] = [];
  const root = realpathSync(dir);
  const under = (real: string, folder: string) =>
    real === folder || real.startsWith(folder.endsWith(sep) ? folder : folder + sep);
  const read = new Map<string, string>(); // the real path of each folder read, to the path it was read as
  const links: string[] = []; // met while walking, followed once the tree without them has been read
  const failed = (path: string, e: unknown) =>
    skipped.push({ path, reason: `cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` });

  const walk = (rel: string, real: string) => {
    read.set(real, rel);
    let entries;
    try {
      entries = readdirSync(join(dir, rel), { withFileTypes: true });
    } catch (e) {
      skipped.push({
        path: rel || '.',
        reason: `cannot list this folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      });
      return;
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isSymbolicLink()) links.push(path);
      else if (entry.isDirectory()) walk(path, join(real, entry.name));
      else if (entry.isFile()) file(path);
    }
  };
  const file = (path: string) => {
    const badType = fileTypeProblem(path.slice(path.lastIndexOf('/') + 1));
    if (badType) {
      skipped.push({ path, reason: badType });
      return;
    }
    try {
      out.push({ path, size: statSync(join(dir, path)).size });
    } catch (e) {
      failed(path, e);
    }
  };
  const follow = (path: string) => {
    let st, real;
    try {
      st = statSync(join(dir, path));
      real = realpathSync(join(dir, path));
    } catch (e) {
      failed(path, e);
      return;
    }
    if (!under(real, root)) {
      skipped.push({
        path,
        reason: `a link to ${real}, outside the folder: not followed (copy the images into the folder to use them)`,
      });
    } else if (st.isFile()) {
      file(path);
    } else if (st.isDirectory()) {
      const before = read.get(real);
      const parent = realpathSync(join(dir, path, '..'));
      if (under(parent, real))
        skipped.push({ path, reason: 'a link to a folder that contains it (a loop): not followed' });
      else if (before !== undefined)
        skipped.push({ path, reason: `a link to a folder already read (as ${before || '.'}): not followed again` });
      else walk(path, real);
    }
  };
  walk('', root);
  for (let i = 0; i < links.length; i++) follow(links[i]); // following one may find more
  return out;
}

export async function loadImageFolder(
  dir: string,
  options: { size: number; fit: FitRule; channels: number },
): Promise<ImageFolderDataset> {
  const where = resolve(dir);
  try {
    if (!statSync(where).isDirectory()) throw new Error('not a folder');
  } catch (e) {
    throw new ImageFolderError(
      `--images ${dir}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such folder' : (e as Error).message}; ` +
        'pass a folder with one subfolder of PNG or JPEG images per class',
    );
  }
  const skipped: SkippedFile[] = [];
  const parts: Uint8Array[] = [];
  const files: ImageFolderRequest['files'] = [];
  let offset = 0;
  for (const f of listImageFiles(where, skipped)) {
    if (f.size > MAX_IMAGE_FILE_BYTES) {
      skipped.push({ path: f.path, reason: `${f.size} bytes is more than ${MAX_IMAGE_FILE_BYTES}` });
      continue;
    }
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(join(where, f.path));
    } catch (e) {
      skipped.push({
        path: f.path,
        reason: `cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      });
      continue;
    }
    parts.push(bytes);
    files.push({ path: f.path, offset, length: bytes.length });
    offset += bytes.length;
  }
  const all = Buffer.concat(parts);

  // A browser of its own, closed before training launches one: decoding needs no GPU.
  const browser = await launchBrowser({ webgpu: false });
  const server = await startServer({ allow: ENGINE_FOLDERS });
  let reply: ImageFolderReply;
  try {
    const page = await browser.browser.newPage();
    await page.goto(`${server.url}/src/cli/headless.html`);
    await page.waitForFunction(() => 'vaeDecodeImages' in window, { timeout: 60_000 });
    // What Node skipped goes along, so a refusal names it too (and it leads the dataset's list).
    const request: ImageFolderRequest = {
      url: server.serveFile('images', all),
      files,
      size: options.size,
      fit: options.fit,
      channels: options.channels,
      where,
      skipped,
    };
    try {
      reply = await page.evaluate((r: ImageFolderRequest) => window.vaeDecodeImages(r), request);
    } catch (e) {
      // The page's ImageFolderError arrives as puppeteer's "Error: …" text: the reason is what matters.
      const lines = (e as Error).message.replace(/^(Error|ImageFolderError): /, '').split('\n');
      throw new ImageFolderError(lines.filter((l) => !/^\s+at /.test(l)).join('\n'));
    }
  } finally {
    await browser.close();
    await server.close();
  }
  const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, 'base64'));
  const images = (s: ImageFolderReply['train']): IdxImages => ({
    count: s.count,
    rows: options.size,
    cols: options.size,
    pixels: bytes(s.pixels),
  });
  const labels = (s: ImageFolderReply['train']): IdxLabels => ({ count: s.count, labels: bytes(s.labels) });
  return {
    train: images(reply.train),
    trainLabels: labels(reply.train),
    test: images(reply.test),
    testLabels: labels(reply.test),
    classNames: reply.classNames,
    layout: reply.layout,
    skipped: reply.skipped,
  };
}
