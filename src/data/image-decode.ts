/**
 * ImageFolder-style datasets, the browser part: decodes PNG and JPEG files with the browser's
 * own decoders (createImageBitmap), draws each into a size×size OffscreenCanvas by the fit rule
 * and reads it back as grayscale. The page and the CLI's headless page both call
 * `decodeImageFolder`, so an image becomes the same bytes in either. Needs a browser (a Worker
 * will do); the rules themselves are in image-folder.ts.
 */
import type { FitRule } from '../model/settings';
import {
  assembleImageFolder,
  imageBytesProblem,
  luma,
  placement,
  planImageFolder,
  type ImageFolderData,
  type SkippedFile,
} from './image-folder';

/** A file of the folder: its path relative to the folder ('/'-separated) and its bytes. */
export interface FolderFile {
  path: string;
  bytes: Uint8Array;
}

export interface DecodeOptions {
  size: number;
  fit: FitRule;
  /** 1: grayscale by luma (the default); 3: the R, G and B planes, one after another. */
  channels?: number;
}

/**
 * One image to size² grayscale bytes, or with 3 channels to its R, G and B planes of size² each. The canvas is filled black first, so padding (`fit`) and
 * transparent pixels are black. Colour profiles are not applied (colorSpaceConversion 'none'),
 * so a pixel's stored value is the value read, as PIL reads it.
 */
async function decodeOne(
  bytes: Uint8Array,
  { size, fit, channels = 1 }: DecodeOptions,
  ctx: OffscreenCanvasRenderingContext2D,
): Promise<Uint8Array> {
  const bitmap = await createImageBitmap(new Blob([bytes as BlobPart]), { colorSpaceConversion: 'none' });
  try {
    const p = placement(bitmap.width, bitmap.height, size, fit);
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, size, size);
    ctx.drawImage(bitmap, p.sx, p.sy, p.sw, p.sh, p.dx, p.dy, p.dw, p.dh);
  } finally {
    bitmap.close();
  }
  const rgba = ctx.getImageData(0, 0, size, size).data;
  if (channels === 3) {
    const n = size * size;
    const planes = new Uint8Array(3 * n);
    for (let i = 0; i < n; i++) {
      planes[i] = rgba[4 * i];
      planes[n + i] = rgba[4 * i + 1];
      planes[2 * n + i] = rgba[4 * i + 2];
    }
    return planes;
  }
  const gray = new Uint8Array(size * size);
  for (let i = 0; i < gray.length; i++) gray[i] = luma(rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]);
  return gray;
}

/**
 * The folder's files as a dataset (classes from the subfolders, see image-folder.ts). A file
 * that is not an image, is truncated or does not decode is skipped and listed in `skipped`
 * with the reason; `where` names the folder in errors. `earlier` are the files the host skipped
 * without reading them: they lead `skipped`, and a refusal names them too.
 */
export async function decodeImageFolder(
  files: readonly FolderFile[],
  options: DecodeOptions,
  where: string,
  earlier: readonly SkippedFile[] = [],
): Promise<ImageFolderData> {
  const plan = planImageFolder(files.map((f) => f.path));
  const bytes = new Map(files.map((f) => [f.path, f.bytes]));
  const canvas = new OffscreenCanvas(options.size, options.size);
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high'; // downscaling a photo to 28×28 aliases badly without it
  const decoded = new Map<string, Uint8Array | string>();
  for (const { path } of [...plan.train, ...plan.test]) {
    const b = bytes.get(path)!;
    const problem = imageBytesProblem(b);
    if (problem) {
      decoded.set(path, problem);
      continue;
    }
    try {
      decoded.set(path, await decodeOne(b, options, ctx));
    } catch (e) {
      decoded.set(
        path,
        `the browser could not decode it (${(e as Error).message || (e as Error).name}); it is corrupt or not really a PNG or JPEG`,
      );
    }
  }
  return assembleImageFolder(plan, decoded, options.size, where, earlier, options.channels ?? 1);
}
