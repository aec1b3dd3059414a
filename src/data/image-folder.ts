/**
 * ImageFolder-style datasets, the pure part (no DOM, tested in Node): which file is which class
 * and which split, the checks a file's bytes must pass before the browser decodes it, where an
 * image is drawn in the square it becomes, and the assembly of the decoded images into a
 * dataset. The browser part (decoding and drawing) is `image-decode.ts`.
 *
 * Layout, as torchvision's ImageFolder: one subfolder per class, the classes are the subfolder
 * names sorted (code-point order, as Python's `sorted`) and a label is a class's index. Files in
 * deeper folders belong to their top folder's class. Names starting with "." (.DS_Store, .git)
 * are ignored. The split:
 *  - when DIR holds `train/` and `test/`, each is a class-per-subfolder tree and is that split;
 *  - otherwise the test set holds HELD_OUT_RULE: per class, every 10th usable file by sorted name
 *    (the 10th, 20th, …), and the last file of a class of 2 to 9 files, so every class with two
 *    files is tested.
 * Each split is ordered round-robin over the classes (one of each class in turn), so its first
 * images — the reconstruction grid's — show every class.
 */
import type { FitRule } from '../model/settings';

export class ImageFolderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageFolderError';
  }
}

/** A file the dataset does not use, and why. */
export interface SkippedFile {
  path: string;
  reason: string;
}

export interface PlannedImage {
  /** '/'-separated, relative to the folder. */
  path: string;
  label: number;
}

export interface FolderPlan {
  /** 'train-test': DIR holds train/ and test/; 'held-out': every 10th file per class is tested. */
  layout: 'train-test' | 'held-out';
  classNames: string[];
  train: PlannedImage[];
  test: PlannedImage[];
  skipped: SkippedFile[];
}

/** The file names the folder reader takes, as ImageFolder filters by extension. */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;

/** A file above this is skipped unread: no PNG or JPEG a person means for a 28×28 VAE is that big. */
export const MAX_IMAGE_FILE_BYTES = 32 * 1024 * 1024;

/** Images wider or taller than this are skipped before decoding (a decoded 8192² image is 256 MB). */
export const MAX_IMAGE_SIDE = 8192;

/** Fraction of each class held out for testing when the folder has no train/ and test/. */
export const HELD_OUT_EVERY = 10;

/** The held-out split in words, exactly as isHeldOut draws it, for help texts, log lines and errors. */
export const HELD_OUT_RULE = `every ${HELD_OUT_EVERY}th usable image of each class by sorted file name, plus the last image of a class of 2 to ${HELD_OUT_EVERY - 1}`;

/** Why a file is skipped by its name alone (before anything reads it), or null for a PNG or JPEG name. */
export function fileTypeProblem(name: string): string | null {
  return IMAGE_EXTENSIONS.some((e) => name.toLowerCase().endsWith(e))
    ? null
    : `unsupported file type (the reader takes ${IMAGE_EXTENSIONS.join(', ')})`;
}

const hidden = (parts: string[]) => parts.some((p) => p.startsWith('.'));
/**
 * Code-point order, as Python's `sorted` (and so torchvision's ImageFolder) orders names. JS's
 * `<` compares UTF-16 code units, which puts a name with a character past U+FFFF (an emoji) before
 * one with U+E000…U+FFFF (full-width letters), and the labels would then differ from PyTorch's.
 */
function byName(a: string, b: string): number {
  const x = [...a];
  const y = [...b]; // spread iterates by code point
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** Class name → its files (sorted), for a class-per-subfolder tree; files outside a class folder are skipped. */
function classTree(paths: { full: string; parts: string[] }[], skipped: SkippedFile[]): Map<string, string[]> {
  const tree = new Map<string, string[]>();
  for (const { full, parts } of paths) {
    if (parts.length < 2) {
      skipped.push({ path: full, reason: 'not in a class folder (each class is a subfolder)' });
      continue;
    }
    const badType = fileTypeProblem(parts.at(-1)!);
    if (badType) {
      skipped.push({ path: full, reason: badType });
      continue;
    }
    const files = tree.get(parts[0]) ?? [];
    files.push(full);
    tree.set(parts[0], files);
  }
  for (const files of tree.values()) files.sort(byName);
  return tree;
}

/** One image of each class in turn, classes in label order. */
function roundRobin(perClass: PlannedImage[][]): PlannedImage[] {
  const out: PlannedImage[] = [];
  for (let i = 0; out.length < perClass.reduce((n, c) => n + c.length, 0); i++) {
    for (const c of perClass) if (i < c.length) out.push(c[i]);
  }
  return out;
}

/** Whether file `i` (0-based, by sorted name) of a class of `n` files is a test image in the held-out layout. */
export function isHeldOut(i: number, n: number): boolean {
  return i % HELD_OUT_EVERY === HELD_OUT_EVERY - 1 || (n >= 2 && n < HELD_OUT_EVERY && i === n - 1);
}

/**
 * The classes, labels and split of a folder's files (paths relative to it, '/'-separated).
 * `layout` keeps a layout already chosen (the re-plan over the usable files): without it, a
 * test/ whose files are all bad would turn the folder into the held-out layout, "train" a class.
 */
export function planImageFolder(paths: readonly string[], layout?: FolderPlan['layout']): FolderPlan {
  const skipped: SkippedFile[] = [];
  const visible = paths
    .map((full) => ({ full, parts: full.split('/').filter((p) => p !== '') }))
    .filter((p) => !hidden(p.parts))
    .sort((a, b) => byName(a.full, b.full));
  const isSplitDir = (name: string) => visible.some((p) => p.parts.length > 2 && p.parts[0] === name);
  if (layout ? layout === 'train-test' : isSplitDir('train') && isSplitDir('test')) {
    const under = (split: string) =>
      visible.filter((p) => p.parts[0] === split).map((p) => ({ full: p.full, parts: p.parts.slice(1) }));
    for (const p of visible)
      if (p.parts[0] !== 'train' && p.parts[0] !== 'test')
        skipped.push({ path: p.full, reason: 'outside train/ and test/' });
    const trainTree = classTree(under('train'), skipped);
    const testTree = classTree(under('test'), skipped);
    const classNames = [...new Set([...trainTree.keys(), ...testTree.keys()])].sort(byName);
    const split = (tree: Map<string, string[]>) =>
      roundRobin(classNames.map((c, label) => (tree.get(c) ?? []).map((path) => ({ path, label }))));
    return { layout: 'train-test', classNames, train: split(trainTree), test: split(testTree), skipped };
  }
  const tree = classTree(visible, skipped);
  const classNames = [...tree.keys()].sort(byName);
  const train: PlannedImage[][] = [];
  const test: PlannedImage[][] = [];
  classNames.forEach((c, label) => {
    const files = tree.get(c)!;
    train.push(files.filter((_, i) => !isHeldOut(i, files.length)).map((path) => ({ path, label })));
    test.push(files.filter((_, i) => isHeldOut(i, files.length)).map((path) => ({ path, label })));
  });
  return { layout: 'held-out', classNames, train: roundRobin(train), test: roundRobin(test), skipped };
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * A JPEG's problem, walking its marker segments (each FF xx with a 2-byte length, so an EXIF
 * thumbnail inside APP1 is stepped over) to the first start-of-scan: its frame size must be
 * within the limit, and an end-of-image marker (FF D9) must follow the scan data (stuffed with
 * FF 00, so FF D9 there is only the end). Bytes after the end (a motion photo's video) are fine.
 */
function jpegProblem(bytes: Uint8Array): string | null {
  const u16 = (at: number) => (bytes[at] << 8) | bytes[at + 1];
  for (let at = 2; ;) {
    if (at + 4 > bytes.length) return 'truncated JPEG (it ends before its image data)';
    if (bytes[at] !== 0xff) return 'corrupt JPEG (a marker segment is out of place)';
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at += 1;
      continue;
    } // fill byte
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2;
      continue;
    } // no length
    const end = at + 2 + u16(at + 2);
    if (end > bytes.length) return 'truncated JPEG (a marker segment runs past the end of the file)';
    // SOF0…SOF15 (not DHT C4, JPG C8, DAC CC): height, then width.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      const [h, w] = [u16(at + 5), u16(at + 7)];
      if (w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE) return `${w}×${h} pixels is larger than ${MAX_IMAGE_SIDE} a side`;
    }
    if (marker === 0xda) {
      for (let i = end; i + 1 < bytes.length; i++) if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return null;
      return 'truncated JPEG (it ends inside its image data, with no end-of-image marker)';
    }
    at = end;
  }
}

/**
 * Why these bytes are not an image to decode, or null: empty, too large, neither PNG nor JPEG by
 * their first bytes, or truncated — a PNG whose chunks run past the end of the file or that has
 * no IEND, a JPEG with no end after its image data (a browser would decode the top rows and
 * leave the rest grey or blank, silently).
 */
export function imageBytesProblem(bytes: Uint8Array): string | null {
  if (bytes.length === 0) return 'empty file (0 bytes)';
  if (bytes.length > MAX_IMAGE_FILE_BYTES) return `${bytes.length} bytes is more than ${MAX_IMAGE_FILE_BYTES}`;
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return jpegProblem(bytes);
  if (!PNG_SIGNATURE.every((b, i) => bytes[i] === b)) {
    const head = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    return `not a PNG or JPEG file (it starts with bytes ${head})`;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 8, first = true; ; first = false) {
    if (at + 8 > bytes.length) return 'truncated PNG (it ends before its IEND chunk)';
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (at + 12 + length > bytes.length) return `truncated PNG (its ${type} chunk runs past the end of the file)`;
    if (first) {
      if (type !== 'IHDR' || length !== 13) return 'corrupt PNG (it does not start with an IHDR chunk)';
      const [w, h] = [view.getUint32(at + 8), view.getUint32(at + 12)];
      if (w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE) return `${w}×${h} pixels is larger than ${MAX_IMAGE_SIDE} a side`;
    }
    if (type === 'IEND') return null;
    at += 12 + length;
  }
}

/** Where an image of w×h is drawn in the size×size square: a source rectangle and a destination one, as drawImage takes them. */
export interface Placement {
  sx: number;
  sy: number;
  sw: number;
  sh: number;
  dx: number;
  dy: number;
  dw: number;
  dh: number;
}

export function placement(w: number, h: number, size: number, fit: FitRule): Placement {
  if (!(w > 0 && h > 0 && size > 0)) throw new RangeError(`placement: bad sizes ${w}×${h} into ${size}`);
  const whole = { sx: 0, sy: 0, sw: w, sh: h };
  switch (fit) {
    case 'stretch':
      return { ...whole, dx: 0, dy: 0, dw: size, dh: size };
    case 'center-crop': {
      // The centred square of the short side's length, scaled to the size.
      const s = Math.min(w, h);
      return { sx: (w - s) / 2, sy: (h - s) / 2, sw: s, sh: s, dx: 0, dy: 0, dw: size, dh: size };
    }
    case 'fit': {
      // Whole pixels for the drawn rectangle, so the image's edges are sharp against the padding.
      const scale = size / Math.max(w, h);
      const dw = Math.max(1, Math.round(w * scale));
      const dh = Math.max(1, Math.round(h * scale));
      return { ...whole, dx: Math.floor((size - dw) / 2), dy: Math.floor((size - dh) / 2), dw, dh };
    }
  }
}

/**
 * Grayscale from sRGB bytes with ITU-R BT.601's luma weights (what PIL's convert('L') uses),
 * rounded to a byte.
 */
export const LUMA_WEIGHTS = { r: 0.299, g: 0.587, b: 0.114 } as const;

export function luma(r: number, g: number, b: number): number {
  return Math.round(LUMA_WEIGHTS.r * r + LUMA_WEIGHTS.g * g + LUMA_WEIGHTS.b * b);
}

export interface ImageSplit {
  count: number;
  /** count × channels × size × size bytes: each image's planes (R, G, B for colour) in turn. */
  pixels: Uint8Array;
  /** One class index per image. */
  labels: Uint8Array;
}

export interface ImageFolderData {
  layout: FolderPlan['layout'];
  rows: number;
  cols: number;
  /** 1 (grayscale) or 3 (planar R, G, B). */
  channels: number;
  classNames: string[];
  train: ImageSplit;
  test: ImageSplit;
  skipped: SkippedFile[];
}

/** Labels are bytes, as idx label files hold them. */
export const MAX_CLASSES = 256;

/**
 * The dataset from a plan and each planned file's decoded pixels (channels·size² bytes) or the reason it
 * could not be used. The split is drawn again over the usable files only (in the plan's layout),
 * so a corrupt file does not take a test image's place. `earlier` are files the host skipped
 * before planning (unreadable, too large): they come first in `skipped`, and in a refusal.
 * Throws ImageFolderError when what is left cannot train: no image, fewer than two classes, or
 * an empty split.
 */
export function assembleImageFolder(
  candidates: FolderPlan,
  decoded: ReadonlyMap<string, Uint8Array | string>,
  size: number,
  where: string,
  earlier: readonly SkippedFile[] = [],
  channels = 1,
): ImageFolderData {
  const skipped = [...earlier, ...candidates.skipped];
  const usable: string[] = [];
  for (const { path } of [...candidates.train, ...candidates.test].sort((a, b) => byName(a.path, b.path))) {
    const d = decoded.get(path);
    if (d instanceof Uint8Array) usable.push(path);
    else skipped.push({ path, reason: d ?? 'not read' });
  }
  const plan = planImageFolder(usable, candidates.layout);
  const { train, test } = plan;
  const used = new Set([...train, ...test].map((p) => p.label));
  const layoutHint = 'put the images in one subfolder per class (or train/CLASS/ and test/CLASS/)';
  // A refusal lists the skipped files too (the first 20): the caller never sees the dataset that would have named them.
  const listed =
    skipped
      .slice(0, 20)
      .map((f) => `\n  skipped ${f.path}: ${f.reason}`)
      .join('') + (skipped.length > 20 ? `\n  … and ${skipped.length - 20} more` : '');
  if (used.size === 0) {
    throw new ImageFolderError(
      `${where}: no usable image (${skipped.length} file${skipped.length === 1 ? '' : 's'} skipped); ${layoutHint}, as PNG or JPEG files${listed}`,
    );
  }
  if (plan.classNames.length > MAX_CLASSES)
    throw new ImageFolderError(`${where}: ${plan.classNames.length} classes is more than ${MAX_CLASSES}`);
  if (used.size < 2) {
    const only = plan.classNames[[...used][0]];
    throw new ImageFolderError(
      `${where}: only one class has usable images ("${only}"); a dataset needs at least two classes: ${layoutHint}${listed}`,
    );
  }
  if (train.length === 0 || test.length === 0) {
    const which = train.length === 0 ? 'training' : 'test';
    throw new ImageFolderError(
      `${where}: no usable ${which} image` +
        (plan.layout === 'held-out'
          ? `; with no train/ and test/ subfolders the test images are ${HELD_OUT_RULE}, so add images`
          : ` under ${which === 'training' ? 'train' : 'test'}/`),
    );
  }
  const pack = (list: PlannedImage[]): ImageSplit => {
    const bytes = channels * size * size;
    const pixels = new Uint8Array(list.length * bytes);
    list.forEach((p, i) => pixels.set(decoded.get(p.path) as Uint8Array, i * bytes));
    return { count: list.length, pixels, labels: Uint8Array.from(list, (p) => p.label) };
  };
  return {
    layout: plan.layout,
    rows: size,
    cols: size,
    channels,
    classNames: plan.classNames,
    train: pack(train),
    test: pack(test),
    skipped,
  };
}

/** What the folder became, for a log line or the page's status: counts per split and the classes. */
export function describeImageFolder(
  d: Pick<ImageFolderData, 'layout' | 'rows' | 'cols' | 'classNames' | 'skipped'> &
    Partial<Pick<ImageFolderData, 'channels'>> &
    Record<'train' | 'test', Pick<ImageSplit, 'count' | 'labels'>>,
  fit: FitRule,
): string {
  const split = d.layout === 'train-test' ? 'train/ and test/ subfolders' : `test images are ${HELD_OUT_RULE}`;
  const perClass = d.classNames.map((name, label) => {
    const n = (s: Pick<ImageSplit, 'labels'>) => s.labels.reduce((k, l) => k + Number(l === label), 0);
    return `${name} ${n(d.train)}+${n(d.test)}`;
  });
  return (
    `${d.train.count} training and ${d.test.count} test ${d.channels === 3 ? 'colour ' : ''}images of ${d.rows}×${d.cols} (${fit}), ` +
    `${d.classNames.length} classes (train+test: ${perClass.join(', ')}); split: ${split}; ` +
    `${d.skipped.length} file${d.skipped.length === 1 ? '' : 's'} skipped`
  );
}
