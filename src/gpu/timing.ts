/**
 * One timed span of back-to-back dispatches, on the best clock the adapter offers: GPU timestamp
 * queries written at the beginning and end of one compute pass when it has `timestamp-query`,
 * else the wall clock from the submit to `onSubmittedWorkDone` (which then includes the submit's
 * and the completion callback's overhead — a reason for spans of milliseconds, not microseconds).
 * Shared by the start-up tuner (src/model/autotune.ts) and the bench (bench/page.ts).
 */
import type { Dispatch, Gpu } from './device';

export type SpanClock = 'timestamp' | 'wall';

export interface SpanTimer {
  clock: SpanClock;
  /** Milliseconds for `repeats` copies of `dispatches`, recorded back to back in one pass and one submit. */
  time(dispatches: readonly Dispatch[], repeats: number): Promise<number>;
  /** Frees the query set and its buffer. */
  destroy(): void;
}

export function spanTimer(gpu: Gpu): SpanTimer {
  const { device } = gpu;
  const query = gpu.hasTimestamps
    ? device.createQuerySet({ label: 'span timestamps', type: 'timestamp', count: 2 })
    : undefined;
  const resolved = query && gpu.buffer('span timestamps', 16, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC);
  return {
    clock: query ? 'timestamp' : 'wall',
    async time(dispatches, repeats) {
      gpu.assertAlive();
      // From an idle queue, so the span holds only its own work.
      await device.queue.onSubmittedWorkDone();
      const encoder = device.createCommandEncoder({ label: 'timed span' });
      const pass = encoder.beginComputePass({
        label: 'timed span',
        timestampWrites: query ? { querySet: query, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } : undefined,
      });
      for (let r = 0; r < repeats; r++) {
        for (const d of dispatches) {
          pass.setPipeline(d.kernel.pipeline);
          pass.setBindGroup(0, d.bindGroup);
          pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
        }
      }
      pass.end();
      if (query) encoder.resolveQuerySet(query, 0, 2, resolved!, 0);
      const t0 = performance.now();
      gpu.submit([encoder.finish()]);
      if (!query) {
        await device.queue.onSubmittedWorkDone();
        return performance.now() - t0;
      }
      const ns = new BigUint64Array(await gpu.read(resolved!, 0, 16));
      return Number(ns[1] - ns[0]) / 1e6;
    },
    destroy() {
      query?.destroy();
      if (resolved) gpu.release(resolved);
    },
  };
}
