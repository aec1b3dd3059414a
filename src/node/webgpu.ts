/**
 * WebGPU in Node without a browser: Dawn's Node binding (the optional `webgpu` package) on one of
 * two Vulkan drivers that run on the CPU, chosen by name:
 *
 * - `swiftshader`: the SwiftShader driver Chromium ships beside its binary, the driver Chromium's
 *   own WebGPU runs on here, so the two runtimes run the same compiler;
 * - `lavapipe`: Mesa's llvmpipe-based driver (Mesa 25 or newer; Dawn refuses bookworm's 22.3).
 *
 * Dawn loads the Vulkan loader (`libvulkan.so.1`, Debian's libvulkan1), and the loader reads
 * VK_ICD_FILENAMES (VK_DRIVER_FILES in newer loaders) when Dawn first looks for adapters, which is
 * the first `requestAdapter`, not `create()`. So this module sets both to the chosen driver's ICD
 * file, makes a Dawn instance, asks it for its adapter (which it then keeps), and restores the
 * environment: one process can hold instances on both drivers, and nothing needs setting before
 * Node starts (no LD_LIBRARY_PATH: the ICD file names its driver library by path). A
 * VK_DRIVER_FILES or VK_ICD_FILENAMES the caller set is the caller's choice of file, and is the
 * only one tried.
 */
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';

export const VULKAN_DRIVERS = ['swiftshader', 'lavapipe'] as const;
export type VulkanDriver = (typeof VULKAN_DRIVERS)[number];

/** The environment variable that picks the driver when the caller names none. */
export const ADAPTER_ENV = 'WEBGPU_VAE_ADAPTER';
/** The driver used when neither the caller nor the environment names one. */
export const DEFAULT_DRIVER: VulkanDriver = 'lavapipe';

export class NodeWebGpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NodeWebGpuError';
  }
}

export interface NodeWebGpu {
  /** Dawn's entry point, for `Gpu.create({ gpu })`; it has already found its adapter. */
  gpu: GPU;
  driver: VulkanDriver;
  /** The ICD file the Vulkan loader was given. */
  icd: string;
  /** The adapter Dawn found through it, as one line ("llvmpipe: Mesa 25.0.7 …"). */
  adapter: string;
  /**
   * The implementation's full version, for what must change when it does (the tune cache's key,
   * as a browser's full version is in a page): Node's, Dawn's binding's, and the driver library
   * the ICD file names, by path, size and date — SwiftShader's adapter says "5.0.0" whichever
   * Chromium it came with, so its own description cannot tell two builds apart.
   */
  version: string;
}

/** What each driver's adapter calls itself, to check the loader really used the file given. */
const ADAPTER_NAMES: Record<VulkanDriver, RegExp> = { swiftshader: /swiftshader/i, lavapipe: /llvmpipe|lavapipe/i };

/** Where each driver's ICD file may be, in order. */
export function icdCandidates(driver: VulkanDriver, env: NodeJS.ProcessEnv = process.env): string[] {
  const chosen = env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES; // the loader, too, prefers VK_DRIVER_FILES
  if (chosen) return [chosen];
  if (driver === 'lavapipe') {
    const arch = process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : process.arch;
    return ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'].flatMap((dir) => [
      join(dir, 'lvp_icd.json'),
      join(dir, `lvp_icd.${arch}.json`),
    ]);
  }
  // Chromium and Chrome keep vk_swiftshader_icd.json beside their binary; a browser named by
  // WEBGPU_VAE_CHROME (the headless host's variable) counts first.
  const dirs: string[] = [];
  const chrome = env.WEBGPU_VAE_CHROME;
  if (chrome && existsSync(chrome)) dirs.push(dirname(realpathSync(chrome)));
  dirs.push('/usr/lib/chromium', '/usr/lib/chromium-browser', '/opt/google/chrome', '/opt/chromium.org/chromium');
  return [...new Set(dirs)].map((dir) => join(dir, 'vk_swiftshader_icd.json'));
}

/** The driver named by `driver`, else by $WEBGPU_VAE_ADAPTER, else the default. */
export function chooseDriver(driver?: string): VulkanDriver {
  const fromEnv = process.env[ADAPTER_ENV];
  const name = driver || fromEnv || DEFAULT_DRIVER;
  if (!(VULKAN_DRIVERS as readonly string[]).includes(name)) {
    const source = driver ? 'The driver asked for is' : `$${ADAPTER_ENV} is`;
    throw new NodeWebGpuError(
      `${source} "${name}"; the Node runtime's Vulkan drivers are ${VULKAN_DRIVERS.join(' and ')}.`,
    );
  }
  return name as VulkanDriver;
}

/** The apt commands that install a driver (Debian or Ubuntu). */
export function installCommands(driver: VulkanDriver): string {
  return driver === 'lavapipe'
    ? "Debian 12 (bookworm): add bookworm-backports to apt's sources (your Debian mirror, suite bookworm-backports, " +
        'component main; .ci/run shows how), then `sudo apt-get update && sudo apt-get install -t bookworm-backports ' +
        'mesa-vulkan-drivers libvulkan1`. Debian 13 or Ubuntu 24.04 and newer: `sudo apt-get install mesa-vulkan-drivers libvulkan1`.'
    : '`sudo apt-get install chromium libvulkan1` (Chromium ships the SwiftShader Vulkan driver in /usr/lib/chromium), ' +
        'or point WEBGPU_VAE_CHROME at a Chrome or Chromium binary with vk_swiftshader_icd.json beside it.';
}

type DawnModule = { create(options: string[]): GPU; globals: object };

async function loadDawn(): Promise<DawnModule> {
  try {
    return (await import('webgpu')) as DawnModule;
  } catch (e) {
    throw new NodeWebGpuError(
      `WebGPU in Node needs Dawn's binding, the npm package "webgpu", which did not load (${(e as Error).message}). ` +
        'Install it beside webgpu-vae: `npm install webgpu@^0.6.2`.',
    );
  }
}

/** Dawn reads the environment during adapter discovery, so discoveries take turns. */
let queue: Promise<unknown> = Promise.resolve();

/**
 * Dawn's `GPU` on `driver` (default: $WEBGPU_VAE_ADAPTER, else lavapipe), with Dawn's WebGPU
 * globals (GPUBufferUsage, GPUShaderStage, …) installed where the host has none, as the engine
 * reads them the way a page does. Throws NodeWebGpuError, listing the ICD files looked at, the
 * environment used and the commands that install the driver, when no adapter is found.
 */
export function nodeWebGpu(driver?: string): Promise<NodeWebGpu> {
  const next = queue.then(() => discover(chooseDriver(driver)));
  queue = next.catch(() => {});
  return next;
}

async function discover(driver: VulkanDriver): Promise<NodeWebGpu> {
  const dawn = await loadDawn();
  for (const [name, value] of Object.entries(dawn.globals)) {
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
  }
  const tried: string[] = [];
  for (const icd of icdCandidates(driver)) {
    if (!icd.includes(delimiter) && !existsSync(icd)) {
      // a list (from the environment) goes to the loader as it is
      tried.push(`${icd} (missing)`);
      continue;
    }
    const found = await withIcd(icd, async () => {
      const gpu = dawn.create([]);
      const adapter = await gpu.requestAdapter();
      return { gpu, adapter };
    });
    const description = found.adapter ? describe(found.adapter.info) : null;
    if (found.adapter && description && ADAPTER_NAMES[driver].test(description)) {
      return { gpu: found.gpu, driver, icd, adapter: description, version: runtimeVersion(icd) };
    }
    tried.push(`${icd} (${description ? `gave another driver's adapter, ${description}` : 'no adapter'})`);
  }
  const inherited = ['VK_ICD_FILENAMES', 'VK_DRIVER_FILES', 'VK_ADD_DRIVER_FILES', 'LD_LIBRARY_PATH']
    .filter((name) => process.env[name] !== undefined)
    .map((name) => `${name}=${process.env[name]}`);
  throw new NodeWebGpuError(
    `No WebGPU adapter on the ${driver} Vulkan driver. Looked at: ${tried.join('; ')}. Each file present was given to ` +
      'Dawn as VK_ICD_FILENAMES and VK_DRIVER_FILES' +
      `${inherited.length ? `; the process's own environment had ${inherited.join(' ')}` : ''}. ` +
      '"No adapter" means the Vulkan loader (libvulkan.so.1) is missing, or Dawn refused the driver (it refuses ' +
      `bookworm's own Mesa 22.3; bookworm-backports' Mesa 25 works). To install ${driver}: ${installCommands(driver)} ` +
      `Or choose the other driver: ${ADAPTER_ENV}=${VULKAN_DRIVERS.find((d) => d !== driver)}.`,
  );
}

/** Runs `work` with the Vulkan loader pointed at `icd` alone, then restores the environment. */
async function withIcd<T>(icd: string, work: () => Promise<T>): Promise<T> {
  const names = ['VK_ICD_FILENAMES', 'VK_DRIVER_FILES'] as const;
  const saved = names.map((name) => process.env[name]);
  for (const name of names) process.env[name] = icd;
  try {
    return await work();
  } finally {
    names.forEach((name, i) => {
      if (saved[i] === undefined) delete process.env[name];
      else process.env[name] = saved[i];
    });
  }
}

function describe(i: GPUAdapterInfo): string {
  return [i.vendor, i.architecture, i.description].filter(Boolean).join(' ');
}

/** Dawn's binding's version (its package.json), or "unknown". */
function dawnVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    return (JSON.parse(readFileSync(require.resolve('webgpu/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/**
 * The driver library an ICD file names, as the loader finds it: a path relative to the file, an
 * absolute one, or a bare name in the system's library folders (lavapipe's "libvulkan_lvp.so").
 */
function driverLibrary(icd: string): string | undefined {
  let library: string;
  try {
    library = (JSON.parse(readFileSync(icd, 'utf8')) as { ICD: { library_path: string } }).ICD.library_path;
  } catch {
    return undefined;
  }
  if (isAbsolute(library)) return library;
  if (library.includes('/')) return resolve(dirname(icd), library);
  const arch = process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : process.arch;
  return [`/usr/lib/${arch}-linux-gnu`, '/usr/lib64', '/usr/lib', '/usr/local/lib']
    .map((dir) => join(dir, library))
    .find((path) => existsSync(path));
}

/** NodeWebGpu.version for the driver behind `icd`. */
function runtimeVersion(icd: string): string {
  const library = icd.includes(delimiter) ? undefined : driverLibrary(icd);
  let driver = `ICD ${icd}`;
  if (library) {
    try {
      const s = statSync(library);
      driver += `, ${library} (${s.size} bytes, ${s.mtime.toISOString()})`;
    } catch {
      driver += `, ${library} (unreadable)`;
    }
  }
  return `Node ${process.versions.node}, Dawn (npm webgpu ${dawnVersion()}), ${driver}`;
}
