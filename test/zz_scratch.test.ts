import { afterAll, beforeAll, it } from 'vitest';
import { f32, openHarness, type GpuPage } from './gpu';
let gpu: GpuPage;
beforeAll(async () => { gpu = await openHarness(); });
afterAll(async () => { await gpu?.close(); });
it.each([1, 2, 5])('repeat %i', async (repeat) => {
  const out = await gpu.run({
    buffers: { params: new Float32Array(4), grads: Float32Array.from([1, 2, 1e20, 1e-3]), m: new Float32Array(4), v: new Float32Array(4), state: new Uint32Array(4), partials: new Float32Array(64), out: new Float32Array(8) },
    ops: [{ op: 'adam', length: 4, hyper: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }, state: 'state', params: 'params', grads: 'grads', m: 'm', v: 'v' },
      { op: 'lossFinalize', state: 'state', partials: 'partials', out: 'out' }],
    repeat, read: ['params', 'm', 'v', 'state'],
  });
  console.log(repeat, 'v', [...f32(out.v)], 'm', [...f32(out.m)], 'p', [...f32(out.params)], 'state', [...new Uint32Array(out.state.buffer, out.state.byteOffset, 4)]);
  console.log('1-b2 f32', 1 - Math.fround(0.999));
});
