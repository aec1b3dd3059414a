/** The GPU runtime's own promises: readable compile errors, a cache keyed by WGSL, no leaks, loud loss. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHarness, type GpuPage } from './gpu';

let gpu: GpuPage;
let seen: Record<string, any>;
beforeAll(async () => {
  gpu = await openHarness();
  seen = await gpu.page.evaluate(() => window.harness.runtime());
});
afterAll(async () => { await gpu?.close(); });

describe('GPU runtime', () => {
  it('reports a WGSL compile error with line:col and the source', () => {
    expect(seen.compileError).toMatchObject({ name: 'GpuError', kind: 'compile' });
    expect(seen.compileError.message).toMatch(/broken:3:\d+: /); // the bad line is line 3
    expect(seen.compileError.message).toContain('let x: f32 = 1u;');
  });

  it('compiles the same WGSL once, whatever the label', () => {
    expect(seen.cache).toEqual({ added: 1, same: true });
    expect(seen.value).toBe(1);
  });

  it('frees every buffer it made', () => {
    expect(seen.liveBefore).toBeGreaterThan(0);
    expect(seen.liveAfter).toBe(0);
  });

  it('loses the device mid-epoch, says so, and resumes from the last checkpoint on a new device exactly', async () => {
    const r = await gpu.page.evaluate(() => window.harness.lostDevice());
    expect(r.error).toMatchObject({ name: 'GpuError', kind: 'lost' });
    expect(r.error!.message).toMatch(/device was lost/);
    expect(Number.isFinite(r.resumed)).toBe(true);
    expect(r.resumed).toBe(r.straight); // bit for bit: same weights, moments, step, shuffle and draws
  });

  it('turns a lost device into an error that says what to do', () => {
    expect(seen.lost).toMatchObject({ kind: 'lost' });
    expect(seen.lost.message).toMatch(/device was lost.*load the checkpoint/s);
  });
});
