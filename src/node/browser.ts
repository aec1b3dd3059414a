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
import { adapterName, type AdapterSummary } from '../gpu/adapter';

/** The adapter the page's engine acquired (src/gpu/adapter.ts), and the browser it runs in. */
export interface AdapterReport extends AdapterSummary {
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

/** A Debian package's name and installed version, as dpkg knows it. */
function installedVersion(name: string): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Package} ${Version}', name], { encoding: 'utf8' });
  } catch {
    return name;
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
    console.error("webgpu-vae: no Chrome/Chromium found; installing Debian's chromium with apt…");
    const apt = (args: string[]) =>
      execFileSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    // A fresh machine's package lists can be months old: installing from them gives an old browser.
    try {
      apt(['update', '-q']);
    } catch {
      console.error('webgpu-vae: apt-get update failed; installing from the package lists already on this machine');
    }
    apt(['install', '-y', '-q', 'chromium']);
    if (existsSync('/usr/bin/chromium')) {
      console.error(`webgpu-vae: installed ${installedVersion('chromium')}`);
      return '/usr/bin/chromium';
    }
  }
  throw new BrowserHostError(
    'No Chrome or Chromium found. Install one (Debian/Ubuntu: `sudo apt install chromium`; ' +
      'elsewhere Google Chrome 113 or newer) or point WEBGPU_VAE_CHROME at its executable.',
  );
}

/** The flags each browser was launched with, for the no-adapter error. */
const launchFlags = new WeakMap<Browser, string[]>();

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
    // Linux Chromium ships WebGPU behind --enable-unsafe-webgpu; Vulkan lets it use SwiftShader when
    // no GPU is present, and --enable-unsafe-swiftshader lets it hand SwiftShader out as the fallback
    // adapter. Not --use-angle=vulkan: with it Chromium 156.0.8078.114 gives no adapter at all.
    // WebGPU developer features turn off Chrome's 100 µs quantization of timestamp queries, so
    // the bench can time a GPU's 20 µs kernels (it still times spans of at least 2 ms).
    args.push(
      '--enable-unsafe-webgpu',
      '--enable-features=Vulkan',
      '--enable-unsafe-swiftshader',
      '--enable-webgpu-developer-features',
    );
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
  launchFlags.set(
    browser,
    args.filter((a) => !a.startsWith('--user-data-dir')),
  );
  let closing: Promise<void> | undefined;
  return {
    browser,
    executablePath,
    // One closing however often it is asked for (a second Ctrl-C during a run's own close). The
    // profile is removed only once the browser has exited, since it writes there until then.
    close: () =>
      (closing ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
        });
        await Promise.race([browser.close().catch(() => {}), late]);
        clearTimeout(timer);
        const child = browser.process();
        if (child && child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGKILL');
          await exited;
        }
        rmSync(userDataDir, { recursive: true, force: true, maxRetries: 5 });
      })()),
  };
}

/** How long a browser gets to close before it is killed. */
const CLOSE_TIMEOUT_MS = 10_000;

/**
 * Asks the page for its adapter through the engine's own acquisition (default adapter, then the
 * fallback one), so the hosts report the adapter the engine will use. The page must be served by
 * src/node/server.ts, which serves the engine's modules. Throws with what was tried, the flags
 * and the browser's version when there is none.
 */
export async function reportAdapter(page: Page): Promise<AdapterReport> {
  // A string, not a function: the test runner rewrites a function's import() into its own loader.
  const result = (await page.evaluate(`import(${JSON.stringify(ADAPTER_MODULE)}).then((m) => m.adapterReport())`)) as
    { summary: AdapterSummary } | { error: string };
  const browserVersion = await page.browser().version();
  if ('error' in result) {
    const flags = launchFlags.get(page.browser());
    throw new BrowserHostError(
      `${result.error} Launched ${browserVersion} with ${flags ? flags.join(' ') : 'flags this process did not set'}. ` +
        'A WebGPU that worked before and stopped after a browser update is a change in that browser: see chrome://gpu ' +
        'in a window, or try the flags in src/node/browser.ts by hand. The page must come from localhost or https.',
    );
  }
  return { ...result.summary, browserVersion };
}

/** The engine's adapter module as the Vite server serves it. */
const ADAPTER_MODULE = '/src/gpu/adapter.ts';

/** One line naming the adapter, for logs and benchmark headers. */
export function describeAdapter(a: AdapterReport): string {
  const kind = a.software
    ? `software (fallback) adapter${a.forcedFallback ? ', the only one the browser offered' : ''}: figures are not a GPU's`
    : 'hardware adapter';
  return `${adapterName(a)} [${kind}; ${a.browserVersion}]`;
}
