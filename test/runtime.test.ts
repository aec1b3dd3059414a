/**
 * The GPU runtime's own promises: readable compile errors, a cache keyed by WGSL, loud loss,
 * and — measured from outside the runtime, on a device whose calls are wrapped — no leaked
 * buffers or listeners and counters that match what the device saw.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { harnessPage } from './gpu';

const gpu = harnessPage();
let seen: Record<string, any>;
beforeAll(async () => {
  seen = await gpu.page.evaluate(() => window.harness.runtime());
});

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

  describe("a real model's life on a caller's device, counted from outside (wrapped createBuffer, destroy, queue, passes, listeners)", () => {
    let life: Record<string, any>;
    beforeAll(async () => {
      life = await gpu.page.evaluate(() => window.harness.lifecycle());
    });

    it('trained, tested, drew images, changed job, encoded and decoded', () => {
      expect(life.work).toMatchObject({ batches: 4, mulv: 3 * 2 * 4, decoded: 3 * 784 });
      expect(Number.isFinite(life.work.loss)).toBe(true);
    });

    it("leaves as many live GPUBuffers as there were before it, the caller's own untouched", () => {
      expect(life.before).toEqual({ buffers: 1, listeners: 0 });
      // While alive: the datasets, the arena, the job's buffers and the pooled staging buffers.
      expect(life.alive.buffers).toBeGreaterThan(20);
      expect(life.afterModelDestroy.buffers, 'live after model.destroy()').toBe(life.before.buffers);
      expect(life.afterGpuDestroy.buffers, 'live after gpu.destroy()').toBe(life.before.buffers);
      expect(life.deviceUsable).toBe(true);
      // And the runtime's own tally (what the library's liveBuffers reports) agrees with the device.
      expect(life.alive.runtimeSays).toBe(life.alive.buffers - life.before.buffers);
    });

    it('removes its uncapturederror listener on destroy, and hears nothing after', () => {
      expect(life.adopted.listeners).toBe(1);
      expect(life.afterGpuDestroy.listeners).toBe(0);
      expect(life.heardAfterDestroy).toEqual({ callbacks: 0, recorded: null });
    });

    it('counts every submit, dispatch, byte written and read, and buffer made and freed exactly as the device saw them', () => {
      const { runtime, device } = life.measured;
      for (const figure of [
        'submits',
        'dispatches',
        'bytesWritten',
        'bytesRead',
        'buffersCreated',
        'buffersDestroyed',
      ]) {
        expect(runtime[figure], figure).toBe(device[figure]);
      }
      expect(runtime.submits).toBeGreaterThan(0);
      expect(runtime.dispatches).toBeGreaterThan(0);
      expect(runtime.bytesRead).toBeGreaterThan(0);
      expect(runtime.buffersDestroyed).toBeGreaterThan(0); // the first job's buffers, freed on the change of job
    });
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

describe('kernel plan across a resume', () => {
  it('a checkpoint carries its plan, and resuming under it is exact', async () => {
    const r = await gpu.page.evaluate(() => window.harness.resumeUnderPlan());
    expect(r.recordedKind).toBe('hardware');
    // A runtime that ignores the checkpoint's plan takes this adapter's own, the software one: so
    // the hardware plan below came from the checkpoint.
    expect(r.ignored.kind).toBe('software');
    expect(r.adopted.kind).toBe('hardware');
    expect(r.adopted.loss).toBe(r.straightEpoch2); // bit for bit
    // Under the other plan the epoch sums in other orders: the same training to float32 rounding,
    // not necessarily the same bits.
    expect(Math.abs(r.ignored.loss - r.straightEpoch2)).toBeLessThanOrEqual(1e-5 * Math.abs(r.straightEpoch2));
  });
});
