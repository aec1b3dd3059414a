/**
 * The headless browser host: finds a WebGPU-capable Chrome or Chromium, launches it with
 * WebGPU enabled and reports which adapter the page got. This is the only module that
 * knows where the browser lives and which flags it needs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer';

/** What the page's `navigator.gpu.requestAdapter()` returned. */
export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for software adapters (SwiftShader): figures measured on them are not a GPU's. */
  isFallbackAdapter: boolean;
  features: string[];
  browserVersion: string;
}

export class BrowserHostError extends Error {}

const CANDIDATES = [
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome-stable',
  '/usr/bin/google-chrome',
  '/opt/google/chrome/chrome',
  '/snap/bin/chromium',
  '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome',
  '/Applications/Chromium.app/Contents/MacOS/Chromium',
  'C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe',
];

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

function isDebianLike(): boolean {
  try {
    return /^(ID|ID_LIKE)=.*\b(debian|ubuntu)\b/m.test(readFileSync('/etc/os-release', 'utf8'));
  } catch {
    return false;
  }
}

/**
 * The browser to use: `$WEBGPU_VAE_CHROME` (or puppeteer's `$PUPPETEER_EXECUTABLE_PATH`) first,
 * then the usual system paths. On Debian/Ubuntu as root a missing browser is installed with apt.
 */
export function findChrome(options: { install?: boolean } = {}): string {
  for (const envName of ['WEBGPU_VAE_CHROME', 'PUPPETEER_EXECUTABLE_PATH']) {
    const fromEnv = process.env[envName];
    if (fromEnv) {
      if (!existsSync(fromEnv)) throw new BrowserHostError(`$${envName} is ${fromEnv}, but no file is there.`);
      return fromEnv;
    }
  }
  const found = CANDIDATES.find((path) => existsSync(path));
  if (found) return found;
  if ((options.install ?? true) && isRoot() && isDebianLike()) {
    console.error('webgpu-vae: no Chrome/Chromium found; installing Debian\'s chromium with apt…');
    execFileSync('apt-get', ['install', '-y', '-q', 'chromium'], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  }
  throw new BrowserHostError(
    'No Chrome or Chromium found. Install one (Debian/Ubuntu: `sudo apt install chromium`; ' +
      'elsewhere Google Chrome 113 or newer) or point WEBGPU_VAE_CHROME at its executable.',
  );
}

export interface HeadlessBrowser {
  browser: Browser;
  executablePath: string;
  close(): Promise<void>;
}

/** Launches the browser headless with WebGPU on; software WebGPU (SwiftShader) is allowed. */
export async function launchBrowser(options: { webgpu?: boolean; shared?: boolean } = {}): Promise<HeadlessBrowser> {
  const executablePath = findChrome();
  const userDataDir = mkdtempSync(join(tmpdir(), 'webgpu-vae-chrome-'));
  const args = [
    `--user-data-dir=${userDataDir}`,
    // The network may be closed: keep Chromium from reaching out (and from stalling on it).
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
    // A long training run must not be throttled when no window is visible.
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
  ];
  if (options.webgpu ?? true) {
    // Linux Chromium ships WebGPU behind this flag; Vulkan lets it use SwiftShader when no GPU is present.
    args.push('--enable-unsafe-webgpu', '--enable-features=Vulkan');
  }
  if (isRoot()) args.push('--no-sandbox'); // Chromium refuses to run as root with its sandbox.
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    args,
    protocolTimeout: 0, // a training run keeps one evaluate() open for minutes
    // Talk over a pipe, not a port: if this process dies (even by SIGKILL) the pipe closes and
    // Chromium exits with it instead of lingering headless. A browser that other processes
    // connect to (`shared`, the test run's) needs the WebSocket port instead.
    pipe: !options.shared,
    // Ctrl-C belongs to the host: the CLI stops after the current submit and keeps its checkpoint
    // (puppeteer's own handler would kill the browser and exit at once).
    handleSIGINT: false,
  });
  return {
    browser,
    executablePath,
    async close() {
      await browser.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Asks the page for its adapter; throws with the flags to check when there is none. */
export async function reportAdapter(page: Page): Promise<AdapterReport> {
  const info = await page.evaluate(async () => {
    if (!('gpu' in navigator)) return { error: 'navigator.gpu is undefined' };
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return { error: 'requestAdapter() returned null' };
    const i = adapter.info;
    return {
      vendor: i.vendor,
      architecture: i.architecture,
      device: i.device,
      description: i.description,
      // Chrome exposes the fallback flag on info (newer) or on the adapter (older).
      isFallbackAdapter: Boolean((i as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter),
      features: [...adapter.features].sort(),
    };
  });
  if ('error' in info) {
    throw new BrowserHostError(
      `The browser has no WebGPU adapter (${info.error}). Check that it runs with --enable-unsafe-webgpu ` +
        '(and --enable-features=Vulkan on Linux), that chrome://gpu lists WebGPU as enabled, and that the ' +
        'page is served from localhost or https (WebGPU needs a secure context).',
    );
  }
  const browserVersion = await page.browser().version();
  return { ...(info as Omit<AdapterReport, 'browserVersion'>), browserVersion };
}

/** One line naming the adapter, for logs and benchmark headers. */
export function describeAdapter(a: AdapterReport): string {
  const name = [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ');
  const kind = a.isFallbackAdapter ? 'software (fallback) adapter: figures are not a GPU\'s' : 'hardware adapter';
  return `${name || 'unknown adapter'} [${kind}; ${a.browserVersion}]`;
}
