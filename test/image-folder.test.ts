/**
 * ImageFolder-style datasets: the pure rules in Node (classes, labels and the split from a file
 * list; the byte checks; the crop/fit geometry; the assembly and its refusals), then the browser
 * part in the shared headless Chromium: real PNGs through createImageBitmap and a canvas,
 * compared pixel for pixel with a CPU rendering of the same rule.
 */
import { mkdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as zlib from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  assembleImageFolder,
  HELD_OUT_RULE,
  imageBytesProblem,
  isHeldOut,
  luma,
  MAX_IMAGE_SIDE,
  placement,
  planImageFolder,
  type FolderPlan,
} from '../src/data/image-folder';
import { FIT_RULES, type FitRule } from '../src/model/settings';
import { listImageFiles } from '../src/node/image-folder';
import { encodePngGray } from '../src/node/png';
import { harnessPage } from './gpu';
import { tempDir } from './temp';
import { BAD_FILES, drawShape, undecodablePng } from './shapes';

describe('planImageFolder: classes, labels, split', () => {
  it('takes sorted subfolder names as classes, ignores dotfiles, names files outside a class folder', () => {
    const plan = planImageFolder([
      'b/1.png',
      'a/x.PNG',
      'C/y.jpeg',
      'a/deep/z.jpg',
      'top.png',
      '.DS_Store',
      'a/.hidden.png',
      'b/readme.md',
    ]);
    expect(plan.classNames).toEqual(['C', 'a', 'b']); // code-point order, as Python's sorted()
    // Past U+FFFF, code points and UTF-16 code units disagree: Python puts '\uFF21' (full-width A)
    // before '\u{1F600}' (an emoji, a surrogate pair starting 0xD83D); `<` on JS strings would not.
    expect(planImageFolder(['\u{1F600}/1.png', '\uFF21/1.png']).classNames).toEqual(['\uFF21', '\u{1F600}']);
    const all = [...plan.train, ...plan.test];
    expect(all.map((p) => [p.path, p.label]).sort()).toEqual(
      [
        ['C/y.jpeg', 0],
        ['a/deep/z.jpg', 1],
        ['a/x.PNG', 1],
        ['b/1.png', 2],
      ].sort(),
    );
    expect(plan.skipped).toEqual([
      { path: 'b/readme.md', reason: expect.stringMatching(/unsupported file type/) },
      { path: 'top.png', reason: expect.stringMatching(/not in a class folder/) },
    ]);
  });

  it('holds out every 10th file of a class by sorted name, and the last of a class of 2 to 9', () => {
    const names = (n: number, c: string) =>
      Array.from({ length: n }, (_, i) => `${c}/${String(i).padStart(2, '0')}.png`);
    // Given shuffled, so the order is the sort's, not the caller's.
    const plan = planImageFolder([...names(25, 'big'), ...names(3, 'small'), ...names(1, 'one')].reverse());
    expect(plan.layout).toBe('held-out');
    const test = plan.test.map((p) => p.path);
    expect(test.sort()).toEqual(['big/09.png', 'big/19.png', 'small/02.png']);
    expect(plan.train.length).toBe(25 + 3 + 1 - 3);
    expect([...Array(25).keys()].filter((i) => isHeldOut(i, 25))).toEqual([9, 19]);
    expect(isHeldOut(0, 1)).toBe(false);
    // The rule in words says what isHeldOut does: the 10th, 20th, …; the last of a class of 2 to 9; nothing of a class of 1.
    expect(HELD_OUT_RULE).toBe(
      'every 10th usable image of each class by sorted file name, plus the last image of a class of 2 to 9',
    );
    for (let n = 2; n < 10; n++)
      expect(
        [...Array(n).keys()].filter((i) => isHeldOut(i, n)),
        `class of ${n}`,
      ).toEqual([n - 1]);
    expect([...Array(10).keys()].filter((i) => isHeldOut(i, 10))).toEqual([9]);
  });

  it('orders each split round-robin over the classes', () => {
    const plan = planImageFolder([
      'a/1.png',
      'a/2.png',
      'a/3.png',
      'b/1.png',
      'c/1.png',
      'c/2.png',
      'c/3.png',
      'c/4.png',
    ]);
    // a: 1,2 train, 3 test; b: 1 train; c: 1,2,3 train, 4 test.
    expect(plan.train.map((p) => p.path)).toEqual(['a/1.png', 'b/1.png', 'c/1.png', 'a/2.png', 'c/2.png', 'c/3.png']);
    expect(plan.test.map((p) => p.label)).toEqual([0, 2]);
  });

  it('uses train/ and test/ when the folder has both, with one class list for the two', () => {
    const plan = planImageFolder([
      'train/dog/1.png',
      'train/cat/1.png',
      'test/cat/9.png',
      'test/eel/1.png',
      'notes/x.png',
      'train/loose.png',
    ]);
    expect(plan.layout).toBe('train-test');
    expect(plan.classNames).toEqual(['cat', 'dog', 'eel']);
    expect(plan.train).toEqual([
      { path: 'train/cat/1.png', label: 0 },
      { path: 'train/dog/1.png', label: 1 },
    ]);
    expect(plan.test).toEqual([
      { path: 'test/cat/9.png', label: 0 },
      { path: 'test/eel/1.png', label: 2 },
    ]);
    expect(plan.skipped.map((s) => s.path).sort()).toEqual(['notes/x.png', 'train/loose.png']);
  });

  it('treats train/ alone as an ordinary class folder', () => {
    expect(planImageFolder(['train/a/1.png', 'other/1.png']).classNames).toEqual(['other', 'train']);
  });
});

describe('imageBytesProblem', () => {
  const png = encodePngGray(5, 3, new Uint8Array(15));
  it('passes whole PNGs and JPEG signatures', () => {
    expect(imageBytesProblem(png)).toBeNull();
    expect(imageBytesProblem(new Uint8Array([0xff, 0xd8, 0xff, 0xe0]))).toMatch(/truncated JPEG/); // a signature alone is not a JPEG
  });
  it('names each kind of bad file', () => {
    for (const [path, bad] of Object.entries(BAD_FILES)) {
      if (path.endsWith('.txt') || path.includes('garbled')) continue; // skipped by name / only the decoder can tell
      expect(imageBytesProblem(bad.bytes()), path).toMatch(bad.reason);
    }
    for (let cut = 1; cut < png.length; cut++)
      expect(imageBytesProblem(png.subarray(0, cut)), `cut at ${cut}`).not.toBeNull();
    expect(imageBytesProblem(undecodablePng())).toBeNull(); // whole chunks: the browser's decoder must catch it
  });
  it('refuses a PNG larger than the side limit before decoding', () => {
    const huge = encodePngGray(1, 1, new Uint8Array(1));
    new DataView(huge.buffer).setUint32(16, MAX_IMAGE_SIDE + 1); // IHDR width
    expect(imageBytesProblem(huge)).toMatch(/larger than 8192/);
  });
});

describe('placement: the crop/fit geometry', () => {
  it('center-crop takes the centred square of the short side', () => {
    expect(placement(40, 20, 28, 'center-crop')).toEqual({
      sx: 10,
      sy: 0,
      sw: 20,
      sh: 20,
      dx: 0,
      dy: 0,
      dw: 28,
      dh: 28,
    });
    expect(placement(3, 8, 4, 'center-crop')).toEqual({ sx: 0, sy: 2.5, sw: 3, sh: 3, dx: 0, dy: 0, dw: 4, dh: 4 });
  });
  it('fit scales the long side to the size and centres the rest in whole pixels', () => {
    expect(placement(40, 20, 28, 'fit')).toEqual({ sx: 0, sy: 0, sw: 40, sh: 20, dx: 0, dy: 7, dw: 28, dh: 14 });
    expect(placement(1, 1000, 28, 'fit')).toEqual({ sx: 0, sy: 0, sw: 1, sh: 1000, dx: 13, dy: 0, dw: 1, dh: 28 }); // never 0 wide
    expect(placement(5, 5, 28, 'fit')).toEqual({ sx: 0, sy: 0, sw: 5, sh: 5, dx: 0, dy: 0, dw: 28, dh: 28 });
  });
  it('stretch maps the whole image onto the whole square', () => {
    expect(placement(7, 300, 28, 'stretch')).toEqual({ sx: 0, sy: 0, sw: 7, sh: 300, dx: 0, dy: 0, dw: 28, dh: 28 });
  });
  it('keeps every rectangle inside its image and the square', () => {
    for (const fit of FIT_RULES) {
      for (const [w, h, size] of [
        [1, 1, 4],
        [1, 9999, 256],
        [9999, 2, 28],
        [28, 28, 28],
        [31, 17, 5],
      ]) {
        const p = placement(w, h, size, fit);
        expect(p.sx >= 0 && p.sy >= 0 && p.sx + p.sw <= w && p.sy + p.sh <= h, `${fit} ${w}×${h} source`).toBe(true);
        expect(
          p.dx >= 0 && p.dy >= 0 && p.dx + p.dw <= size && p.dy + p.dh <= size && p.dw >= 1 && p.dh >= 1,
          `${fit} ${w}×${h} dest`,
        ).toBe(true);
      }
    }
    expect(() => placement(0, 5, 28, 'fit')).toThrow(RangeError);
  });
  it('luma uses BT.601 weights', () => {
    expect([luma(255, 0, 0), luma(0, 255, 0), luma(0, 0, 255), luma(255, 255, 255), luma(7, 7, 7)]).toEqual([
      76, 150, 29, 255, 7,
    ]);
  });
});

describe('assembleImageFolder', () => {
  const plan = (): FolderPlan => planImageFolder(['a/1.png', 'a/2.png', 'b/1.png', 'b/2.png', 'b/3.png']);
  const ok = (v: number) => new Uint8Array(4).fill(v);
  it("packs the decoded images with their labels and lists the skipped ones after the plan's", () => {
    const p = plan();
    p.skipped.push({ path: 'x.txt', reason: 'unsupported' });
    const d = assembleImageFolder(
      p,
      new Map<string, Uint8Array | string>([
        ['a/1.png', ok(1)],
        ['a/2.png', ok(2)],
        ['b/1.png', ok(3)],
        ['b/2.png', 'empty file'],
        ['b/3.png', ok(5)],
      ]),
      2,
      'DIR',
    );
    expect([d.rows, d.cols, d.train.count, d.test.count]).toEqual([2, 2, 2, 2]);
    expect([...d.train.pixels]).toEqual([...ok(1), ...ok(3)]);
    expect([...d.train.labels, ...d.test.labels]).toEqual([0, 1, 0, 1]);
    expect(d.skipped).toEqual([
      { path: 'x.txt', reason: 'unsupported' },
      { path: 'b/2.png', reason: 'empty file' },
    ]);
  });
  it('refuses a folder with no usable image, one class, or an empty split', () => {
    const all = (v: Uint8Array | string, except: Record<string, Uint8Array | string> = {}) =>
      new Map(['a/1.png', 'a/2.png', 'b/1.png', 'b/2.png', 'b/3.png'].map((k) => [k, except[k] ?? v]));
    expect(() => assembleImageFolder(plan(), all('bad'), 2, 'DIR')).toThrow(/DIR: no usable image \(5 files skipped\)/);
    expect(() =>
      assembleImageFolder(plan(), all(ok(1), { 'b/1.png': 'x', 'b/2.png': 'x', 'b/3.png': 'x' }), 2, 'DIR'),
    ).toThrow(/only one class has usable images \("a"\).*at least two classes/);
    // A corrupt file does not take a test image's place: the split is drawn over the usable files.
    const d = assembleImageFolder(plan(), all(ok(1), { 'a/2.png': 'x', 'b/3.png': 'x' }), 2, 'DIR');
    expect([d.train.count, d.test.count, ...d.test.labels]).toEqual([2, 1, 1]);
    expect(() =>
      assembleImageFolder(plan(), all(ok(1), { 'a/2.png': 'x', 'b/2.png': 'x', 'b/3.png': 'x' }), 2, 'DIR'),
    ).toThrow(
      /no usable test image; with no train\/ and test\/ subfolders the test images are every 10th usable image/,
    );
  });
  it('keeps the train/ and test/ layout when every test/ file is bad', () => {
    const p = planImageFolder(['train/a/1.png', 'train/b/1.png', 'test/a/1.png', 'test/b/1.png']);
    const decoded = new Map<string, Uint8Array | string>([
      ['train/a/1.png', ok(1)],
      ['train/b/1.png', ok(2)],
      ['test/a/1.png', 'empty file'],
      ['test/b/1.png', 'empty file'],
    ]);
    expect(() => assembleImageFolder(p, decoded, 2, 'DIR')).toThrow(/^DIR: no usable test image under test\/$/);
  });
  it('counts and names the files the host skipped before decoding, in a refusal and in the dataset', () => {
    const early = [
      { path: 'a/huge.png', reason: '40000000 bytes is more than 33554432' },
      { path: 'b/gone.png', reason: 'cannot read it (ENOENT)' },
    ];
    expect(() => assembleImageFolder(planImageFolder([]), new Map(), 2, 'DIR', early)).toThrow(
      /^DIR: no usable image \(2 files skipped\);[^]*\n  skipped a\/huge\.png: 40000000 bytes[^]*\n  skipped b\/gone\.png: cannot read it/,
    );
    const d = assembleImageFolder(
      plan(),
      new Map(['a/1.png', 'a/2.png', 'b/1.png', 'b/2.png', 'b/3.png'].map((k) => [k, ok(1)])),
      2,
      'DIR',
      early,
    );
    expect(d.skipped).toEqual(early);
  });
});

// ---- the browser part: real decoding in the shared headless Chromium -----------------------------

/** A colour PNG (8-bit RGB or RGBA, filter 0): the repo's encoder writes grayscale only. */
function encodePngColour(w: number, h: number, channels: 3 | 4, px: Uint8Array): Uint8Array {
  const gray = Buffer.from(encodePngGray(w * channels, h, px)); // the same scanlines, read as w·channels gray bytes
  gray.writeUInt32BE(w, 16);
  gray[25] = channels === 3 ? 2 : 6; // colour type: RGB or RGBA
  gray.writeUInt32BE(zlib.crc32(gray.subarray(12, 29)) >>> 0, 29);
  return new Uint8Array(gray);
}
describe('listImageFiles: the Node walk of an --images folder', () => {
  const folder = () => tempDir('links');
  const png = (path: string) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, encodePngGray(2, 2, new Uint8Array(4)));
  };

  it('reads each real folder once: twenty levels of two links each finish at once, each image listed once', () => {
    // cls/d0 … cls/d20, each d(i) holding two links to d(i+1): a walk that remembered only the
    // chain it is in would read d20 through 2^20 paths.
    const root = folder();
    const levels = 20;
    for (let i = 0; i <= levels; i++) mkdirSync(join(root, 'cls', `d${i}`), { recursive: true });
    for (let i = 0; i < levels; i++)
      for (const name of ['a', 'b']) symlinkSync(`../d${i + 1}`, join(root, 'cls', `d${i}`, name));
    png(join(root, 'cls', `d${levels}`, 'img.png'));
    // The same chain reachable only through links (its real folders hidden from the walk).
    for (let i = 0; i <= levels; i++) mkdirSync(join(root, 'hidden', '.chain', `e${i}`), { recursive: true });
    for (let i = 0; i < levels; i++)
      for (const name of ['a', 'b']) symlinkSync(`../e${i + 1}`, join(root, 'hidden', '.chain', `e${i}`, name));
    png(join(root, 'hidden', '.chain', `e${levels}`, 'img.png'));
    symlinkSync('.chain/e0', join(root, 'hidden', 'start'));
    const skipped: { path: string; reason: string }[] = [];
    const started = performance.now();
    const files = listImageFiles(root, skipped);
    const ms = performance.now() - started;
    console.log(`walk: ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(20_000);
    expect(files.map((f) => f.path).sort()).toEqual([
      `cls/d${levels}/img.png`,
      `hidden/start/${'a/'.repeat(levels)}img.png`,
    ]);
    // Every link but the ones that first reached a folder: the 2·20 of cls, and 20 of hidden's 40.
    expect(skipped).toHaveLength(2 * levels + levels);
    for (const s of skipped)
      expect(s.reason, s.path).toMatch(
        /^a link to a folder already read \(as (cls\/d\d+|hidden\/start(\/a)*)\): not followed again$/,
      );
  });

  it('does not follow a link out of the folder (to a folder, to a file, to /), and names each', () => {
    const root = folder();
    const outside = folder();
    png(join(outside, 'elsewhere', 'x.png'));
    png(join(root, 'a', '0.png'));
    png(join(root, 'b', '0.png'));
    symlinkSync(join(outside, 'elsewhere'), join(root, 'a', 'out'));
    symlinkSync(join(outside, 'elsewhere', 'x.png'), join(root, 'a', 'x.png'));
    symlinkSync('/', join(root, 'b', 'disk'));
    // Inside links are followed, and a folder keeps the class of its real place: b/0.png is b's,
    // whichever of a/alias and b the directory listing names first.
    symlinkSync('../b', join(root, 'a', 'alias'));
    symlinkSync('0.png', join(root, 'b', '1.png'));
    symlinkSync('..', join(root, 'b', 'loop'));
    const skipped: { path: string; reason: string }[] = [];
    const files = listImageFiles(root, skipped);
    expect(files.map((f) => f.path).sort()).toEqual(['a/0.png', 'b/0.png', 'b/1.png']);
    expect(skipped.sort((p, q) => (p.path < q.path ? -1 : 1))).toEqual([
      { path: 'a/alias', reason: 'a link to a folder already read (as b): not followed again' },
      {
        path: 'a/out',
        reason: `a link to ${realpathSync(join(outside, 'elsewhere'))}, outside the folder: not followed (copy the images into the folder to use them)`,
      },
      {
        path: 'a/x.png',
        reason: `a link to ${realpathSync(join(outside, 'elsewhere', 'x.png'))}, outside the folder: not followed (copy the images into the folder to use them)`,
      },
      {
        path: 'b/disk',
        reason: 'a link to /, outside the folder: not followed (copy the images into the folder to use them)',
      },
      { path: 'b/loop', reason: 'a link to a folder that contains it (a loop): not followed' },
    ]);
  });
});

describe('decodeImageFolder in the browser', () => {
  const h = harnessPage();
  beforeAll(async () => {
    // The module as the page and the headless CLI load it (a script tag: vitest rewrites import() inside evaluate).
    await h.page.addScriptTag({
      type: 'module',
      content: "import * as m from '/src/data/image-decode.ts'; window.imageDecode = m;",
    });
    await h.page.waitForFunction(() => 'imageDecode' in window);
  }, 60_000);

  type Decoded =
    | {
        classNames: string[];
        train: number[];
        test: number[];
        trainLabels: number[];
        skipped: { path: string; reason: string }[];
      }
    | { error: string };
  const decode = (files: { path: string; bytes: Uint8Array }[], size: number, fit: string): Promise<Decoded> =>
    h.page.evaluate(
      async (list, size, fit) => {
        const { decodeImageFolder } = (window as unknown as { imageDecode: typeof import('../src/data/image-decode') })
          .imageDecode;
        try {
          const d = await decodeImageFolder(
            list.map((f: { path: string; bytes: number[] }) => ({ path: f.path, bytes: new Uint8Array(f.bytes) })),
            { size, fit: fit as FitRule },
            'DIR',
          );
          return {
            classNames: d.classNames,
            train: [...d.train.pixels],
            test: [...d.test.pixels],
            trainLabels: [...d.train.labels],
            skipped: d.skipped,
          };
        } catch (e) {
          return { error: (e as Error).message };
        }
      },
      files.map((f) => ({ path: f.path, bytes: [...f.bytes] })),
      size,
      fit,
    );

  it('reads a gray PNG at its own size exactly, under every fit rule', async () => {
    const px = Uint8Array.from({ length: 36 }, (_, i) => (i * 37) % 256);
    for (const fit of FIT_RULES) {
      const d = await decode(
        [
          { path: 'a/1.png', bytes: encodePngGray(6, 6, px) },
          {
            path: 'b/1.png',
            bytes: encodePngGray(
              6,
              6,
              px.map((v) => 255 - v),
            ),
          },
          { path: 'a/2.png', bytes: encodePngGray(6, 6, px) },
          { path: 'b/2.png', bytes: encodePngGray(6, 6, px) },
        ],
        6,
        fit,
      );
      if ('error' in d) throw new Error(d.error);
      expect(d.train, fit).toEqual([...px, ...px.map((v) => 255 - v)]);
      expect(d.trainLabels).toEqual([0, 1]);
    }
  });

  it('converts colour with BT.601 weights and composites transparency over black', async () => {
    const colours = [
      [255, 0, 0, 255],
      [0, 255, 0, 255],
      [0, 0, 255, 255],
      [200, 100, 50, 255],
      [255, 255, 255, 0],
      [255, 255, 255, 128],
    ];
    const rgba = Uint8Array.from(colours.flat());
    const rgb = Uint8Array.from(colours.flatMap((c) => c.slice(0, 3)));
    const d = await decode(
      [
        { path: 'a/rgba.png', bytes: encodePngColour(6, 1, 4, rgba) },
        { path: 'b/rgb.png', bytes: encodePngColour(6, 1, 3, rgb) },
        { path: 'a/x.png', bytes: encodePngColour(6, 1, 3, rgb) },
        { path: 'b/x.png', bytes: encodePngColour(6, 1, 3, rgb) },
      ],
      6,
      'stretch',
    );
    if ('error' in d) throw new Error(d.error);
    // Stretched 6×1 → 6×6: every row is the source row (vertical smoothing of identical rows changes nothing).
    const expected = colours.map(([r, g, b, a]) => luma((r * a) / 255, (g * a) / 255, (b * a) / 255));
    const top = d.train.slice(0, 6);
    for (let i = 0; i < 6; i++)
      expect(Math.abs(top[i] - expected[i]), `pixel ${i}: ${top[i]} vs ${expected[i]}`).toBeLessThanOrEqual(1);
    for (let y = 1; y < 6; y++) expect(d.train.slice(6 * y, 6 * y + 6), `row ${y}`).toEqual(top);
    // The RGB image (no alpha) is the opaque colours' luma.
    const rgbRow = d.train.slice(36, 42);
    colours.forEach(([r, g, b], i) =>
      expect(Math.abs(rgbRow[i] - luma(r, g, b)), `rgb pixel ${i}`).toBeLessThanOrEqual(1),
    );
  });

  it('draws by the fit rule: fit pads with black, center-crop drops the sides', async () => {
    // 8×4: left half 255, right half 100. fit → 8×8 with rows 2..5 the image; center-crop → the middle 4×4 scaled to 8×8.
    const px = Uint8Array.from({ length: 32 }, (_, i) => (i % 8 < 4 ? 255 : 100));
    const files = (b: Uint8Array) => [
      { path: 'a/1.png', bytes: b },
      { path: 'b/1.png', bytes: b },
      { path: 'a/2.png', bytes: b },
      { path: 'b/2.png', bytes: b },
    ];
    const fit = await decode(files(encodePngGray(8, 4, px)), 8, 'fit');
    if ('error' in fit) throw new Error(fit.error);
    const img = fit.train.slice(0, 64);
    expect(
      img.slice(0, 16).every((v) => v === 0),
      'top padding',
    ).toBe(true);
    expect(
      img.slice(48).every((v) => v === 0),
      'bottom padding',
    ).toBe(true);
    expect([img[3 * 8], img[3 * 8 + 7]]).toEqual([255, 100]);
    const crop = await decode(files(encodePngGray(8, 4, px)), 8, 'center-crop');
    if ('error' in crop) throw new Error(crop.error);
    const c = crop.train.slice(0, 64);
    expect([c[0], c[7], c[63]]).toEqual([255, 100, 100]);
    // No black padding anywhere (the high-quality filter rings a little at the step: 96 beside 100).
    expect(
      c.every((v) => v >= 90),
      'no padding',
    ).toBe(true);
  });

  it('decodes a JPEG the browser encoded, and names it truncated at every cut', async () => {
    // A 12×12 JPEG of a white square on black, from the browser's own encoder.
    const jpeg = new Uint8Array(
      await h.page.evaluate(async () => {
        const c = new OffscreenCanvas(12, 12);
        const ctx = c.getContext('2d')!;
        ctx.fillStyle = '#000';
        ctx.fillRect(0, 0, 12, 12);
        ctx.fillStyle = '#fff';
        ctx.fillRect(3, 3, 6, 6);
        return [...new Uint8Array(await (await c.convertToBlob({ type: 'image/jpeg', quality: 0.95 })).arrayBuffer())];
      }),
    );
    expect(imageBytesProblem(jpeg)).toBeNull();
    for (let cut = 3; cut < jpeg.length; cut++)
      expect(imageBytesProblem(jpeg.subarray(0, cut)), `cut at ${cut} of ${jpeg.length}`).toMatch(/truncated JPEG/);
    const withVideo = new Uint8Array([...jpeg, 0, 0, 0, 0x18, 0x66, 0x74, 0x79, 0x70]); // bytes after the end, as a motion photo has
    expect(imageBytesProblem(withVideo)).toBeNull();
    const d = await decode(
      [
        { path: 'a/1.jpg', bytes: jpeg },
        { path: 'a/2.jpeg', bytes: withVideo },
        { path: 'b/1.JPG', bytes: jpeg },
        { path: 'b/2.jpg', bytes: jpeg.subarray(0, jpeg.length - 40) },
        { path: 'b/3.jpg', bytes: jpeg },
      ],
      12,
      'center-crop',
    );
    if ('error' in d) throw new Error(d.error);
    expect(d.skipped).toEqual([{ path: 'b/2.jpg', reason: expect.stringMatching(/truncated JPEG/) }]);
    const img = d.train.slice(0, 144);
    // JPEG is lossy: the square's inside bright, the corners dark.
    expect(img[6 * 12 + 6]).toBeGreaterThan(200);
    expect(img[0]).toBeLessThan(40);
  });

  it('names every bad file with its reason and decodes the rest', async () => {
    const shape = (i: number) => encodePngGray(28, 28, drawShape(i % 2 ? 'circle' : 'square', 28, 28, 0.5, 0.5, 0.3));
    const good = ['circle', 'square', 'cross'].flatMap((c, k) =>
      [0, 1, 2].map((i) => ({ path: `${c}/${i}.png`, bytes: shape(i + k) })),
    );
    const bad = Object.entries(BAD_FILES).map(([path, b]) => ({ path, bytes: b.bytes() }));
    const d = await decode([...good, ...bad], 28, 'center-crop');
    if ('error' in d) throw new Error(d.error);
    expect(d.skipped.map((s) => s.path).sort()).toEqual(Object.keys(BAD_FILES).sort());
    for (const s of d.skipped) expect(s.reason, s.path).toMatch(BAD_FILES[s.path].reason);
    expect(d.classNames).toEqual(['circle', 'cross', 'square']);
    expect(d.train.length + d.test.length).toBe(9 * 784);
  });

  it('refuses a folder whose only files are bad, with the reason', async () => {
    const d = await decode(
      Object.entries(BAD_FILES).map(([path, b]) => ({ path, bytes: b.bytes() })),
      28,
      'fit',
    );
    expect('error' in d && d.error).toMatch(/^DIR: no usable image \(5 files skipped\)/);
  });
});
