/**
 * The kernel harness (harness.ts) on the test page's `window`, where test/gpu.ts's Chromium
 * implementation and the page-only tests call it through puppeteer, on the page's navigator.gpu.
 */
import { adapter, lifecycle, lostDevice, quadCheck, resumeUnderPlan, run, runtime, trainSteps } from './harness';

const harness = { run, adapter, trainSteps, runtime, lostDevice, quadCheck, lifecycle, resumeUnderPlan };

declare global {
  interface Window {
    harness: typeof harness;
  }
}
window.harness = harness;
