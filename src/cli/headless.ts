/**
 * The engine inside headless Chromium for `npm run train`: the same code the page runs,
 * driven by the Node CLI through puppeteer. The run itself is src/cli/engine.ts (which the
 * CLI's Node runtime calls too); its events go back through `window.vaeEvent`.
 */
import { decodeImageFolder } from '../data/image-decode';
import { Gpu } from '../gpu/device';
import { browserMajor } from '../model/autotune';
import { toBase64 } from '../io/base64';
import { RunGate } from '../model/driver';
import { runEngine } from './engine';
import type { ImageFolderReply, ImageFolderRequest, RunConfig, RunEvent } from './protocol';

declare global {
  interface Window {
    vaeEvent(event: RunEvent): Promise<void>;
    vaeRun(config: RunConfig): Promise<void>;
    vaeStop(): void;
    /** `--images DIR`: decodes the folder's files with the page's own image decoders. */
    vaeDecodeImages(request: ImageFolderRequest): Promise<ImageFolderReply>;
    /** The Node side's tune cache (src/node/tune-cache.ts), exposed for --autotune. */
    vaeTuneCacheGet(key: string): Promise<string | null>;
    vaeTuneCachePut(key: string, text: string): Promise<void>;
    /** The run's GPU buffers now (for `npm run soak`); zeros before a run starts. */
    vaeMemory(): { liveBuffers: number; liveBytes: number };
  }
}

const gate = new RunGate();
let current: Gpu | null = null;
window.vaeStop = () => gate.stop();
window.vaeMemory = () => ({ liveBuffers: current?.liveBuffers ?? 0, liveBytes: current?.liveBytes ?? 0 });

async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`fetching ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

window.vaeDecodeImages = async (r: ImageFolderRequest) => {
  const all = await fetchBytes(r.url);
  const files = r.files.map((f) => ({ path: f.path, bytes: all.subarray(f.offset, f.offset + f.length) }));
  const d = await decodeImageFolder(files, { size: r.size, fit: r.fit, channels: r.channels }, r.where, r.skipped);
  const split = (s: typeof d.train) => ({ count: s.count, pixels: toBase64(s.pixels), labels: toBase64(s.labels) });
  return { layout: d.layout, classNames: d.classNames, train: split(d.train), test: split(d.test), skipped: d.skipped };
};

window.vaeRun = async (c: RunConfig) => {
  const gpu = (current = await Gpu.create());
  const [trainPixels, testPixels] = await Promise.all([fetchBytes(c.trainUrl), fetchBytes(c.testUrl)]);
  // A conditional VAE's labels (checked by the CLI), uploaded once like the pixels.
  const [trainLabels, testLabels] = c.classes
    ? await Promise.all([fetchBytes(c.trainLabelsUrl!), fetchBytes(c.testLabelsUrl!)])
    : [undefined, undefined];
  await runEngine(
    gpu,
    c,
    { trainPixels, testPixels, trainLabels, testLabels },
    {
      emit: (event) => window.vaeEvent(event),
      autotune: c.autotune
        ? {
            browserMajor: browserMajor(navigator.userAgent),
            cache: {
              get: async (key) => (await window.vaeTuneCacheGet(key)) ?? undefined,
              put: (key, text) => window.vaeTuneCachePut(key, text),
            },
          }
        : undefined,
    },
    gate,
  );
};
