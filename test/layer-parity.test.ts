/**
 * Each layer kind against PyTorch (test/fixtures/layers/KIND.json, made by
 * scripts/layer_fixtures.py): its shape rule gives PyTorch's output shape for the same
 * arguments, and its float64 twin (src/reference/layers.ts) PyTorch's output and gradients on
 * the same float32 batch, edges included. Every kind in the registry has a fixture. A kind with
 * buffers (BatchNorm2d) runs in training, where its buffers after the step are checked too, and
 * in evaluation, forward only (the engine runs no evaluation backward).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LAYERS, type LayerKind } from '../src/model/layers';
import { REFERENCE_LAYERS } from '../src/reference/layers';
import { expectClose } from './gpu';

interface Case {
  args: unknown[];
  input: number[];
  rows: number;
  x: number[];
  params: Record<string, number[]>;
  y: number[];
  output: number[];
  dy?: number[];
  dx?: number[];
  grads?: Record<string, number[]>;
  /** A kind with buffers: the pass's mode, and its buffers before and after it. */
  training?: boolean;
  buffers?: Record<string, number[]>;
  buffers_after?: Record<string, number[]>;
}

const DIR = 'test/fixtures/layers';

it('every layer kind has a PyTorch fixture', () => {
  expect(readdirSync(DIR).sort()).toEqual(
    Object.keys(LAYERS)
      .map((k) => `${k}.json`)
      .sort(),
  );
});

describe.each(Object.keys(LAYERS) as LayerKind[])('%s', (kind) => {
  const { cases } = JSON.parse(readFileSync(`${DIR}/${kind}.json`, 'utf8')) as { cases: Case[] };
  const unit = LAYERS[kind];
  it.each(cases.map((c) => [JSON.stringify(c.args), c] as const))('(%s): shape, forward and backward', (_, c) => {
    const args = unit.args(c.args as never);
    if (typeof args === 'string') throw new Error(args);
    expect((unit.outShape as (a: unknown, s: readonly number[]) => unknown)(args, c.input)).toEqual(c.output);
    const p = Object.fromEntries(Object.entries(c.params).map(([k, v]) => [k, Float64Array.from(v)]));
    const twin = REFERENCE_LAYERS[kind];
    // PyTorch ran in float32: each product one rounding from the float64 twin's, and a sum of K a few
    // (atol for sums that cancel, and for the denormals a slope makes of FLT_MIN).
    const rtol = 2e-6;
    const state = c.buffers && {
      training: c.training!,
      buffers: Object.fromEntries(Object.entries(c.buffers).map(([k, v]) => [k, Float64Array.from(v)])),
    };
    // PyTorch's float32 batch mean is off by about ε·max|x|, which a norm's output inherits over
    // the spread: a batch far from zero against its spread needs that much more.
    const spread = Math.sqrt(
      c.x.reduce((a, v) => a + v * v, 0) / c.x.length - (c.x.reduce((a, v) => a + v, 0) / c.x.length) ** 2,
    );
    const yAtol = state ? 1e-6 + (1e-7 * Math.max(...c.x.map(Math.abs))) / spread : 1e-6;
    expectClose('y', twin.forward(args, c.x, c.rows, p, c.input, state), c.y, rtol, yAtol);
    if (state) {
      // PyTorch's running statistics are float32 sums over the batch: a few roundings from the twin's.
      for (const [name, after] of Object.entries(c.buffers_after!))
        expectClose(name, state.buffers[name]!, after, 1e-5, 1e-6);
      expect(unit.role === 'norm' && unit.buffers(args as never).map((b) => b.suffix)).toEqual(
        Object.keys(c.buffers_after!),
      );
    }
    if (c.dy) {
      const g = twin.backward(args, c.dy, c.x, c.rows, p, c.input);
      expectClose('dx', g.dX, c.dx!, rtol, yAtol);
      expect(Object.keys(g.grads).sort()).toEqual(Object.keys(c.grads!).sort());
      // A parameter's gradient sums each channel's values: their errors add up.
      const perChannel = state ? c.x.length / c.input[0]! : 1;
      for (const [name, grad] of Object.entries(c.grads!))
        expectClose(`d${name}`, g.grads[name]!, grad, rtol, yAtol * perChannel);
    }
    // The parameters are the unit's pieces, in PyTorch's names and shapes.
    if (unit.role === 'product' || unit.role === 'norm')
      expect(unit.params(args as never).map((q) => q.suffix)).toEqual(Object.keys(c.params));
  });
});
