/** The per-adapter kernel plan (src/gpu/plan.ts): the software plan is today's, the hardware plan fills a GPU. */
import { describe, expect, it } from 'vitest';
import {
  chooseMatmul,
  decodePlan,
  encodePlan,
  HARDWARE_MIN_INVOCATIONS,
  invocationsOf,
  matmulKey,
  PLAN_CHOICES,
  planFor,
  registerInvocations,
  type MatmulShape,
} from '../src/gpu/plan';
import { convProductToTune, productToTune, tunePlan } from '../src/gpu/tuner';
import { isSoftwareInfo } from '../src/gpu/adapter';
import { LAVAPIPE_TUNE_ALTERNATIVES, TUNE_ALTERNATIVES, tuneAlternatives } from '../src/model/autotune';
import { convWGSL, type ConvGeometry } from '../shaders/conv.wgsl';
import { benchSizes, convLaunches } from '../bench/measure';
import { chooseConv, convChoiceOf, convKey, CONV_PLAN_CHOICES, convTuneAlternatives } from '../src/gpu/conv-plan';

/** Every product of a training step of the PyTorch example at batch 128 (as src/model/programs.ts emits them). */
const B = 128;
const STEP: (MatmulShape & { name: string })[] = [
  { name: 'fc1', M: B, N: 400, K: 784, transA: false, transB: true },
  { name: 'fc21‖fc22', M: B, N: 40, K: 400, transA: false, transB: true },
  { name: 'fc3', M: B, N: 400, K: 20, transA: false, transB: true },
  { name: 'fc4', M: B, N: 784, K: 400, transA: false, transB: true },
  { name: 'fc4 dW', M: 784, N: 400, K: B, transA: true, transB: false },
  { name: 'fc4 dX', M: B, N: 400, K: 784, transA: false, transB: false },
  { name: 'fc3 dW', M: 400, N: 20, K: B, transA: true, transB: false },
  { name: 'fc3 dX→dmulv', M: B, N: 20, K: 400, transA: false, transB: false },
  { name: 'fc21‖fc22 dW', M: 40, N: 400, K: B, transA: true, transB: false },
  { name: 'fc21‖fc22 dX', M: B, N: 400, K: 40, transA: false, transB: false },
  { name: 'fc1 dW', M: 400, N: 784, K: B, transA: true, transB: false },
];

const STEP_CHOICE = { variant: 'register' as const, tileM: 8, tileN: 4 };

describe('kernel plan', () => {
  it("software: register tiles only, so the default model's sums, and its numbers, do not depend on the tile", () => {
    // Which register tile is a measured speed (bench/README.md), not a rule to restate here; a
    // split-K or tiled choice would sum in another order and move the seed contract's figures.
    const plan = planFor(true);
    for (const s of STEP) {
      for (const quad of [true, false])
        expect(chooseMatmul(plan, s, quad).variant, `${s.name}${quad ? '' : ' without quads'}`).toBe('register');
    }
  });

  it("lavapipe: a software adapter, so the software plan's register tiles; its tuner tries register tiles and split-K, never the workgroup-memory kernel", () => {
    // What Dawn in Node reports for lavapipe (src/node/webgpu.ts).
    const lavapipe = {
      vendor: 'mesa',
      architecture: 'llvmpipe',
      device: '',
      description: 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)',
    } as GPUAdapterInfo;
    expect(isSoftwareInfo(lavapipe)).toBe(true);
    const alternatives = tuneAlternatives(lavapipe);
    expect(alternatives.map((c) => c.variant)).not.toContain('tiled');
    // More than SwiftShader's register tiles: lavapipe's own candidates are tried too, each one a plan can hold.
    const registers = (list: readonly { variant: string }[]) => list.filter((c) => c.variant === 'register').length;
    expect(registers(alternatives)).toBeGreaterThan(registers(TUNE_ALTERNATIVES));
    for (const c of alternatives) expect(PLAN_CHOICES, JSON.stringify(c)).toContainEqual(c);
    // Other adapters keep theirs.
    expect(
      tuneAlternatives({
        ...lavapipe,
        vendor: 'google',
        architecture: 'swiftshader',
        description: 'SwiftShader driver 5.0.0',
      }),
    ).toBe(TUNE_ALTERNATIVES);
    expect(tuneAlternatives(undefined)).toBe(TUNE_ALTERNATIVES);
  });

  it(`hardware: every matmul of the step launches ≥ ${HARDWARE_MIN_INVOCATIONS} invocations, with no less work each than that needs`, () => {
    const plan = planFor(false);
    const rows: string[] = [];
    for (const s of STEP) {
      const choice = chooseMatmul(plan, s, false);
      const invocations = invocationsOf(choice, s);
      rows.push(`${s.name.padEnd(14)} ${choice.variant} ${choice.tileM}×${choice.tileN} → ${invocations}`);
      expect(invocations, s.name).toBeGreaterThanOrEqual(HARDWARE_MIN_INVOCATIONS);
      // Split-K only where register tiles of 4 outputs fall short; and no smaller tile than needed.
      if (choice.variant === 'splitK')
        expect(registerInvocations({ tileM: 4, tileN: 1 }, s), s.name).toBeLessThan(HARDWARE_MIN_INVOCATIONS);
      if (choice.variant === 'register' && choice.tileM === 4 && choice.tileN < 4) {
        expect(registerInvocations({ tileM: 4, tileN: choice.tileN * 2 }, s)).toBeLessThan(HARDWARE_MIN_INVOCATIONS);
      }
    }
    console.log(`hardware plan at batch ${B}:\n  ${rows.join('\n  ')}`);
  });

  it('overrides win, and a plan survives its text form; anything else is refused', () => {
    const s = STEP[0];
    const plan = {
      ...planFor(false),
      overrides: { [matmulKey(s)]: { variant: 'register' as const, tileM: 4, tileN: 2 } },
    };
    expect(chooseMatmul(plan, s, false)).toEqual({ variant: 'register', tileM: 4, tileN: 2 });
    expect(decodePlan(encodePlan(plan))).toEqual(plan);
    // The tiled kernel is a choice a plan can express (TILE_64, TILE_32), and nothing else of it.
    const tiled = {
      ...planFor(false),
      overrides: { [matmulKey(s)]: { variant: 'tiled' as const, tileM: 32 as const, tileN: 32 as const } },
    };
    expect(decodePlan(encodePlan(tiled))).toEqual(tiled);
    expect(invocationsOf(tiled.overrides[matmulKey(s)], s)).toBe(Math.ceil(s.M / 32) * Math.ceil(s.N / 32) * 64);
    for (const [m, n] of [
      [64, 32],
      [16, 16],
      [128, 128],
    ]) {
      const text = encodePlan({
        ...planFor(false),
        overrides: { [matmulKey(s)]: { variant: 'tiled', tileM: m, tileN: n } as never },
      });
      expect(decodePlan(text), `${m}×${n}`).toBeNull();
    }
    for (const bad of [
      '',
      '{}',
      '{"kind":"gpu","overrides":{}}',
      '{"kind":"hardware","overrides":{"x":{"variant":"register","tileM":3,"tileN":1}}}',
    ]) {
      expect(decodePlan(bad), bad).toBeNull();
    }
  });

  it('a plan from a file holds only the choices the rules and the tuner produce: a crafted tile, variant or base is refused', () => {
    const s = STEP[0];
    const key = matmulKey(s);
    // What the rules make over shapes from 1 to 4096 wide (both plans, with and without quads),
    // and the tuner's candidates: exactly the plan's choices, and each survives the text form.
    const sides = [1, 8, 40, 128, 400, 784, 4096];
    const made = new Set([...TUNE_ALTERNATIVES, ...LAVAPIPE_TUNE_ALTERNATIVES].map((c) => JSON.stringify(c)));
    for (const M of sides)
      for (const N of sides)
        for (const K of [1, 20, 128, 784, 65536])
          for (const transA of [false, true])
            for (const quad of [false, true]) {
              for (const software of [true, false])
                made.add(JSON.stringify(chooseMatmul(planFor(software), { M, N, K, transA, transB: !transA }, quad)));
            }
    expect([...made].sort()).toEqual(PLAN_CHOICES.map((c) => JSON.stringify(c)).sort());
    for (const choice of PLAN_CHOICES) {
      const plan = { ...planFor(true), overrides: { [key]: choice } };
      expect(decodePlan(encodePlan(plan)), JSON.stringify(choice)).toEqual(plan);
    }
    // A register tile is unrolled into the kernel's WGSL: 100000 would compile megabytes.
    const crafted = [
      { variant: 'register', tileM: 4, tileN: 100000 },
      { variant: 'register', tileM: 12, tileN: 4 },
      { variant: 'register', tileM: 400, tileN: 1 },
      { variant: 'splitK', tileM: 64, tileN: 64 },
      { variant: 'splitK', tileM: 3, tileN: 1 },
      { variant: 'tiled', tileM: 64, tileN: 64, BK: 100000 },
      { variant: 'register', tileM: 8, tileN: 4, vec4: true },
      { variant: 'quad', tileM: 8, tileN: 4 },
      null,
      [8, 4],
      'register',
    ];
    for (const choice of crafted) {
      expect(
        decodePlan(JSON.stringify({ ...planFor(false), overrides: { [key]: choice } })),
        JSON.stringify(choice),
      ).toBeNull();
    }
    // The base too is only what planFor makes for its kind.
    for (const base of [
      { ...planFor(false), adam: { layout: 'gridStride', workgroups: 65535 } },
      { ...planFor(false), lossGroups: 256 },
      { ...planFor(true), adam: planFor(false).adam },
      { ...planFor(true), overrides: [] },
    ]) {
      expect(decodePlan(JSON.stringify(base)), JSON.stringify(base)).toBeNull();
    }
    // Overrides are keyed as matmulKey keys them.
    expect(
      decodePlan(JSON.stringify({ ...planFor(true), overrides: { fc1: { variant: 'register', tileM: 8, tileN: 4 } } })),
    ).toBeNull();
  });

  it('the tuner refuses a candidate no plan could hold, so it never writes a plan it cannot read back', async () => {
    const s = STEP[0];
    const product = productToTune(planFor(true), s, true, [
      ...TUNE_ALTERNATIVES,
      { variant: 'register', tileM: 16, tileN: 8 },
    ]);
    const run = tunePlan({
      base: planFor(true),
      products: [product],
      clock: 'timestamp',
      time: async (_k, _c, repeats) => 2 * repeats,
      check: async () => true,
    });
    await expect(run).rejects.toThrow(
      /register 16×8 is not one of the plan's choices \(PLAN_CHOICES in src\/gpu\/plan\.ts\)/,
    );
    // A conv product's candidates are the conv choices: a matmul's or an unknown tile is refused.
    const g: ConvGeometry = { batch: 8, Ci: 1, Hi: 8, Wi: 8, Co: 4, Ho: 4, Wo: 4, kh: 4, kw: 4, stride: 2, pad: 1 };
    for (const [bad, text] of [
      [{ variant: 'conv', tileM: 16, tileN: 4, slices: 1 }, 'conv 16×4'],
      [{ variant: 'register', tileM: 8, tileN: 4 }, 'register 8×4'],
    ] as const) {
      const conv = convProductToTune(planFor(true), 'down', g, [...convTuneAlternatives(true), bad as never]);
      await expect(
        tunePlan({
          base: planFor(true),
          products: [conv],
          clock: 'timestamp',
          time: async (_k, _c, repeats) => 2 * repeats,
          check: async () => true,
        }),
      ).rejects.toThrow(
        new RegExp(`${text} is not one of the plan's choices \\(CONV_PLAN_CHOICES in src/gpu/conv-plan\\.ts\\)`),
      );
    }
  });
});

describe('the conv products in a plan', () => {
  // encoder.2 of the conv preset at batch 128: Conv2d(32, 64, 4, 2, 1) on 14×14.
  const g: ConvGeometry = { batch: 128, Ci: 32, Hi: 14, Wi: 14, Co: 64, Ho: 7, Wo: 7, kh: 4, kw: 4, stride: 2, pad: 1 };
  const key = convKey('up', g);

  it('a conv override wins over the rule, and every conv choice a plan may hold survives its text form and builds a kernel', () => {
    expect(key).toBe('conv up I 128×32×14×14 O 64×7×7 k4×4 s2 p1');
    for (const choice of CONV_PLAN_CHOICES) {
      const plan = { ...planFor(true), overrides: { [key]: choice } };
      expect(decodePlan(encodePlan(plan)), JSON.stringify(choice)).toEqual(plan);
      const tile = chooseConv(plan, 'up', g);
      expect({ tileM: tile.tileM, tileN: tile.tileN, slices: tile.slices }).toEqual({
        tileM: choice.tileM,
        tileN: choice.tileN,
        slices: choice.slices,
      });
      // The other products keep the rule's tile.
      expect(chooseConv(plan, 'down', g)).toEqual(chooseConv(planFor(true), 'down', g));
      // Every product, the weight product's row sums included, compiles under it.
      for (const product of ['down', 'up', 'weight'] as const)
        for (const rowSum of product === 'weight' ? [false, true] : [false]) {
          const t = chooseConv({ ...plan, overrides: { [convKey(product, g)]: choice } }, product, g);
          expect(() =>
            convWGSL({ ...t, product, bias: false, activation: 'none', mask: 'none', rowSum, stride: g.stride }),
          ).not.toThrow();
        }
    }
  });

  it('the conv choices a plan may hold are what the rules and the tuner make, and no other', () => {
    const made = new Set([...convTuneAlternatives(true), ...convTuneAlternatives(false)].map((c) => JSON.stringify(c)));
    for (const batch of [1, 8, 128])
      for (const [Ci, Co] of [
        [1, 32],
        [32, 64],
        [64, 1],
        [3, 3],
      ])
        for (const H of [2, 7, 14, 28])
          for (const software of [true, false])
            for (const product of ['down', 'up', 'weight'] as const) {
              const geometry = { ...g, batch, Ci, Co, Hi: 2 * H, Wi: 2 * H, Ho: H, Wo: H };
              made.add(JSON.stringify(convChoiceOf(chooseConv(planFor(software), product, geometry))));
            }
    expect([...made].sort()).toEqual(CONV_PLAN_CHOICES.map((c) => JSON.stringify(c)).sort());
  });

  it("the bench's launch table gives a conv product the tile of the plan in use, marked when an override chose it", () => {
    const sizes = benchSizes('conv');
    const plain = convLaunches(sizes, 128, planFor(true));
    const row = plain.get('train[128] encoder.2 dX')!;
    expect(row.product).toBe('up');
    expect(row.tuned).toBe(false);
    expect([...plain.values()].some((r) => r.tuned)).toBe(false);
    const choice = { variant: 'conv' as const, tileM: 4, tileN: 4, slices: 1 };
    expect(convChoiceOf(row.tile)).not.toEqual(choice);
    const tuned = convLaunches(sizes, 128, { ...planFor(true), overrides: { [key]: choice } });
    // encoder.2's dX and decoder.5's forward are that one product.
    const marked = [...tuned].filter(([, r]) => r.tuned).map(([label]) => label);
    expect(marked.sort()).toEqual(['train[128] decoder.5', 'train[128] encoder.2 dX']);
    expect(convChoiceOf(tuned.get('train[128] encoder.2 dX')!.tile)).toEqual(choice);
    expect(tuned.get('train[128] encoder.2 dX')!.hardwareTile).toEqual(row.hardwareTile);
  });

  it('a plan from a file with a conv override the engine could not make is refused', () => {
    const ok = { variant: 'conv', tileM: 8, tileN: 4, slices: 1 };
    expect(decodePlan(JSON.stringify({ ...planFor(false), overrides: { [key]: ok } }))).not.toBeNull();
    const crafted = [
      { variant: 'conv', tileM: 16, tileN: 4, slices: 1 },
      { variant: 'conv', tileM: 8, tileN: 100000, slices: 1 },
      { variant: 'conv', tileM: 8, tileN: 4, slices: 16 },
      { variant: 'conv', tileM: 1, tileN: 1, slices: 3 },
      { variant: 'conv', tileM: 8, tileN: 4, slices: 1, wgY: 1024 },
      { variant: 'conv', tileM: 8, tileN: 4 },
      { variant: 'register', tileM: 8, tileN: 4 },
      null,
    ];
    for (const choice of crafted)
      expect(
        decodePlan(JSON.stringify({ ...planFor(false), overrides: { [key]: choice } })),
        JSON.stringify(choice),
      ).toBeNull();
    // Keys are convKey's text; a conv choice under a matmul key is refused too.
    for (const bad of [
      'conv up I 128×32×14 O 64×7×7 k4×4 s2 p1',
      'conv sideways I 128×32×14×14 O 64×7×7 k4×4 s2 p1',
      'conv up 128×32×14×14 64×7×7 k4 s2 p1',
      `${key} `,
      'encoder.2',
      matmulKey(STEP[0]),
    ])
      expect(decodePlan(JSON.stringify({ ...planFor(false), overrides: { [bad]: ok } })), bad).toBeNull();
    // And the rules refuse a plan built by hand with the kinds crossed.
    expect(() => chooseConv({ ...planFor(true), overrides: { [key]: STEP_CHOICE } }, 'up', g)).toThrow(/conv product/);
    expect(() =>
      chooseMatmul({ ...planFor(true), overrides: { [matmulKey(STEP[0])]: ok as never } }, STEP[0], false),
    ).toThrow(/is a matmul/);
  });
});
