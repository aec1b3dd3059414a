/**
 * Adapter acquisition, the one place that asks the browser for a WebGPU adapter. The engine,
 * the headless hosts and the page all go through `acquireAdapter`.
 *
 * The default adapter is asked for first. When that is null we ask again with
 * `forceFallbackAdapter: true`: browser builds change which of the two they hand out (Chromium
 * 156.0.8078.114 with `--use-angle=vulkan` returns null for the default and a SwiftShader adapter
 * for the fallback), and a slow software adapter that is named as such beats no training at all.
 */
import { GpuError } from './device';

/** What the engine reports about the adapter it got. */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software adapter (SwiftShader, WARP, llvmpipe…): correct, slow, and its timings are not a GPU's. */
  software: boolean;
  /** What the browser said about itself (`isFallbackAdapter`); `software` also covers a named software driver. */
  isFallbackAdapter: boolean;
  /** True when the default request returned null and only `forceFallbackAdapter: true` gave one. */
  forcedFallback: boolean;
  features: string[];
}

/** The requests tried, in order. The first is the default, preferring a discrete GPU. */
const REQUESTS: readonly { text: string; options: GPURequestAdapterOptions }[] = [
  { text: "requestAdapter({ powerPreference: 'high-performance' })", options: { powerPreference: 'high-performance' } },
  { text: 'requestAdapter({ forceFallbackAdapter: true })', options: { forceFallbackAdapter: true } },
];

/** Names of software rasterizers, for browsers that do not set `isFallbackAdapter` on them. */
const SOFTWARE_NAMES = /swiftshader|llvmpipe|lavapipe|softpipe|\bwarp\b|microsoft basic render/i;

export function summarizeAdapter(adapter: GPUAdapter, forcedFallback: boolean): AdapterSummary {
  const i = adapter.info;
  // Chrome exposes the fallback flag on info (newer) or on the adapter (older).
  const isFallbackAdapter = Boolean(
    (i as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
    (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter,
  );
  return {
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    software: forcedFallback || isSoftwareInfo(i) || isFallbackAdapter,
    isFallbackAdapter,
    forcedFallback,
    features: [...adapter.features].sort(),
  };
}

/** Whether adapter info (an adapter's, or a device's `adapterInfo`) describes a software adapter. */
export function isSoftwareInfo(i: GPUAdapterInfo): boolean {
  return (
    Boolean((i as { isFallbackAdapter?: boolean }).isFallbackAdapter) ||
    SOFTWARE_NAMES.test([i.vendor, i.architecture, i.device, i.description].join(' '))
  );
}

/**
 * Whether adapter info names Mesa's lavapipe (llvmpipe) Vulkan driver, which needs its own tuner
 * candidates (src/model/autotune.ts tuneAlternatives).
 */
export function isLavapipeInfo(i: Pick<GPUAdapterInfo, 'vendor' | 'architecture' | 'description'>): boolean {
  return /llvmpipe|lavapipe/i.test([i.vendor, i.architecture, i.description].join(' '));
}

/** "google swiftshader (software adapter: …)": one line for logs, pages and benchmark headers. */
export function adapterName(a: Pick<AdapterSummary, 'vendor' | 'architecture' | 'device' | 'description'>): string {
  return [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ') || 'an unnamed adapter';
}

/**
 * The default adapter, or else the fallback one. Throws GpuError('unsupported') when WebGPU is
 * missing or both requests return null; the message lists what was tried and the browser.
 * `gpu` is `navigator.gpu` unless a caller (a test) wraps it.
 */
export async function acquireAdapter(
  gpu: Pick<GPU, 'requestAdapter'> | undefined = globalThis.navigator?.gpu,
): Promise<{ adapter: GPUAdapter; summary: AdapterSummary }> {
  if (
    !gpu &&
    (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node &&
    !('document' in globalThis)
  ) {
    // Node has no navigator.gpu of its own: Dawn's binding is the usual one.
    throw new GpuError(
      'WebGPU is not available here: this is Node, which has no navigator.gpu. Pass a WebGPU entry point: ' +
        "`import { create, globals } from 'webgpu'` (npm install webgpu), `Object.assign(globalThis, globals)`, then " +
        "`{ gpu: create([]) }` (with VK_ICD_FILENAMES naming a Vulkan driver: see the README's Node section).",
      'unsupported',
    );
  }
  if (!gpu) {
    throw new GpuError(
      `WebGPU is not available here: navigator.gpu is undefined (${browserName()}). Use Chrome or Edge 113+ (on Linux ` +
        'start it with --enable-unsafe-webgpu), Safari 26+, or Firefox 141+ on Windows, and serve the page from https ' +
        'or localhost.',
      'unsupported',
    );
  }
  const tried: string[] = [];
  for (const [index, request] of REQUESTS.entries()) {
    let adapter: GPUAdapter | null = null;
    try {
      adapter = await gpu.requestAdapter(request.options);
      tried.push(`${request.text} → ${adapter ? 'an adapter' : 'null'}`);
    } catch (e) {
      tried.push(`${request.text} → threw ${(e as Error).message}`);
    }
    if (adapter) {
      const summary = summarizeAdapter(adapter, index > 0);
      if (summary.forcedFallback) {
        console.warn(
          `webgpu-vae: the browser offered no default WebGPU adapter, so the engine uses its fallback ` +
            `adapter, ${adapterName(summary)}: a software adapter, correct but far slower than a GPU.`,
        );
      }
      return { adapter, summary };
    }
  }
  throw new GpuError(
    `The browser has no WebGPU adapter. Tried: ${tried.join('; ')}. Browser: ${browserName()}. WebGPU is present but ` +
      'disabled or blocklisted, or the GPU crashed earlier in this browser session (Chrome then withholds WebGPU until ' +
      'it is restarted). Check chrome://gpu; on Linux start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan.',
    'unsupported',
  );
}

function browserName(): string {
  return globalThis.navigator?.userAgent ?? 'unknown browser';
}

type UserAgentData = {
  getHighEntropyValues(hints: string[]): Promise<{ fullVersionList?: { brand: string; version: string }[] }>;
};

/**
 * The browser's full version ("Chromium 156.0.8078.129, …"), for what must change when its
 * WebGPU implementation does (the tune cache's key): a minor update brings another shader
 * compiler. Chromium's user-agent string names only the major ("Chrome/156.0.0.0"), so it comes
 * from userAgentData where the browser has that; elsewhere the user-agent string says it. (The
 * driver is what the adapter's own `description` says, where the browser exposes it.)
 */
export async function browserVersion(): Promise<string> {
  const data = (globalThis.navigator as { userAgentData?: UserAgentData } | undefined)?.userAgentData;
  try {
    const brands = (await data?.getHighEntropyValues(['fullVersionList']))?.fullVersionList;
    if (brands?.length) return brands.map((b) => `${b.brand} ${b.version}`).join(', ');
  } catch {
    // Refused (an insecure context): the user-agent string below.
  }
  return browserName();
}

/** For the headless hosts (src/node/browser.ts), which call it inside the page by module URL. */
export async function adapterReport(): Promise<{ summary: AdapterSummary } | { error: string }> {
  try {
    return { summary: (await acquireAdapter()).summary };
  } catch (e) {
    return { error: (e as Error).message };
  }
}
