/**
 * Peers measured in the same sitting as the engine (`npm run bench -- --compare`), each reported
 * as a ratio to the engine's own figure.
 */
import type { Page } from 'puppeteer';
import type { PageServer } from '../../src/node/server';
import type { IdxImages } from '../../src/data/idx';

export interface PeerContext {
  page: Page;
  server: PageServer;
  data: { train: IdxImages; test: IdxImages };
  batchSize: number;
  /** The engine's results so far (kernels, endToEnd), for the ratios. */
  engine: Record<string, unknown>;
}

export interface PeerResult {
  name: string;
  skipped?: string;
}

export async function runPeers(_ctx: PeerContext): Promise<PeerResult[]> {
  console.log('peers: not available yet');
  return [];
}
