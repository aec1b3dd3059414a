/**
 * Vitest global setup: one headless Chromium with WebGPU and one Vite server for the whole
 * run. A browser without a WebGPU adapter fails the run: GPU tests never skip.
 */
import type { TestProject } from 'vitest/node';
import { describeAdapter, launchBrowser, reportAdapter } from '../../src/node/browser';
import { startServer } from '../../src/node/server';

declare module 'vitest' {
  export interface ProvidedContext {
    wsEndpoint: string;
    serverUrl: string;
    adapter: string;
  }
}

export default async function setup(project: TestProject) {
  const browser = await launchBrowser({ shared: true }); // test files connect by WebSocket
  const server = await startServer();
  const page = await browser.browser.newPage();
  await page.goto(`${server.url}/test/harness/index.html`);
  const adapter = await reportAdapter(page); // throws, failing every test, when there is no adapter
  await page.close();
  console.log(`GPU tests run on: ${describeAdapter(adapter)}`);
  project.provide('wsEndpoint', browser.browser.wsEndpoint());
  project.provide('serverUrl', server.url);
  project.provide('adapter', describeAdapter(adapter));
  return async () => {
    await browser.close();
    await server.close();
  };
}
