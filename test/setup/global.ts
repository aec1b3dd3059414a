/**
 * Vitest global setup: one headless Chromium with WebGPU and one Vite server for the whole
 * run. A browser without a WebGPU adapter fails the run: GPU tests never skip.
 *
 * The run gets a temporary folder of its own (TMPDIR, which the test workers and every process
 * they spawn inherit), so what a test leaves behind is told apart from other programs' files,
 * other runs' included. Anything left in it at the end fails the run, after it is listed and removed.
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { describeAdapter, launchBrowser, reportAdapter, type HeadlessBrowser } from '../../src/node/browser';
import { startServer, type PageServer } from '../../src/node/server';

declare module 'vitest' {
  export interface ProvidedContext {
    wsEndpoint: string;
    serverUrl: string;
    adapter: string;
  }
}

export default async function setup(project: TestProject) {
  const outer = process.env.TMPDIR;
  const runTemp = mkdtempSync(join(tmpdir(), 'webgpu-vae-test-run-'));
  chmodSync(runTemp, 0o755); // open to all, as /tmp is: a test that runs something as another user must reach its folders
  process.env.TMPDIR = runTemp;
  let browser: HeadlessBrowser | undefined;
  let server: PageServer | undefined;
  const teardown = async () => {
    await browser?.close();
    await server?.close();
    // tsx keeps one folder per user for its IPC pipes and never removes it: a tool's, not a test's.
    const left = readdirSync(runTemp).filter((name) => !/^tsx-\d+$/.test(name));
    rmSync(runTemp, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    if (outer === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = outer;
    if (left.length > 0) {
      console.error(
        `\nThe tests left these in the temporary folder (now removed): ${left.join(', ')}.\n` +
          'A test must remove what it makes, even when it fails: use tempDir() or fileTempDir() from test/temp.ts.',
      );
      process.exitCode = 1;
    }
  };
  try {
    browser = await launchBrowser({ shared: true }); // test files connect by WebSocket
    server = await startServer();
    const page = await browser.browser.newPage();
    await page.goto(`${server.url}/test/harness/index.html`);
    const adapter = await reportAdapter(page); // throws, failing every test, when there is no adapter
    await page.close();
    console.log(`GPU tests run on: ${describeAdapter(adapter)}`);
    project.provide('wsEndpoint', browser.browser.wsEndpoint());
    project.provide('serverUrl', server.url);
    project.provide('adapter', describeAdapter(adapter));
  } catch (e) {
    await teardown();
    throw e;
  }
  return teardown;
}
